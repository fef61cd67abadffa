"""Run a program to its end with captured output, through posix_spawn (vfork + exec).

What the engine uses to drive the OCI runtime's short verbs (kill, delete, state, pause ...)
from the `berth` command: ``subprocess`` costs ~4 ms to import (with selectors, signal,
threading, locale) and forks the whole process; this imports nothing but ``os``, ``select``
and ``time``. The child gets stdin, stdout and stderr on pipes and no other descriptor:
Python opens its own close-on-exec, and inheritable ones the process was given are closed
in the child, as subprocess's close_fds does.
"""

import os
import select
import time


class Timeout(OSError):
    """The program did not finish in time (it was killed)."""


def run(argv, *, stdin=b"", env=None, timeout=60.0):
    """(exit code, stdout bytes, stderr bytes) of ``argv`` (looked up on PATH when it has no
    "/"); the code is -N when signal N ended it, as subprocess gives it. OSError when it
    cannot start, Timeout (after killing it) when it runs longer than ``timeout`` s."""
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawnp(argv[0], list(argv), os.environ if env is None else env,
                              file_actions=[(os.POSIX_SPAWN_DUP2, in_r, 0),
                                            (os.POSIX_SPAWN_DUP2, out_w, 1),
                                            (os.POSIX_SPAWN_DUP2, err_w, 2),
                                            *_close_inherited()])
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    try:
        out, err = _exchange(in_w, out_r, err_r, stdin, time.monotonic() + timeout)
    except Timeout:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise Timeout(f"{argv[0]}: no answer within {timeout:g} s") from None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out, err


def _close_inherited():
    actions = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    actions.append((os.POSIX_SPAWN_CLOSE, fd))
            except OSError:
                pass  # listdir's own descriptor, closed by now
    return actions


def _exchange(in_w, out_r, err_r, data, deadline):
    """Feed ``data`` to ``in_w`` and read ``out_r``, ``err_r`` to their ends; closes all."""
    chunks = {out_r: [], err_r: []}
    poller = select.poll()
    poller.register(out_r, select.POLLIN)
    poller.register(err_r, select.POLLIN)
    view = memoryview(data)
    if view:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
        in_w = -1
    open_fds = 2 + (in_w >= 0)
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            for fd, _ in poller.poll(left * 1000):
                if fd == in_w:
                    try:
                        view = view[os.write(in_w, view[:65536]):]
                    except BrokenPipeError:
                        view = view[:0]
                    if not view:
                        poller.unregister(in_w)
                        os.close(in_w)
                        in_w, open_fds = -1, open_fds - 1
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    open_fds -= 1
    finally:
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r])
