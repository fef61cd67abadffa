"""A warm interpreter that forks a ready copy of itself for each call of a command.

A short command in Python pays its interpreter's start and its imports on every call (for
`berth run`, ~7 ms and ~15 ms). A fork server pays them once: it imports what the command
runs, then serves calls on a unix socket. For each call it forks a child that takes on the
caller's standard streams, working directory, umask, environment and arguments, runs the
command's entry function and exits with its code; the server sends that status back. The
caller is a small client (``call``) that needs only ``_socket``, ``marshal`` and ``posix``:
its own start is the interpreter's.

What the client does to stand in for the command's process:
- signals it receives (INT, TERM, HUP, QUIT, USR1, USR2, WINCH, CONT) are forwarded to the
  child; TSTP stops the child, then the client;
- the child's exit status is the client's: its code, or death by the same signal;
- when the client dies (kill -9), the server kills the child (SIGKILL), as if they were one
  process.

Protocol (one call per connection): the client sends a 4-byte little-endian length and a
marshal'd dict (``argv``, ``env``, ``umask``, ``key``, ``fds``: the numbers the passed
descriptors take in the child; the last one passed is the working directory, O_PATH) with
its descriptors attached (SCM_RIGHTS). The child answers ``P`` + its pid (8 bytes) first,
later ``X`` + its wait status (4 bytes) just before it exits; the server sends ``X`` again
once it has reaped it (the only one when a signal killed it; a second one is not read). A
child forked ahead of time (a "spare") takes the call when there is one. ``S`` alone
means "stale": the server's code is not the client's (``key`` differs, or a loaded module
changed on disk since it started); it stops listening and the client runs the command
itself.

The server is single-threaded, so a fork copies one thread in a known state. It exits when
it has been idle (no call, no child) for ``idle_s``.
"""

import marshal
import posix

STALE = -1  # what ``call`` returns when the server was stale (and stopped listening)
_FORWARDED = (1, 2, 3, 10, 12, 15, 18, 28)  # HUP INT QUIT USR1 USR2 TERM CONT WINCH
_SIGTSTP = 20
_SIGSTOP = 19


# ---------------------------------------------------------------- client

def call(path, argv, key, env=None, stdio=None, forward=True):
    """Run ``argv`` in a child of the server at ``path``; returns its wait status, None
    when no server answered, or STALE when a stale one did: then the caller must run the
    command itself.
    Before a child started, every failure is None; after, the status is the child's.
    ``stdio``: the child's fds 0-2 (default: this process's); ``forward``: pass this
    process's signals on to the child (only a main thread can)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        if connect_unix(sock, path):
            return None
        if stdio is None:
            fds, targets = [fd for fd in (0, 1, 2) if _is_open(fd)], None
        else:
            fds, targets = list(stdio), [0, 1, 2]
        cwd = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            mask = posix.umask(0o022)
            posix.umask(mask)
            body = marshal.dumps({"argv": list(argv), "key": key, "umask": mask,
                                  "env": posix.environ if env is None else _bytes(env),
                                  "fds": targets or fds})
            passed = b"".join(fd.to_bytes(4, "little") for fd in (*fds, cwd))
            sock.sendmsg([len(body).to_bytes(4, "little") + body],
                         [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, passed)])
        finally:
            posix.close(cwd)
        first = _recv_exact(sock, 1)
        if first == b"S":
            return STALE
        if first != b"P":
            return None
        pid = int.from_bytes(_recv_exact(sock, 8), "little")
    except OSError:
        return None
    if forward:
        _forward_signals(pid)
    try:
        reply = _recv_exact(sock, 5)
    except OSError:
        reply = b""
    sock.close()
    if reply[:1] != b"X":
        return 9  # the server died: as if the command was killed
    return int.from_bytes(reply[1:], "little")


def file_key(path, *more):
    """A key naming the code a server runs by its file's identity (``path`` replaced or
    touched: another key) and ``more`` (the server's parent, say)."""
    st = posix.stat(path)
    return ":".join(str(part) for part in (path, st.st_ino, st.st_mtime_ns, *more))


def exit_like(status):
    """Leave this process as the child left: its code, or its death by a signal."""
    if posix.WIFSIGNALED(status):
        import _signal

        sig = posix.WTERMSIG(status)
        if sig not in (9, _SIGSTOP):  # those two have no handler to reset
            _signal.signal(sig, _signal.SIG_DFL)
        posix.kill(posix.getpid(), sig)
        return 128 + sig
    return posix.WEXITSTATUS(status)


def short_socket_path(path):
    """(fd, a path under 108 bytes naming ``path``): unix socket addresses are limited to
    108 bytes, so a long one is reached through an O_PATH fd on its directory, as
    /proc/self/fd/N/NAME. The caller closes the fd (if not -1) after bind or connect."""
    if len(path.encode()) < 100:
        return -1, path
    i = path.rfind("/")
    fd = posix.open(path[:i] or "/", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    return fd, f"/proc/self/fd/{fd}/{path[i + 1:]}"


def connect_unix(sock, path):
    """``sock.connect_ex`` to a unix socket path of any length: 0 or an errno."""
    dirfd, short = short_socket_path(path)
    try:
        return sock.connect_ex(short)
    finally:
        if dirfd >= 0:
            posix.close(dirfd)


def bind_unix(sock, path):
    """``sock.bind`` to a unix socket path of any length."""
    dirfd, short = short_socket_path(path)
    try:
        sock.bind(short)
    finally:
        if dirfd >= 0:
            posix.close(dirfd)


def _bytes(env):
    return {(k if isinstance(k, bytes) else k.encode()):
            (v if isinstance(v, bytes) else v.encode()) for k, v in env.items()}


def _is_open(fd):
    try:
        posix.fstat(fd)
        return True
    except OSError:
        return False


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _forward_signals(pid):
    import _signal

    def forward(sig, _frame):
        try:
            posix.kill(pid, sig)
        except OSError:
            pass

    def stop(_sig, _frame):
        try:
            posix.kill(pid, _SIGSTOP)
        except OSError:
            pass
        posix.kill(posix.getpid(), _SIGSTOP)

    for sig in _FORWARDED:
        _signal.signal(sig, forward)
    _signal.signal(_SIGTSTP, stop)


# ---------------------------------------------------------------- server

def serve(path, key, entry, ready_fd=-1, idle_s=300, watch_prefix="", parent=0,
          private_fds=(), early_status=True):
    """Listen at ``path`` and run ``entry(argv)`` (its return: the exit code) in a child per
    call. ``key`` names the code (a client with another key is told "stale", and the server
    stops listening: its callers have moved on); modules loaded
    from under ``watch_prefix`` are watched for changes. ``ready_fd`` is closed once the
    server listens. Returns when stale or idle (or, with ``parent``, when that process is
    no longer this one's parent) and every child has ended. ``private_fds`` are closed in
    every child (a lock the server holds must not outlive it in a long command). With
    ``early_status`` False only the server reports a child's status, once it has reaped it:
    for callers that need the child gone (its orphans re-parented) when they hear of it."""
    import _socket
    import gc
    import select
    import sys

    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    tmp = f"{path}.{posix.getpid()}"
    try:
        posix.unlink(tmp)
    except FileNotFoundError:
        pass
    bind_unix(listener, tmp)
    listener.listen(64)
    posix.rename(tmp, path)  # a new server takes the path over at once
    identity = _identity(path)
    watched = loaded_files(sys.modules, watch_prefix) if watch_prefix else {}
    gc.collect()
    gc.freeze()  # the children's collections leave the server's objects (and pages) alone
    if ready_fd >= 0:
        posix.close(ready_fd)
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    by_fd = {}  # pidfd or connection fd -> the call it belongs to
    calls = []
    spare = None
    idle_ms = 0

    def held():
        """The server's descriptors, which a child closes first."""
        return [listener.fileno(), *private_fds,
                *(f for c in calls for f in (c.pidfd, c.conn.fileno()))]

    while listener is not None or calls:
        # The next call's child is forked ahead, while no call is in flight (forking beside
        # a running call would delay its end) or after a tenth of a second of quiet.
        wanted = spare is None and listener is not None
        if wanted and not calls:
            spare = _fork_spare(entry, held(), early_status)
            wanted = False
        events = poller.poll(100 if wanted else 1000)
        if not events and wanted:
            spare = _fork_spare(entry, held(), early_status)
            continue
        if not events:
            idle_ms += 1000
            if listener is not None and (_identity(path) != identity or
                                         (parent and posix.getppid() != parent) or
                                         (not calls and idle_ms >= idle_s * 1000)):
                listener = _close_listener(listener, poller, path, identity)
                spare = _drop_spare(spare)
            continue
        idle_ms = 0
        for fd, _ in events:
            if listener is not None and fd == listener.fileno():
                conn = _accept(listener)
                try:
                    c, spare = _start(conn, key, watched, entry, held(), spare,
                                      early_status)
                except (OSError, ValueError, EOFError, TypeError, KeyError):
                    conn.close()
                    continue
                if c is None:  # stale: this server is not the one wanted any more
                    conn.close()
                    listener = _close_listener(listener, poller, path, identity)
                    spare = _drop_spare(spare)
                    continue
                calls.append(c)
                for f in (c.pidfd, c.conn.fileno()):
                    by_fd[f] = c
                    poller.register(f, select.POLLIN)
                continue
            c = by_fd.get(fd)
            if c is None:
                continue
            if fd == c.conn.fileno():
                # Anything from the client after its call, or its hang-up: it is gone.
                _kill(c.pid)
                poller.unregister(fd)
                del by_fd[fd]
                continue
            _, status = posix.waitpid(c.pid, 0)
            try:
                c.conn.sendall(b"X" + status.to_bytes(4, "little"))
            except OSError:
                pass
            for f in (c.pidfd, c.conn.fileno()):
                if f in by_fd:
                    poller.unregister(f)
                    del by_fd[f]
            posix.close(c.pidfd)
            c.conn.close()
            calls.remove(c)


def _accept(listener):
    import _socket

    fd, _ = listener._accept()
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, fileno=fd)


class _Call:
    __slots__ = ("conn", "pid", "pidfd")

    def __init__(self, conn, pid, pidfd):
        self.conn, self.pid, self.pidfd = conn, pid, pidfd


def _start(conn, key, watched, entry, server_fds, spare, early_status):
    """Read a call and hand it to the spare child (or fork one); (the _Call, or None when
    this server is stale: another key, or its code changed on disk; the spare left, None
    once used). The request is read before any answer: a caller still sending when the
    connection closed would only see a broken pipe, not the "stale"."""

    conn.settimeout(5)
    fds = []
    try:
        body = _receive_call(conn, fds)
        request = marshal.loads(body)
        if request["key"] != key or changed(watched):
            conn.sendall(b"S")
            return None, spare
        if len(fds) != len(request["fds"]) + 1:
            raise ValueError("descriptors missing")
        conn.settimeout(None)
        pid = _hand_over(spare, len(body).to_bytes(4, "little") + body,
                         [*fds, conn.fileno()])
        spare = None
        if pid is None:
            pid = posix.fork()
            if pid == 0:
                _child(request, fds, entry, server_fds, conn.fileno(), early_status)
        pidfd = posix.pidfd_open(pid)
        return _Call(conn, pid, pidfd), spare
    finally:
        for fd in fds:
            posix.close(fd)


class _Spare:
    """A child forked ahead of the next call (a fork of the server costs ~1 ms), waiting
    on its end of a socket pair for the call's request and descriptors."""
    __slots__ = ("pid", "sock")

    def __init__(self, pid, sock):
        self.pid, self.sock = pid, sock


def _fork_spare(entry, server_fds, early_status):
    import _socket

    mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    pid = posix.fork()
    if pid == 0:
        try:
            mine.close()
            for fd in server_fds:
                posix.close(fd)
            fds = []
            data = _receive_call(theirs, fds)
            theirs.close()
            request = marshal.loads(data)
        except BaseException:  # noqa: BLE001 - the server went, or gave up this spare
            posix._exit(0)
        _child(request, fds[:-1], entry, [], fds[-1], early_status)
    theirs.close()
    return _Spare(pid, mine)


def _receive_call(sock, fds):
    """A call's request bytes (length-prefixed); the descriptors that came with it are
    added to ``fds`` (non-inheritable), for the caller to close whatever happens."""
    import _socket

    data, ancillary, _, _ = sock.recvmsg(1 << 16, _socket.CMSG_SPACE(4 * 8))
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], "little")
                    for i in range(0, len(payload) - len(payload) % 4, 4)]
    for fd in fds:
        posix.set_inheritable(fd, False)
    if not data:
        raise EOFError
    size = int.from_bytes(data[:4], "little")
    body = data[4:]
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            raise EOFError
        body += chunk
    return body


def _hand_over(spare, message, fds):
    """Give a call to the spare; its pid, or None when there is none (or it died)."""
    import _socket

    if spare is None:
        return None
    try:
        spare.sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                        b"".join(fd.to_bytes(4, "little") for fd in fds))])
        return spare.pid
    except OSError:
        _kill(spare.pid)
        posix.waitpid(spare.pid, 0)
        return None
    finally:
        spare.sock.close()


def _drop_spare(spare):
    """Let the spare go (it exits on the closed socket) and reap it; None."""
    if spare is not None:
        spare.sock.close()
        try:
            posix.waitpid(spare.pid, 0)
        except ChildProcessError:
            pass
    return None


def _child(request, fds, entry, server_fds, conn_fd, early_status):
    """In the forked child: become the caller's command, run it, tell the caller its code
    on ``conn_fd`` (at once: the server would only say it once this process is torn down,
    ~0.5 ms later; unless ``early_status`` is False) and exit with it. A child killed by a
    signal is reported by the server."""
    code = 1
    try:
        # The caller learns who runs its command (to forward signals) before anything else
        # is said on the connection: its exit status comes later, from here.
        posix.write(conn_fd, b"P" + posix.getpid().to_bytes(8, "little"))
        for fd in server_fds:
            posix.close(fd)
        for target, fd in zip(request["fds"], fds):
            posix.dup2(fd, target)
        for target in {0, 1, 2} - set(request["fds"]):
            posix.close(target)
        posix.fchdir(fds[-1])
        for fd in fds:
            posix.close(fd)
        posix.umask(request["umask"])
        import os
        import sys

        os.environb.clear()
        os.environb.update(request["env"])
        sys.stdin, sys.stdout, sys.stderr = _streams(set(request["fds"]))
        sys.argv = list(request["argv"])
        code = entry(sys.argv[1:])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 0 if err.code is None else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - the command's own handler missed it: say so
        try:
            import traceback
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
        code = 1
    finally:
        import sys as _sys

        for stream in (_sys.stdout, _sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed pipe: nothing more to say
                pass
        code = (code if isinstance(code, int) else 1) & 0xFF
        if early_status:
            try:
                posix.write(conn_fd, b"X" + (code << 8).to_bytes(4, "little"))
            except OSError:
                pass  # the caller is gone
        posix._exit(code)


def _streams(open_fds):
    """sys.stdin/stdout/stderr on fds 0-2 as a fresh interpreter makes them."""
    import io

    def text(fd, mode, line_buffering, errors):
        if fd not in open_fds:
            return None
        raw = io.FileIO(fd, mode, closefd=False)
        tty = raw.isatty()
        buffered = (io.BufferedReader if mode == "r" else io.BufferedWriter)(raw)
        return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors,
                                line_buffering=line_buffering or tty,
                                write_through=False)

    return (text(0, "r", False, "surrogateescape"), text(1, "w", False, "surrogateescape"),
            text(2, "w", True, "backslashreplace"))


def _kill(pid):
    try:
        posix.kill(pid, 9)
    except OSError:
        pass


def _close_listener(listener, poller, path, identity):
    poller.unregister(listener.fileno())
    listener.close()
    if _identity(path) == identity:
        try:
            posix.unlink(path)
        except FileNotFoundError:
            pass
    return None


def _identity(path):
    try:
        st = posix.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def loaded_files(modules, prefix):
    """{file: mtime} of the modules loaded from under ``prefix``, for ``changed``."""
    out = {}
    for module in list(modules.values()):
        name = getattr(module, "__file__", None) or ""
        if name.startswith(prefix):
            try:
                out[name] = posix.stat(name).st_mtime_ns
            except OSError:
                pass
    return out


def changed(watched):
    """Whether a file of ``loaded_files`` changed (or went) since."""
    for name, mtime in watched.items():
        try:
            if posix.stat(name).st_mtime_ns != mtime:
                return True
        except OSError:
            return True
    return False
