"""`berth-oci delete [--force] ID`: remove a stopped container and all it holds.

A created container may be deleted as is (its init is killed), as runc allows. With
--force a running one is killed first; a missing container is not an error then.
"""

from berth.sys import fastos as os
import time

from berth.errors import Conflict, NotFound
from berth.runtime import _args
from berth.runtime.main import need_id
from berth.runtime.state import Container

USAGE = "usage: berth-oci delete [--force] ID\n"

FLAGS = _args.table(("--force", "-f", "bool", False))


def delete(root, container_id, force=False, log=None):
    try:
        c = Container.locked(root, container_id)
    except NotFound:
        if force:
            _remove_leftovers(root, container_id)
            return
        raise
    try:
        status = c.status()
        if status in ("running", "paused") and not force:
            raise Conflict(f"cannot delete container {container_id} that is not stopped: "
                           f"{status}")
        manager = c.cgroup()
        if status != "stopped":
            if status == "paused" and manager is not None:
                manager.thaw()
            if c.pid > 0:  # a create that died before it recorded the init has none
                try:
                    os.kill(c.pid, 9)
                except ProcessLookupError:
                    pass
                _wait_gone(c)
        remove(c, manager, _poststop_hooks(c), log)
    finally:
        c.unlock()


def remove(c, manager, poststop=(), log=None):
    """Clear a stopped container: stray processes, cgroups, poststop hooks, its directory."""
    if manager is not None:
        if manager.pids():
            manager.kill_all(9)
        manager.destroy()
    if poststop:
        from berth.runtime import hooks
        from berth.spec import jsonio
        state = c.oci_state()
        state["status"] = "stopped"
        hooks.run_reporting(poststop, jsonio.dumps(state).encode(), "poststop",
                            log or (lambda m: None))
    c.remove_dir()


def _poststop_hooks(c):
    try:
        hooks_raw = c.config().get("hooks") or {}
    except (OSError, ValueError):
        return ()
    if not hooks_raw.get("poststop"):
        return ()
    from berth.spec.runtime import Hooks
    return Hooks.from_json(hooks_raw).poststop


def _wait_gone(c, timeout=10.0):
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while c.init_alive() and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _remove_leftovers(root, container_id):
    """A forced delete of an id with no state still clears a half-made directory."""
    path = os.path.join(root, container_id)
    if os.path.isdir(path) and "/" not in container_id and container_id not in (".", ".."):
        Container(root, container_id).remove_dir()


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    container_id = need_id(verb, args)[0]
    delete(g.root, container_id, opts["force"], log=lambda m: g.log_line("warning", m))
    return 0
