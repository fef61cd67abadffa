"""The per-container monitor driving berth-oci for real: logs, exit codes, attach, stdin,
rotation, restart policy, and that nothing is left once a container is done."""
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from berth.engine import logs, monitor
from berth.errors import SystemFailure
from berth.spec.defaults import default_spec
from tests.conftest import cleanup_oci_root

RUNTIME = "/usr/local/bin/berth-oci"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
WAIT = 60.0  # seconds before a test gives up waiting (a hang, not a measurement)


class Env:
    """A short root under /tmp (unix socket paths are limited to 108 bytes) holding the
    runtime's --root, a host dir shared into containers, and one dir per container."""

    def __init__(self, rootfs):
        self.rootfs = rootfs
        self.root = tempfile.mkdtemp(prefix="bmon-", dir="/tmp")
        self.oci_root = os.path.join(self.root, "oci")
        self.shared = os.path.join(self.root, "shared")
        os.makedirs(self.shared)
        self.specs = []
        self.count = 0

    def spec(self, args, *, terminal=False, **kwargs):
        self.count += 1
        cid = f"bm{os.getpid()}-{self.count}"
        home = os.path.join(self.root, str(self.count))
        bundle = os.path.join(home, "bundle")
        os.makedirs(bundle)
        config = default_spec()
        config["process"]["terminal"] = terminal
        config["process"]["args"] = list(args)
        config["root"] = {"path": "rootfs", "readonly": True}
        config["mounts"].append({"destination": "/tmp", "type": "bind",
                                 "source": self.shared, "options": ["rbind", "rw"]})
        config["linux"]["cgroupsPath"] = f"/berth/{cid}"
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        spec = monitor.MonitorSpec(
            cid, bundle, [RUNTIME, "--root", self.oci_root], tty=terminal,
            rootfs_mounts=[{"type": "bind", "source": self.rootfs,
                            "options": ["rbind", "ro"]}], **kwargs)
        self.specs.append(spec)
        return spec

    def go(self, name="go"):
        open(os.path.join(self.shared, name), "w").close()

    def cleanup(self):
        problems = []
        for spec in self.specs:
            pid = monitor.read_state(spec.state_path).get("MonitorPid") or 0
            if pid and _is_monitor(pid):
                os.kill(pid, 9)
                problems.append(f"monitor {pid} of {spec.container_id} still ran")
        if os.path.isdir(self.oci_root):
            problems += cleanup_oci_root(self.oci_root)
        for target in _mounts_under(self.root)[::-1]:
            subprocess.run(["umount", "-l", target], check=False)
            problems.append(f"{target} was still mounted")
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


def _is_monitor(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"berth.engine.monitor" in f.read()
    except OSError:
        return False


def _mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target == path or target.startswith(path + "/"):
                out.append(target)
    return out


@pytest.fixture
def env(busybox_rootfs):
    e = Env(busybox_rootfs)
    yield e
    problems = e.cleanup()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def wait_done(spec):
    """The final state once the monitor has exited."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        state = monitor.read_state(spec.state_path)
        if state.get("MonitorPid") == 0:
            return state
        time.sleep(0.02)
    pytest.fail(f"monitor of {spec.container_id} did not finish: {state}", pytrace=False)


def log_entries(spec):
    with open(spec.log_path) as f:
        return [json.loads(line) for line in f]


def assert_clean(env, spec, monitor_pid):
    assert not _mounts_under(os.path.dirname(spec.bundle))
    assert not os.path.exists(os.path.join(env.oci_root, spec.container_id))
    # The monitor writes its last state, then exits: give it the moment that takes.
    deadline = time.monotonic() + 10
    while _is_monitor(monitor_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _is_monitor(monitor_pid)
    assert not os.path.exists(spec.attach_socket)
    assert not os.path.exists(f"/sys/fs/cgroup/memory/berth/{spec.container_id}")


def monitor_pid(spec):
    return monitor.read_state(spec.state_path)["MonitorPid"]


def test_output_lands_in_the_json_log(env):
    spec = env.spec(["sh", "-c", "echo out; echo err >&2; printf 'no newline'"])
    pid = monitor.spawn_monitor(spec)
    assert pid > 0
    mpid = monitor_pid(spec)
    state = wait_done(spec)
    assert state["Status"] == "exited" and state["ExitCode"] == 0
    assert not state["OOMKilled"] and state["Error"] == ""
    assert TIME_RE.match(state["StartedAt"]) and TIME_RE.match(state["FinishedAt"])
    entries = log_entries(spec)
    assert [(e["stream"], e["log"]) for e in entries] == [
        ("stdout", "out\n"), ("stderr", "err\n"), ("stdout", "no newline")]
    assert all(TIME_RE.match(e["time"]) and list(e) == ["log", "stream", "time"]
               for e in entries)
    assert_clean(env, spec, mpid)


def test_exit_code_is_recorded(env):
    spec = env.spec(["sh", "-c", "exit 3"])
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    assert wait_done(spec)["ExitCode"] == 3
    assert_clean(env, spec, mpid)


def test_killed_by_signal_is_137_and_a_stop_is_not_restarted(env):
    spec = env.spec(["sleep", "1000"], restart_policy={"Name": "always"})
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    # What the engine's stop does: mark it, then signal through the runtime.
    open(spec.state_path + ".stop", "w").close()
    subprocess.run([RUNTIME, "--root", env.oci_root, "kill", spec.container_id, "KILL"],
                   check=True)
    state = wait_done(spec)
    assert (state["ExitCode"], state["RestartCount"], state["Status"]) == (137, 0, "exited")
    assert_clean(env, spec, mpid)


def test_a_runtime_failure_is_raised_as_its_line_and_cleaned(env):
    spec = env.spec(["nosuch"])
    with pytest.raises(SystemFailure) as info:
        monitor.spawn_monitor(spec)
    assert str(info.value) == 'exec: "nosuch": executable file not found in $PATH'
    state = wait_done(spec)
    assert state["ExitCode"] == 127 and "nosuch" in state["Error"]
    assert_clean(env, spec, 0)


def test_the_monitor_survives_its_parent(env):
    spec = env.spec(["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done"])
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.write(w, str(monitor.spawn_monitor(spec)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        assert int(f.read() or 0) > 0
    os.waitpid(child, 0)
    mpid = monitor_pid(spec)
    assert _is_monitor(mpid)
    with open(f"/proc/{mpid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ppid, sid = int(fields[1]), int(fields[3])
    assert ppid != child and ppid != os.getpid()
    assert sid != os.getsid(0)
    env.go()
    state = wait_done(spec)
    assert state["ExitCode"] == 0
    assert [e["log"] for e in log_entries(spec)] == ["done\n"]
    assert_clean(env, spec, mpid)


def test_attach_streams_live_output_from_the_start(env):
    spec = env.spec(["sh", "-c", "echo one; echo two >&2; echo three; exit 5"])
    # Not started: the runtime creates and starts it in one call when the attach asks.
    assert monitor.spawn_monitor(spec, start=False) == 0
    assert monitor.read_state(spec.state_path)["Status"] == "created"
    mpid = monitor_pid(spec)
    out, err = io.BytesIO(), io.BytesIO()
    assert monitor.attach(spec.attach_socket, stdout=out, stderr=err, start=True) == 5
    assert (out.getvalue(), err.getvalue()) == (b"one\nthree\n", b"two\n")
    assert wait_done(spec)["ExitCode"] == 5
    assert_clean(env, spec, mpid)


def test_attach_to_a_running_container_sees_new_output(env):
    spec = env.spec(["sh", "-c", "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; "
                                 "done; echo after"])
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    # "before" must be in the log (read by the monitor) before we attach, or we see it too.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and \
            "before\n" not in [e["log"] for e in log_entries(spec)]:
        time.sleep(0.01)
    r, w = os.pipe()
    result = {}

    def run():
        with os.fdopen(w, "wb") as out:
            result["code"] = monitor.attach(spec.attach_socket, stdout=out)

    t = threading.Thread(target=run)
    t.start()
    # Its connection is accepted and registered before the monitor does anything else.
    while _sockets(mpid) < 2:  # the listener and this client
        time.sleep(0.01)
    env.go()
    with os.fdopen(r, "rb") as f:
        got = f.read()
    t.join(WAIT)
    assert result["code"] == 0
    assert got == b"after\n"
    wait_done(spec)
    assert_clean(env, spec, mpid)


def _sockets(pid):
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return count


def test_stdin_through_attach(env):
    spec = env.spec(["sh", "-c", "read x; echo got $x; cat; echo end"], stdin_open=True)
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    r, w = os.pipe()
    os.write(w, b"hello\nmore\n")
    os.close(w)
    out = io.BytesIO()
    with os.fdopen(r, "rb") as stdin:
        code = monitor.attach(spec.attach_socket, stdin=stdin, stdout=out)
    assert code == 0
    assert out.getvalue() == b"got hello\nmore\nend\n"
    wait_done(spec)
    assert_clean(env, spec, mpid)


def test_tty_output_is_stdout(env):
    spec = env.spec(["sh", "-c", "echo hi; echo err >&2; tty"], terminal=True)
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    assert wait_done(spec)["ExitCode"] == 0
    entries = log_entries(spec)
    assert {e["stream"] for e in entries} == {"stdout"}
    assert "".join(e["log"] for e in entries).startswith("hi\r\nerr\r\n/dev/pts/")
    assert_clean(env, spec, mpid)


def test_log_rotation(env):
    spec = env.spec(["sh", "-c", "i=1; while [ $i -le 60 ]; do echo line-$i; i=$((i+1)); "
                                 "done"], log_max_size=400, log_max_file=3)
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    wait_done(spec)
    files = logs.log_files(spec.log_path)
    assert files == [spec.log_path + ".2", spec.log_path + ".1", spec.log_path]
    assert not os.path.exists(spec.log_path + ".3")
    assert all(0 < os.path.getsize(name) <= 400 for name in files)
    lines = [e.data for e in logs.read_logs(spec.log_path)]
    numbers = [int(x.decode().strip().split("-")[1]) for x in lines]
    assert numbers == list(range(numbers[0], 61))
    assert numbers[0] > 1  # the oldest were rolled away
    assert [e.data for e in logs.read_logs(spec.log_path, tail=2)] == [b"line-59\n",
                                                                        b"line-60\n"]
    assert_clean(env, spec, mpid)


def test_restart_on_failure_twice_then_records_the_exit(env):
    spec = env.spec(["sh", "-c", "echo run; exit 1"],
                    restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    state = wait_done(spec)
    assert (state["Status"], state["ExitCode"], state["RestartCount"]) == ("exited", 1, 2)
    assert [e["log"] for e in log_entries(spec)] == ["run\n"] * 3
    assert_clean(env, spec, mpid)


def test_no_restart_after_success_with_on_failure(env):
    spec = env.spec(["true"], restart_policy={"Name": "on-failure", "MaximumRetryCount": 5})
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    state = wait_done(spec)
    assert (state["ExitCode"], state["RestartCount"]) == (0, 0)
    assert_clean(env, spec, mpid)


# ---------------------------------------------------------------- memory (prints only)

def _rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    out["USS"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def _show(label, pid):
    r = _rollup(pid)
    print(f"{label:44s} RSS {r['Rss']:6d} kB  PSS {r['Pss']:6d} kB  USS {r['USS']:6d} kB")


def test_monitor_memory(env):
    """Prints PSS/USS of one monitor alone, then of the 10th of 10 (run with -s)."""
    wait_loop = ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done"]
    first = env.spec(wait_loop)
    monitor.spawn_monitor(first)
    print()
    _show("monitor, one alone", monitor_pid(first))
    rest = [env.spec(wait_loop) for _ in range(9)]
    for spec in rest:
        monitor.spawn_monitor(spec)
    _show("monitor, the 1st of 10", monitor_pid(first))
    _show("monitor, the 10th of 10", monitor_pid(rest[-1]))
    total = sum(_rollup(monitor_pid(s))["Pss"] for s in [first] + rest)
    print(f"{'10 monitors, PSS in all':44s} {total} kB")
    # For comparison: a bare interpreter, and the engine's heap kept by a fork.
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "src")
    bare = subprocess.Popen(["/usr/bin/python3", "-IS", "-c",
                             "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    forked_r, forked_w = os.pipe()
    forker = subprocess.Popen(
        ["/usr/bin/python3", "-c",
         "import os, sys; sys.path.insert(0, %r); import berth.cli.main, "
         "berth.engine.monitor, json, subprocess, sqlite3\n"
         "pid = os.fork()\nif pid: os.write(%d, str(pid).encode()); os._exit(0)\n"
         "sys.stdin.read()" % (src, forked_w)],
        stdin=subprocess.PIPE, pass_fds=[forked_w])
    os.close(forked_w)
    try:
        forked = int(os.read(forked_r, 64))
        forker.wait()
        time.sleep(0.3)
        _show("bare /usr/bin/python3 -IS", bare.pid)
        _show("forked engine process (CLI imports)", forked)
    finally:
        os.close(forked_r)
        bare.stdin.close()
        forker.stdin.close()
        bare.wait()
        # the forked child shares the closed stdin pipe: it reads EOF and exits
    env.go()
    for spec in [first] + rest:
        assert wait_done(spec)["ExitCode"] == 0


def test_an_oom_kill_is_recorded(env):
    spec = env.spec(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    with open(os.path.join(spec.bundle, "config.json")) as f:
        config = json.load(f)
    config["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024,
                                              "swap": 16 * 1024 * 1024}
    with open(os.path.join(spec.bundle, "config.json"), "w") as f:
        json.dump(config, f)
    monitor.spawn_monitor(spec)
    mpid = monitor_pid(spec)
    state = wait_done(spec)
    assert (state["ExitCode"], state["OOMKilled"]) == (137, True)
    assert_clean(env, spec, mpid)


def test_zygote_serves_monitors_and_prints_their_memory(env):
    """Monitors served by the root's zygote run containers as exec'd ones do; a killed
    zygote is replaced by the next request. Prints the memory per container (run with -s)."""
    sock = os.path.join(env.root, "zygote.sock")
    wait_loop = ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo out"]
    specs = [env.spec(wait_loop) for _ in range(10)]
    monitor.spawn_monitor(specs[0], zygote=sock)
    zygote = _pids_with_open(sock + ".lock")
    assert len(zygote) == 1, zygote
    assert monitor_pid(specs[0]) == zygote[0]
    print()
    _show("zygote serving 1 container", zygote[0])
    for spec in specs[1:]:
        monitor.spawn_monitor(spec, zygote=sock)
    assert {monitor_pid(s) for s in specs} == set(zygote)
    _show("zygote serving 10 containers", zygote[0])
    print(f"{'per container, PSS / 10':44s} {_rollup(zygote[0])['Pss'] // 10} kB")
    env.go()
    for spec in specs:
        assert wait_done(spec)["ExitCode"] == 0
    with open(specs[0].log_path) as f:
        assert '"out\\n"' in f.read()
    os.kill(zygote[0], 9)
    late = env.spec(["echo", "late"])
    monitor.spawn_monitor(late, zygote=sock)  # a new zygote answers
    assert wait_done(late)["ExitCode"] == 0
    for pid in _pids_with_open(sock + ".lock"):
        os.kill(pid, 9)


def _pids_with_open(path):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                if os.readlink(f"/proc/{name}/fd/{fd}") == path:
                    out.append(int(name))
                    break
        except OSError:
            continue
    return out


@pytest.mark.parametrize("served", ["exec'd", "zygote"])
def test_exit_call_runs_once_the_container_is_gone(env, served):
    # An exec'd monitor makes the call in an interpreter of its own, a zygote's in process.
    marker = os.path.join(env.root, f"hook-{served[0]}")
    spec = env.spec(["true"])
    spec.exit_call = ["os", "mkdir", marker]
    sock = os.path.join(env.root, "zygote.sock") if served == "zygote" else None
    monitor.spawn_monitor(spec, zygote=sock)
    assert wait_done(spec)["ExitCode"] == 0
    assert wait_for_path(marker)
    for pid in _pids_with_open(os.path.join(env.root, "zygote.sock.lock")):
        os.kill(pid, 9)


def wait_for_path(path, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.path.exists(path)
