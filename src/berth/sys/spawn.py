"""Detached helper processes (the container monitor, the DNS server): start one in its own
session with stdio on /dev/null, and read what it reports on a pipe until it closes it."""

import os

PYTHON = "/usr/bin/python3"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def spawn_detached(argv, env, pass_fds=()):
    """posix_spawn ``argv`` in a new session, stdio on /dev/null, ``pass_fds`` inherited;
    return its pid (the caller waits for it; a daemon forks again and leaves it)."""
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    return os.posix_spawn(argv[0], argv, env, setsid=True, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDWR, 0),
        (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)])


def collect(fd, pid=None):
    """Everything readable from ``fd`` until EOF; then close it and reap ``pid`` (if any)."""
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)
        if pid is not None:
            os.waitpid(pid, 0)


def cmdline(pid):
    """/proc/<pid>/cmdline's bytes, b"" when the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
