"""Crash safety end to end: the CLI killed (SIGKILL) in the middle of run, start, stop and
rm (BERTH_CRASH_AT, engine/containers.crash_point), a monitor killed, and a simulated host
reboot; then `ps -a` tells the truth, `system check` finds nothing, `system restore` brings
back what the restart policies say."""

import json
import os
import shutil
import signal
import subprocess

from tests.integration.berthcli import IMAGE, needs_berth_oci, until

pytestmark = needs_berth_oci

P = f"cr{os.getpid()}"


def crashing(berth, point, *args):
    env = dict(berth.env, BERTH_CRASH_AT=point)
    proc = subprocess.run(berth.argv(*args), env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)


def status(berth, name):
    out = berth("ps", "-a", "--filter", f"name={name}", "--format",
                "{{.Names}}\t{{.Status}}").stdout
    return dict(line.split("\t") for line in out.splitlines() if line).get(name, "")


def consistent(berth):
    check = berth("system", "check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    base = os.path.join(berth.root, "containers")
    ids = set(berth("ps", "-aq", "--no-trunc").stdout.split())
    assert {d for d in os.listdir(base) if len(d) == 64} <= ids


def test_kill_9_in_create_leaves_nothing(berth):
    name = f"{P}-create"
    crashing(berth, "create", "run", "-d", "--name", name, IMAGE, "sleep", "300")
    assert status(berth, name) == ""
    consistent(berth)
    berth("run", "-d", "--name", name, IMAGE, "sleep", "300")  # the name is free
    berth("rm", "-f", name)


def test_kill_9_in_start_leaves_it_running(berth):
    name = f"{P}-start"
    crashing(berth, "start", "run", "-d", "--name", name, IMAGE, "sleep", "300")
    assert status(berth, name).startswith("Up ")
    consistent(berth)
    berth("stop", "-t", "1", name)
    assert status(berth, name).startswith("Exited (137)")
    berth("rm", name)


def test_kill_9_in_stop_and_rm(berth):
    name = f"{P}-stop"
    berth("run", "-d", "--name", name, IMAGE, "sleep", "300")
    crashing(berth, "stop", "stop", name)
    assert status(berth, name).startswith("Up ")
    consistent(berth)
    berth("stop", "-t", "0", name)
    assert status(berth, name).startswith("Exited")
    crashing(berth, "rm", "rm", name)
    assert status(berth, name) == ""
    consistent(berth)
    assert not [line for line in open("/proc/self/mountinfo") if berth.root in line]


def test_a_dead_monitor_shows_exited_and_is_cleaned_up(berth):
    name = f"{P}-orphan"
    cid = berth("run", "-d", "--name", name, IMAGE, "sleep", "300").stdout.strip()
    state = json.load(open(os.path.join(berth.root, "containers", cid, "monitor.json")))
    init = json.loads(berth("inspect", name).stdout)[0]["State"]["Pid"]
    os.kill(state["MonitorPid"], signal.SIGKILL)
    until("exited", lambda: status(berth, name).startswith("Exited"))
    info = json.loads(berth("inspect", name).stdout)[0]["State"]
    assert info["ExitCode"] == 137 and "monitor died" in info["Error"]
    until("the container's process is gone", lambda: not os.path.exists(f"/proc/{init}"))
    consistent(berth)
    berth("start", name)
    assert status(berth, name).startswith("Up ")
    berth("rm", "-f", name)


def _simulate_reboot(berth, cids):
    """What a power cut does: every berth process and container dies, mounts and the
    runtime's state (on tmpfs /run on a real host) vanish."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if berth.root.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    for cid in cids:
        state_file = os.path.join(berth.root, "containers", cid, "monitor.json")
        state = json.load(open(state_file))
        pids += [state.get("MonitorPid") or 0, state.get("Pid") or 0]
    for pid in pids:
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in pids:
        if pid > 0:
            until(f"pid {pid} gone", lambda: not os.path.exists(f"/proc/{pid}/exe") or
                  open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z")
    mounts = [line.split()[4] for line in open("/proc/self/mountinfo")
              if berth.root in line.split()[4]]
    for path in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", path], check=False)
    shutil.rmtree(os.path.join(berth.root, "run"), ignore_errors=True)
    # The containers' cgroups go with the boot too (they would be left behind, empty, for
    # every run of this test otherwise).
    for cid in cids:
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", hierarchy, "berth", cid)
            if os.path.isdir(path):
                until(f"{path} removed", lambda: _rmdir(path))


def _rmdir(path):
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False  # busy until its killed processes are gone


def test_reboot_then_ps_is_truthful_and_restore_brings_back_policies(berth):
    names = {p: f"{P}-{p}" for p in ("always", "unless", "stopped", "none", "onfail")}
    cids = {}
    for policy, name in names.items():
        restart = {"always": "always", "unless": "unless-stopped",
                   "stopped": "unless-stopped", "none": "no", "onfail": "on-failure"}[policy]
        cids[policy] = berth("run", "-d", "--name", name, "--restart", restart, IMAGE,
                             "sleep", "300").stdout.strip()
    berth("stop", "-t", "0", names["stopped"])
    _simulate_reboot(berth, [c for p, c in cids.items() if p != "stopped"])

    ps = {name: status(berth, name) for name in names.values()}
    assert not [n for n, s in ps.items() if not s.startswith("Exited")], ps
    restored = berth("system", "restore").stdout.split()
    assert sorted(restored) == sorted([cids["always"], cids["unless"]])
    for policy in ("always", "unless"):
        assert status(berth, names[policy]).startswith("Up ")
        assert berth("exec", names[policy], "true").returncode == 0
    for policy in ("stopped", "none", "onfail"):
        assert status(berth, names[policy]).startswith("Exited")
    consistent(berth)
    assert berth("system", "restore").stdout.split() == []  # nothing more to do
    berth("rm", "-f", *names.values())
