"""Crash safety: bring the containers' state back to the truth after a kill -9 or a reboot.

What a crash can leave, and who mends it:
- A container directory (or its snapshots ``container-<id>``/``view-<id>``, a mounted
  ``lookup`` dir) without a record: `create` or `rm` died half-way. Both hold the
  container's lock while the directory exists without a record, so an unlocked one is
  removed (``orphans``; every ContainerService does it when it opens: a readdir and one
  query while there is nothing to do).
- A record that says running while its monitor is gone (killed, or the host rebooted: the
  monitor's pid is checked with its start time and the boot id): the container is shown
  exited with the code the monitor recorded, else the runtime's answer, else 255 (Docker's
  word for an unknown exit); the runtime's state, a container process that outlived its
  monitor (it has no stdio and no log any more) and the rootfs mount are cleaned up
  (``monitor_gone``, from ContainerService._refresh).
- Locks are flocks: they die with their holder and never go stale.

``restore`` is what `berth system restore` (and the API daemon at its start) runs after a
reboot: reconcile every container, then start those whose restart policy is ``always``, or
``unless-stopped`` when the user did not stop them. ``check`` lists what is inconsistent.
"""

import os

from berth.errors import BerthError, Conflict, NotFound
from berth.sys.tree import remove_tree

UNKNOWN_EXIT = 255


def _warn(message, *args):
    # logging costs every `berth` command ~5 ms to import (re, threading ...); it is only
    # needed when something goes wrong.
    import logging

    logging.getLogger(__name__).warning(message, *args)


def orphans(svc):
    """Remove what create or rm left without a record; the ids cleaned."""
    base = os.path.join(svc.root, "containers")
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        entries = []
    ids = {row[0] for row in svc.store.md.query("SELECT id FROM containers")}
    cleaned = []
    for cid in entries:
        if cid in ids or len(cid) != 64:
            continue
        try:
            with svc.store.lock(cid, wait=False):
                if svc.store.md.query("SELECT 1 FROM containers WHERE id = ?", (cid,)):
                    continue  # its create finished meanwhile
                remove_leftovers(svc, cid)
        except Conflict:
            continue  # a create or rm at work
        cleaned.append(cid)
    return cleaned


def _auto_remove_dir(svc):
    return os.path.join(svc.root, "run", "autoremove")


def mark_auto_remove(svc, cid):
    """A started --rm container: ``auto_remove`` removes it once it has exited."""
    base = _auto_remove_dir(svc)
    os.makedirs(base, 0o700, exist_ok=True)
    os.close(os.open(os.path.join(base, cid), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def auto_remove(svc, only=None, wait_s=0):
    """Remove the --rm containers (marked when started) whose process has exited; their ids.

    Docker's daemon removes such a container as it exits. berth has no daemon and a
    container's monitor does not load the engine, so the monitor's state file records the
    exit and the next `berth` command removes the container when it opens the engine (one
    readdir of <root>/run/autoremove while there is nothing to do); `stop` does it at once,
    and `run --rm` without -d itself. ``only``: look at that container alone. A container
    goes once its monitor has finished too (it writes its last word after the exit);
    ``wait_s``: how long to wait for that."""
    base = _auto_remove_dir(svc)
    try:
        ids = [only] if only else os.listdir(base)
    except FileNotFoundError:
        return []
    removed = []
    for cid in ids:
        marker = os.path.join(base, cid)
        if not os.path.exists(marker):
            continue
        try:
            state = svc.get(cid)["state"]
        except NotFound:
            _unlink(marker)
            continue
        # Exited for good (--rm refuses restart policies); "created" may be a `run --rm`
        # that is about to attach and start it.
        if state.get("Status") not in ("exited", "dead") or state.get("Running") or \
                state.get("Restarting") or not monitor_done(svc, cid, wait_s):
            continue
        try:
            svc.remove(cid)
        except NotFound:
            _unlink(marker)
            continue
        except BerthError as err:
            _warn("auto-remove %s: %s", cid, err)
            continue
        removed.append(cid)
    return removed


def monitor_done(svc, cid, wait_s):
    """Whether the container's monitor has finished (it writes the state file after the
    exit: removing the directory before would race with it), waiting up to ``wait_s``."""
    import time

    from berth.engine.monitor import read_state

    path = os.path.join(svc.dir(cid), "monitor.json")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            reported = read_state(path)
        except (OSError, ValueError):
            reported = {}
        if not reported or not monitor_alive(reported):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_leftovers(svc, cid):
    """Everything of a container but its record: mounts, runtime state, snapshots, dir."""
    _unlink(os.path.join(_auto_remove_dir(svc), cid))
    cdir = svc.dir(cid)
    for sub in ("lookup", os.path.join("bundle", "rootfs")):
        _unmount_all(os.path.join(cdir, sub))
    _runtime_delete(svc, {"id": cid})
    snap = svc.images.snapshotter()
    for key in (f"view-{cid}", f"container-{cid}"):
        try:
            snap.remove(key)
        except NotFound:
            pass
    remove_tree(cdir, ignore_errors=True)


def stale_runtime_state(svc, record):
    """Before a start: what a crash or a reboot left of the last run (the runtime's state,
    the rootfs mount) goes, or the runtime's create would refuse."""
    rootfs = os.path.join(svc.dir(record["id"]), "bundle", "rootfs")
    if os.path.exists(os.path.join(svc.oci_root, record["id"])):
        _runtime_delete(svc, record)
    if os.path.ismount(rootfs):
        _unmount_all(rootfs)


def _mounted(path):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _unmount_all(path):
    from berth.snapshots import unmount

    while _mounted(path):
        try:
            unmount(path)
        except BerthError as err:
            _warn("%s", err)
            return


def _runtime_delete(svc, record):
    """Forget the runtime's state of the container (and kill what is left of it)."""
    if not os.path.exists(os.path.join(svc.oci_root, record["id"])):
        return
    from berth.engine.containers import find_runtime
    from berth.sys import execute

    argv = [record.get("runtime") or find_runtime(), "--root", svc.oci_root]
    try:
        execute.run(argv + ["delete", "--force", record["id"]], timeout=60)
    except OSError as err:
        _warn("delete %s: %s", record["id"], err)


def _runtime_status(svc, record):
    """The runtime's status of the container ("running", "stopped" ...) or ""."""
    if not os.path.exists(os.path.join(svc.oci_root, record["id"])):
        return ""
    from berth.engine.containers import find_runtime
    from berth.spec import jsonio
    from berth.sys import execute

    argv = [record.get("runtime") or find_runtime(), "--root", svc.oci_root]
    try:
        code, out, _ = execute.run(argv + ["state", record["id"]], timeout=30)
        return str(jsonio.loads(out).get("status", "")) if code == 0 else ""
    except Exception:  # noqa: BLE001 - no answer is an answer here
        return ""


def monitor_alive(reported):
    """Whether the monitor that wrote ``reported`` is still that process."""
    from berth.engine.monitor import process_start

    pid = reported.get("MonitorPid") or 0
    if not pid:
        return False
    want = reported.get("MonitorStart")
    now = process_start(pid)
    if not now:
        return False
    return not want or want == now


def monitor_gone(svc, record, state):
    """``state`` (a running container's, its monitor dead) made true: exited, cleaned up.
    Returns the new state; the caller stores it."""
    state = dict(state)
    code = UNKNOWN_EXIT
    error = "the container's monitor died"
    try:
        with svc.store.lock(record["id"], wait=False):
            if _runtime_status(svc, record) in ("running", "paused", "created"):
                code = 137  # what killing it now makes it
            _runtime_delete(svc, record)
            _unmount_all(os.path.join(svc.dir(record["id"]), "bundle", "rootfs"))
    except Conflict:
        pass  # someone else works on it; the state is still the truth
    from berth.engine.containers import now_rfc3339
    state.update(Running=False, Paused=False, Restarting=False, Status="exited", Pid=0,
                 ExitCode=code, Error=state.get("Error") or error,
                 FinishedAt=now_rfc3339())
    if state.get("Health"):
        state["Health"] = dict(state["Health"], Status="unhealthy")
    _save_report(os.path.join(svc.dir(record["id"]), "monitor.json"), state)
    return state


def _save_report(path, state):
    """The monitor's state file says what we found, so the next reader need not look again
    (and cannot find a different exit code once the runtime forgot the container)."""
    from berth.engine.monitor import read_state
    from berth.spec import jsonio

    try:
        reported = read_state(path)
    except (OSError, ValueError):
        reported = {}
    if not reported:
        return
    reported.update(state, MonitorPid=0, MonitorStart="")
    tmp = f"{path}.{os.getpid()}.reconcile"
    try:
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(reported))
        os.rename(tmp, path)
    except OSError as err:
        _warn("%s: %s", path, err)


def restore(svc):
    """Reconcile, then start what the restart policies say should run; [(id, error)]."""
    orphans(svc)
    started = []
    for record in svc.list(all_containers=True):
        state = record["state"]
        if state.get("Running") or state.get("Restarting"):
            continue
        policy = ((record.get("host_config") or {}).get("RestartPolicy") or {}).get("Name")
        stopped_by_user = os.path.exists(os.path.join(svc.dir(record["id"]),
                                                      "monitor.json.stop"))
        if policy == "always" or (policy == "unless-stopped" and not stopped_by_user):
            try:
                svc.start(record["id"])
                started.append((record["id"], ""))
            except BerthError as err:
                started.append((record["id"], str(err)))
    return started


def check(svc):
    """What is inconsistent between records, directories, snapshots, mounts and the
    runtime's state; a list of one-line problems (empty when all is well)."""
    problems = []
    records = {r["id"]: r for r in svc.list(all_containers=True)}
    base = os.path.join(svc.root, "containers")
    for cid in (os.listdir(base) if os.path.isdir(base) else ()):
        if len(cid) == 64 and cid not in records:
            problems.append(f"container directory without a record: {cid}")
    keys = set()
    for st in svc.images.snapshotter().list():
        key = st["key"] if isinstance(st, dict) else getattr(st, "key", "")
        keys.add(key)
        for prefix in ("container-", "view-"):
            if key.startswith(prefix) and key[len(prefix):] not in records:
                problems.append(f"snapshot without a container: {key}")
    # Entries starting with "@" are the runtime's own caches (no container id has an "@").
    runtime_ids = {n for n in (os.listdir(svc.oci_root) if os.path.isdir(svc.oci_root)
                               else ()) if not n.startswith("@")}
    for cid, r in records.items():
        running = r["state"].get("Running") or r["state"].get("Restarting")
        if r.get("snapshot_key") and r["snapshot_key"] not in keys:
            problems.append(f"container {cid[:12]}: its snapshot {r['snapshot_key']} is gone")
        rootfs = os.path.join(svc.dir(cid), "bundle", "rootfs")
        if not running and _mounted(rootfs):
            problems.append(f"container {cid[:12]} is not running but its rootfs is mounted")
        if not running and cid in runtime_ids:
            problems.append(f"container {cid[:12]} is not running but the runtime has it")
        if r["state"].get("Running"):
            pid = r["state"].get("Pid") or 0
            if not pid or not os.path.exists(f"/proc/{pid}"):
                problems.append(f"container {cid[:12]} shows running but its process "
                                f"{pid} is gone")
    for cid in runtime_ids - set(records):
        problems.append(f"the runtime has a container berth does not know: {cid}")
    return problems
