"""The warm paths: `berth` calls served by the launcher's fork server (cli/launch.py), and
berth-oci calls served by the runtime's (`berth-oci _serve`, a child of the root's zygote).

A served call must be indistinguishable from a fresh process: same output, exit codes and
signals; a container started through the runtime's server is re-parented to the zygote (its
monitor reaps it), and the server runs on the read-only interpreter copy (the
CVE-2019-5736 defence holds for it as for every berth-oci call).
"""

import errno
import os
import signal
import subprocess
import time

import pytest

from tests.integration.berthcli import IMAGE, LAUNCHER, cli_argv, until

pytestmark = pytest.mark.skipif(cli_argv() != [LAUNCHER],
                                reason="the berth launcher is not this tree's (make install-bin)")


def _launcher_socket():
    with open(LAUNCHER) as f:
        text = f.read()
    return text.rsplit("launch(", 1)[1].split("'")[1]


def _pids(match):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if match(f.read()):
                        out.append(int(name))
            except OSError:
                pass
    return out


def _ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_served_calls_match_fresh_ones(berth):
    berth("ps")  # a server is up for the calls below (the first call may start it)
    sock = _launcher_socket()
    until("the CLI's fork server", lambda: os.path.exists(sock))
    cases = [("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3"),
             ("run", "--rm", IMAGE, "no-such-command"),
             ("no-such-verb",),
             ("run", "--bad-flag", IMAGE)]
    for args in cases:
        warm = berth(*args, check=False)
        berth.env["BERTH_WARM"] = "0"
        try:
            cold = berth(*args, check=False)
        finally:
            del berth.env["BERTH_WARM"]
        assert (warm.returncode, warm.stdout, warm.stderr) == \
            (cold.returncode, cold.stdout, cold.stderr), args
    assert [berth("run", "--rm", IMAGE, "sh", "-c", "exit 3", check=False).returncode,
            berth("run", "--rm", IMAGE, "no-such-command", check=False).returncode] == [3, 127]


def test_a_signal_to_the_client_reaches_the_command(berth):
    berth("ps")
    proc = subprocess.Popen(berth.argv("run", "--name", "warm-sig", IMAGE, "sleep", "100"),
                            env=berth.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    until("the container runs",
          lambda: "Up" in berth("ps", "--filter", "name=warm-sig").stdout)
    proc.send_signal(signal.SIGTERM)  # the attached CLI dies of it; the container runs on
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert "Up" in berth("ps", "--filter", "name=warm-sig").stdout
    berth("rm", "-f", "warm-sig")


def test_runtime_server_is_the_zygotes_child_and_its_containers_are_too(berth):
    cid = berth("run", "-d", IMAGE, "sleep", "100").stdout.strip()
    cid2 = berth("run", "-d", IMAGE, "sleep", "100").stdout.strip()
    root = berth.root.encode()
    zygote = _pids(lambda cmd: b"berth.engine.zygote" in cmd and root in cmd)
    assert len(zygote) == 1, zygote
    served = until("the runtime's fork server", lambda: _pids(
        lambda cmd: b"_serve\0" in cmd and root in cmd))
    # The server is the zygote's child; a spare (its fork, waiting for the next call) is
    # the server's.
    servers = [p for p in served if _ppid(p) == zygote[0]]
    assert len(servers) == 1, served
    assert all(_ppid(p) in servers for p in served if p not in servers)
    # The second container at least was started by a served `berth-oci run -d`.
    for c in (cid, cid2):
        pid = int(berth("inspect", "--format", "{{.State.Pid}}", c).stdout)
        assert _ppid(pid) == zygote[0]
    # /proc/<server>/exe is the interpreter copy, behind its read-only bind.
    with pytest.raises(OSError) as err:
        os.open(f"/proc/{servers[0]}/exe", os.O_WRONLY)
    assert err.value.errno in (errno.EROFS, errno.ETXTBSY)
    assert os.readlink(f"/proc/{servers[0]}/exe").startswith("/usr/local/lib/berth/")
    berth("rm", "-f", cid, cid2)


def test_a_reinstalled_runtime_makes_its_server_stale(berth):
    berth("run", "--rm", IMAGE, "true")
    root = berth.root.encode()
    old = until("the runtime's fork server", lambda: _pids(
        lambda cmd: b"_serve\0" in cmd and root in cmd))
    launcher = "/usr/local/bin/berth-oci"
    st = os.stat(launcher)
    os.utime(launcher, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # as a reinstall does
    try:
        assert berth("run", "--rm", IMAGE, "echo", "ok").stdout == "ok\n"
        assert berth("run", "--rm", IMAGE, "echo", "ok").stdout == "ok\n"
        until("a new server", lambda: set(_pids(
            lambda cmd: b"_serve\0" in cmd and root in cmd)) - set(old))
        deadline = time.monotonic() + 30
        while set(old) & set(_pids(lambda cmd: b"_serve\0" in cmd and root in cmd)):
            assert time.monotonic() < deadline, "the stale server did not exit"
            time.sleep(0.1)
    finally:
        os.utime(launcher, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_short_lived_containers_through_the_warm_runtime_are_all_reaped(berth):
    """A container that exits at once is waited for by its monitor: the runtime's server
    reports a `run -d` only once its child is reaped and the init re-parented to the zygote
    (a status sent before that let the monitor wait for a pid not yet its child)."""
    for i in range(30):
        proc = berth("run", "--rm", IMAGE, "sh", "-c", f"exit {i % 3}", check=False)
        assert (proc.returncode, proc.stderr) == (i % 3, ""), i
