"""berth.sys.forkserver: a call's child stands in for the caller's command.

A real server (a forked process of this test) on a socket under tmp_path, and real clients:
each client is a fresh interpreter running ``call`` + ``exit_like``, as the `berth`
launcher does, so exit statuses and signals are observed from outside.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "src")

# The command the server runs: argv[0] picks what it does.
ENTRY = textwrap.dedent("""
    import os, sys, time

    def entry(argv):
        what = argv[0]
        if what == "echo":
            sys.stdout.write(" ".join(argv[1:]) + "\\n")
            sys.stderr.write("to stderr\\n")
            return int(os.environ.get("CODE", "0"))
        if what == "where":
            mask = os.umask(0)
            sys.stdout.write(f"{os.getcwd()} {mask:o} {os.environ.get('FOO')}\\n")
            return 0
        if what == "cat":
            sys.stdout.write(sys.stdin.read().upper())
            return 0
        if what == "sleep":
            open(argv[1], "w").write(str(os.getpid()))
            try:
                time.sleep(60)
            except KeyboardInterrupt:
                sys.stdout.write("interrupted\\n")
                return 130
            return 0
        if what == "die":
            os.kill(os.getpid(), 9)
        raise RuntimeError("unknown " + what)
""")

CLIENT = ("import sys; sys.path.insert(0, {src!r}); from berth.sys import forkserver; "
          "s = forkserver.call({sock!r}, ['cmd'] + sys.argv[1:], {key!r}); "
          "print('no server' if s is None else 'stale', file=sys.stderr) "
          "if s is None or s < 0 else None; "
          "sys.exit(3 if s is None or s < 0 else forkserver.exit_like(s))")


@pytest.fixture
def server(tmp_path):
    sock = str(tmp_path / "fs.sock")
    module = tmp_path / "fsentry.py"
    module.write_text(ENTRY)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            sys.path[:0] = [str(tmp_path), SRC]
            import fsentry
            from berth.sys import forkserver
            forkserver.serve(sock, "k1", fsentry.entry, ready_fd=w, idle_s=30,
                             watch_prefix=str(tmp_path) + os.sep)
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)  # closed once it listens
    os.close(r)
    yield sock, module, pid
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # a test saw it exit


def client(sock, *args, key="k1", **kw):
    argv = [sys.executable, "-IS", "-c", CLIENT.format(src=SRC, sock=sock, key=key), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def test_output_exit_code_cwd_umask_and_environment(server, tmp_path):
    sock, _, _ = server
    p = client(sock, "echo", "hello", "world", env={"CODE": "7"})
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (7, "hello world\n", "to stderr\n")
    work = tmp_path / "work"
    work.mkdir()
    p = client(sock, "where", cwd=work, env={"FOO": "bar"},
               preexec_fn=lambda: os.umask(0o027))
    out, _ = p.communicate(timeout=30)
    assert out == f"{work} 27 bar\n"


def test_stdin_passes_through(server):
    sock, _, _ = server
    p = client(sock, "cat", stdin=subprocess.PIPE)
    out, _ = p.communicate("abc\n", timeout=30)
    assert (p.returncode, out) == (0, "ABC\n")


def _child_pid(path):
    for _ in range(300):
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError("the command did not start")


def _gone(pid):
    for _ in range(300):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def test_signals_are_forwarded_and_death_by_signal_passes_back(server, tmp_path):
    sock, _, _ = server
    marker = tmp_path / "pid"
    p = client(sock, "sleep", str(marker))
    child = _child_pid(marker)
    p.send_signal(signal.SIGINT)  # the command's own KeyboardInterrupt handling
    out, _ = p.communicate(timeout=30)
    assert (p.returncode, out) == (130, "interrupted\n")
    assert _gone(child)
    marker.unlink()
    p = client(sock, "sleep", str(marker))
    _child_pid(marker)
    p.send_signal(signal.SIGTERM)  # default action: the child dies of it, so does the client
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGTERM
    p = client(sock, "die")
    p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL


def test_a_killed_client_takes_its_child_with_it(server, tmp_path):
    sock, _, _ = server
    marker = tmp_path / "pid"
    p = client(sock, "sleep", str(marker))
    child = _child_pid(marker)
    p.kill()
    p.wait(timeout=30)
    assert _gone(child), "the child outlived its killed client"


def _until_unlinked(path):
    for _ in range(300):
        if not os.path.exists(path):
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} is still there")


def test_another_key_is_stale(server):
    sock, module, pid = server
    p = client(sock, "echo", "x", key="other")
    _, err = p.communicate(timeout=30)
    assert (p.returncode, err) == (3, "stale\n")
    # It stopped listening: its callers have moved on to another server.
    _until_unlinked(sock)


def test_a_change_to_its_code_makes_it_stale(server):
    sock, module, pid = server
    module.write_text(ENTRY + "\n# changed\n")
    os.utime(module, ns=(time.time_ns(), time.time_ns() + 10**9))
    p = client(sock, "echo", "x")
    _, err = p.communicate(timeout=30)
    assert (p.returncode, err) == (3, "stale\n")
    # It stopped listening (the path is free for a new server) and exits: no child is left.
    _until_unlinked(sock)
    for _ in range(300):
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the stale server did not exit")


def test_no_server_means_none(tmp_path):
    p = client(str(tmp_path / "none.sock"), "echo")
    _, err = p.communicate(timeout=30)
    assert (p.returncode, err) == (3, "no server\n")


def test_a_spare_child_waits_for_the_next_call(server):
    """The server forks the next call's child ahead of time; a call is handed to it."""
    sock, _, pid = server

    def children():
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]

    for _ in range(300):
        if children():
            break
        time.sleep(0.01)
    spare = children()
    assert len(spare) == 1, spare
    p = client(sock, "echo", "x")
    out, _ = p.communicate(timeout=30)
    assert out == "x\n"
    for _ in range(300):  # the spare ran the call, and a new one waits
        if children() and children() != spare:
            break
        time.sleep(0.01)
    assert len(children()) == 1 and children() != spare
    assert not os.path.exists(f"/proc/{spare[0]}")
