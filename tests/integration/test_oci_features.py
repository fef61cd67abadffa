"""berth-oci features checked from inside real containers: seccomp, user namespaces, hooks
and terminals (a console socket, and `run` relaying a pty of its own)."""
import array
import json
import os
import select
import shutil
import socket
import subprocess
import time

import pytest

from tests.integration.test_oci_run import (
    assert_nothing_left,
    one_line_error,
    run_sh,
    sh,
    with_tmp,
)


def wait_for(check, what, timeout=20.0):
    """Poll CHECK until it returns something true; fail naming WHAT after TIMEOUT."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def state(oci, container_id):
    return json.loads(oci("state", container_id).stdout)


# ---- 9. seccomp

def test_seccomp_errno_rule(oci, make_bundle, container_id):
    def mutate(c):
        with_tmp(c)
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}],
        }

    cache = os.path.join(oci.root, "@seccomp-cache")
    shutil.rmtree(cache, ignore_errors=True)
    # Compiled by libseccomp and kept; then loaded from the cache; then, with the cached
    # entry damaged, compiled again: the rule holds each time.
    for attempt in ("compiled", "cached", "damaged"):
        proc = run_sh(oci, make_bundle, f"{container_id}-{attempt}",
                      "mkdir /tmp/x 2>&1; touch /tmp/y && echo touch-ok", mutate=mutate)
        lines = proc.stdout.splitlines()
        assert "Operation not permitted" in lines[0], attempt
        assert lines[1] == "touch-ok"
        entries = os.listdir(cache)
        assert len(entries) == 1 and not entries[0].startswith("."), entries
        if attempt == "cached":
            with open(os.path.join(cache, entries[0]), "w") as f:
                f.write("0 zz")
    with open(os.path.join(cache, entries[0])) as f:
        assert f.read() != "0 zz"  # replaced by the recompiled program


def test_exec_applies_the_containers_seccomp(oci, make_bundle, container_id):
    def mutate(c):
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}],
        }

    oci("run", "-d", "--bundle", make_bundle(args=["sleep", "100"], mutate=mutate),
        container_id)
    try:
        for _ in range(2):  # the second exec takes the program from the cache
            proc = oci("exec", container_id, "sh", "-c", "mkdir /x 2>&1; echo done")
            assert "Operation not permitted" in proc.stdout and "done" in proc.stdout
    finally:
        oci("delete", "-f", container_id)


# ---- 10. user namespace

def _userns(c):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]



def test_user_namespace_mapping(oci, make_bundle, container_id):
    proc = run_sh(oci, make_bundle, container_id,
                  "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g", mutate=_userns)
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    assert lines == ["0 100000 65536", "0 100000 65536", "0", "0"]
    assert_nothing_left(oci, container_id)


def test_user_namespace_ids_seen_from_the_host(oci, make_bundle, container_id):
    bundle = make_bundle(args=["sleep", "30"], mutate=_userns)
    oci("run", "--detach", "--bundle", bundle, container_id)
    pid = state(oci, container_id)["pid"]
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    assert status["Uid"].split() == ["100000"] * 4
    assert status["Gid"].split() == ["100000"] * 4
    oci("delete", "--force", container_id)
    assert_nothing_left(oci, container_id)


# ---- 11. hooks

HOOK = """#!/bin/sh
# $1: the hook's name; appends "<name> <state JSON>" to $2.
state=$(cat)
echo "$1 $state" >> "$2"
"""


def _hook(path, name, log, **extra):
    return {"path": path, "args": [path, name, log], **extra}


def _read_log(path):
    entries = []
    with open(path) as f:
        for line in f:
            name, _, raw = line.rstrip("\n").partition(" ")
            entries.append((name, json.loads(raw) if raw else None))
    return entries


@pytest.fixture
def hook_setup(tmp_path, make_bundle):
    """(bundle factory, log path): hooks on the host and, for startContainer, in the
    container, all appending to one log kept in a host directory bound into the container."""
    logdir = tmp_path / "hooklog"
    logdir.mkdir()
    log = str(logdir / "log")
    host_hook = tmp_path / "hook.sh"
    host_hook.write_text(HOOK)
    host_hook.chmod(0o755)

    def make(args, hooks):
        def mutate(c):
            c["mounts"].append({"destination": str(logdir), "type": "bind",
                                "source": str(logdir), "options": ["rbind", "rw"]})
            c["hooks"] = hooks
        bundle = make_bundle(args=args, mutate=mutate, readonly=False)
        inner = bundle / "rootfs" / "hook.sh"
        inner.write_text(HOOK)
        inner.chmod(0o755)
        return bundle

    return make, str(host_hook), log


def test_hooks_run_in_order_with_the_state(oci, hook_setup, container_id):
    make, host_hook, log = hook_setup
    hooks = {
        "prestart": [_hook(host_hook, "prestart", log)],
        "createRuntime": [_hook(host_hook, "createRuntime", log)],
        "createContainer": [_hook(host_hook, "createContainer", log)],
        "startContainer": [_hook("/hook.sh", "startContainer", log)],
        "poststart": [_hook(host_hook, "poststart", log)],
        "poststop": [_hook(host_hook, "poststop", log)],
    }
    # The process waits for poststart, so that hook sees it running.
    bundle = make(sh(f"until grep -q ^poststart {log}; do sleep 0.02; done; "
                     f"echo process >> {log}"), hooks)
    oci("create", "--bundle", bundle, container_id)
    names = [name for name, _ in _read_log(log)]
    assert names == ["prestart", "createRuntime", "createContainer"]
    oci("start", container_id)
    wait_for(lambda: state(oci, container_id)["status"] == "stopped", "the container to stop")
    oci("delete", container_id)
    entries = _read_log(log)
    names = [name for name, _ in entries]
    assert names == ["prestart", "createRuntime", "createContainer", "startContainer",
                     "poststart", "process", "poststop"]
    states = dict(entries)
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        assert states[name]["id"] == container_id, name
        assert states[name]["bundle"] == str(bundle), name
    assert [states[n]["status"] for n in ("prestart", "createRuntime", "poststart", "poststop")
            ] == ["creating", "creating", "running", "stopped"]
    assert states["prestart"]["pid"] == states["poststart"]["pid"] > 0
    assert_nothing_left(oci, container_id)


def test_container_hooks_get_the_state(oci, hook_setup, container_id):
    make, host_hook, log = hook_setup
    hooks = {"createContainer": [_hook(host_hook, "createContainer", log)],
             "startContainer": [_hook("/hook.sh", "startContainer", log)]}
    bundle = make(["true"], hooks)
    proc = oci("run", "--bundle", bundle, container_id)
    assert proc.returncode == 0
    entries = dict(_read_log(log))
    for name in ("createContainer", "startContainer"):
        assert entries[name] is not None, f"{name} read no state"
        assert entries[name]["id"] == container_id
        assert entries[name]["pid"] > 0


def test_hook_timeout_fails_create_and_leaves_nothing(oci, make_bundle, container_id):
    hooks = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]}
    bundle = make_bundle(mutate=lambda c: c.update(hooks=hooks))
    started = time.monotonic()
    proc = oci("create", "--bundle", bundle, container_id, check=False)
    assert time.monotonic() - started < 4.5, "the hook was not cut short"
    line = one_line_error(proc, "prestart", "timed out")
    assert "/bin/sleep" in line
    assert_nothing_left(oci, container_id)


def test_failing_prestart_hook_fails_create(oci, make_bundle, container_id):
    hooks = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]}
    bundle = make_bundle(mutate=lambda c: c.update(hooks=hooks))
    proc = oci("create", "--bundle", bundle, container_id, check=False)
    one_line_error(proc, "prestart", "exit status 3", "nope")
    assert_nothing_left(oci, container_id)


def test_poststop_runs_on_delete_of_a_created_container(oci, make_bundle, container_id,
                                                         tmp_path):
    log = tmp_path / "poststop"
    hooks = {"poststop": [{"path": "/bin/sh",
                           "args": ["sh", "-c", f"cat > {log}"]}]}
    bundle = make_bundle(args=["sleep", "30"], mutate=lambda c: c.update(hooks=hooks))
    oci("create", "--bundle", bundle, container_id)
    assert not log.exists()
    oci("delete", container_id)
    got = json.loads(log.read_text())
    assert got["id"] == container_id and got["status"] == "stopped"
    assert_nothing_left(oci, container_id)


# ---- 12. terminals

def _terminal(c):
    c["process"]["terminal"] = True


def _recv_fd(conn):
    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    assert len(fds) == 1, f"no fd received (message {msg!r})"
    return fds[0]


def _read_until(fd, marker, timeout=20.0):
    """Read from FD until MARKER was seen or the pty closes; return the bytes as text."""
    out = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in out.replace(b"\r\n", b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every slave end closed
                break
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def console_socket(tmp_path):
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(30)
    yield server, path
    server.close()


def test_console_socket_receives_the_pty_master(oci, make_bundle, container_id,
                                                console_socket):
    server, path = console_socket
    bundle = make_bundle(args=sh("tty; echo hi; read x; echo got $x"), mutate=_terminal)
    oci("create", "--console-socket", path, "--bundle", bundle, container_id)
    conn, _ = server.accept()
    with conn:
        master = _recv_fd(conn)
    try:
        oci("start", container_id)
        out = _read_until(master, "hi\n")
        assert out.splitlines()[:2] == ["/dev/pts/0", "hi"], out
        os.write(master, b"typed\n")
        out = _read_until(master, "got typed")
        assert "got typed" in out, out
    finally:
        os.close(master)
    wait_for(lambda: state(oci, container_id)["status"] == "stopped", "the container to stop")
    oci("delete", container_id)
    assert_nothing_left(oci, container_id)


def test_terminal_without_console_socket_needs_the_foreground(oci, make_bundle,
                                                              container_id):
    bundle = make_bundle(mutate=_terminal)
    proc = oci("create", "--bundle", bundle, container_id, check=False)
    one_line_error(proc, "console socket")
    assert_nothing_left(oci, container_id)


def test_run_relays_its_own_pty(oci, make_bundle, container_id):
    bundle = make_bundle(args=sh("tty; read x; echo got $x; exit 5"), mutate=_terminal)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(oci.argv("run", "--bundle", bundle, container_id),
                                stdin=slave, stdout=slave, stderr=slave, env=oci.env,
                                start_new_session=True)
        os.close(slave)
        slave = -1
        try:
            out = _read_until(master, "/dev/pts/0")
            assert "/dev/pts/0" in out, out
            os.write(master, b"typed\n")
            out = _read_until(master, "got typed")
            assert "got typed" in out, out
            assert proc.wait(timeout=30) == 5
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert_nothing_left(oci, container_id)
