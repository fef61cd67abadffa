"""A warm parent for container monitors: one per berth root, it forks every monitor.

Exec'ing a fresh interpreter for each monitor costs ~10 ms of every `run` (start-up and the
monitor's imports) and ~3 MB of private memory per container. The zygote is that
interpreter, started once: it imports everything a monitor runs, freezes its heap for the
collector, and forks a monitor per request. A monitor then shares the interpreter's
start-up heap, its modules and code with the zygote and with every sibling, copy on write,
and pays only for the pages it dirties itself. The zygote holds no container state: if it
dies, running monitors go on, and the next request starts a new zygote.

Protocol, on the unix socket ``<root>/run/zygote.sock``, one request per connection: the
client sends ``{"src": <berth's source dir>, "payload": <the monitor's spec payload>}`` as
JSON with the monitor's status pipe attached (SCM_RIGHTS), then shuts its side. The zygote
forks the monitor (a grandchild in its own session, nobody's child) and answers ``ok``; or
answers ``stale`` and exits when its code is not the client's (another source tree, or a
module changed on disk since it loaded), and the client starts a fresh one. It exits by
itself after ``IDLE_S`` without a request or when its socket is removed.
"""

import os

from berth.errors import InvalidArgument, SystemFailure

IDLE_S = 300
_BOOT = ("import sys;sys.path.insert(0,%r);"
         "from berth.engine.zygote import _main;_main(%r,%d)")


def socket_path(root):
    return os.path.join(root, "run", "zygote.sock")


def spawn(path, payload, status_w):
    """Have the zygote at ``path`` fork a monitor for ``payload`` (bytes) that reports on
    ``status_w``; start the zygote first when none answers. SystemFailure if none can."""
    for _ in range(3):
        reply = _request(path, payload, status_w)
        if reply == b"ok":
            return
        if reply in (None, b"stale"):
            _start(path)
            continue
        raise SystemFailure(f"monitor zygote {path}: {reply.decode(errors='replace')}")
    raise SystemFailure(f"monitor zygote {path}: it does not answer")


def _src():
    import berth

    return os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))


def _request(path, payload, status_w):
    import socket

    from berth.engine.monitor import short_socket_path

    message = b'{"src":%s,"payload":%s}' % (_json_str(_src()), payload)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    dirfd, short = short_socket_path(path)
    try:
        if sock.connect_ex(short):
            return None
        socket.send_fds(sock, [message], [status_w])
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks) or None
    except OSError:
        return None
    finally:
        sock.close()
        if dirfd >= 0:
            os.close(dirfd)


def _json_str(text):
    from berth.spec import jsonio

    return jsonio.dumps(text).encode()


def _start(path):
    """Start a zygote for ``path`` and wait until it listens (or has given way to another
    that got there first)."""
    from berth.sys import spawn

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    ready_r, ready_w = os.pipe()
    try:
        argv = [spawn.PYTHON, "-IS", "-c", _BOOT % (_src(), path, ready_w)]
        first = spawn.spawn_detached(argv, {"PATH": spawn.PATH}, (ready_w,))
    except OSError as err:
        os.close(ready_r)
        raise SystemFailure(f"cannot start the monitor zygote ({spawn.PYTHON}): "
                            f"{err.strerror}") from None
    finally:
        os.close(ready_w)
    spawn.collect(ready_r, first)


# ---------------------------------------------------------------- the zygote process

def _main(path, ready_fd):
    """Entry of the exec'd interpreter: load what monitors run, listen, fork on request."""
    import fcntl
    import gc
    import select
    import socket

    # Everything a monitor imports, loaded once here and shared by every fork.
    import berth.engine.logs  # noqa: F401
    import berth.engine.monitor as monitor
    import berth.snapshots  # noqa: F401
    import berth.spec.jsonio  # noqa: F401
    import berth.sys.consts  # noqa: F401
    import berth.sys.linux  # noqa: F401

    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _await_other(path)  # another zygote serves this root: the caller retries there
        os._exit(0)
    if os.fork():
        os._exit(0)  # the starter reaps this one; the zygote is nobody's child
    os.chdir("/")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    dirfd, short = monitor.short_socket_path(path)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener.bind(short)
    finally:
        if dirfd >= 0:
            os.close(dirfd)
    listener.listen(64)
    watched = _loaded_files(_src())
    identity = os.stat(path)
    gc.collect()
    gc.freeze()
    os.close(ready_fd)
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    idle_ms = 0
    while idle_ms < IDLE_S * 1000:
        if not poller.poll(1000):
            idle_ms += 1000
            if not _same_file(path, identity):
                break  # the socket was removed or replaced: this zygote is orphaned
            continue
        idle_ms = 0
        conn, _ = listener.accept()
        try:
            if not _serve(conn, listener, watched, monitor):
                break
        except OSError:
            pass
        finally:
            conn.close()
    listener.close()
    if _same_file(path, identity):
        os.unlink(path)
    os._exit(0)


def _await_other(path, tries=50):
    """Wait (up to ~5 s) until the zygote that holds the lock listens at ``path``."""
    import socket
    import time

    from berth.engine.monitor import short_socket_path

    for _ in range(tries):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dirfd, short = short_socket_path(path)
        try:
            if sock.connect_ex(short) == 0:
                return
        finally:
            sock.close()
            if dirfd >= 0:
                os.close(dirfd)
        time.sleep(0.1)


def _serve(conn, listener, watched, monitor):
    """One request; False when this zygote is stale and must exit."""
    import socket

    from berth.spec import jsonio

    conn.settimeout(5)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 1)
    chunks = [data]
    while data:
        data = conn.recv(1 << 20)
        chunks.append(data)
    try:
        if len(fds) != 1:
            conn.sendall(b"a request carries one status pipe")
            return True
        try:
            request = jsonio.loads(b"".join(chunks), "zygote request")
        except InvalidArgument as err:
            conn.sendall(str(err).encode())
            return True
        if request.get("src") != _src() or _changed(watched):
            conn.sendall(b"stale")
            return False
        payload = jsonio.dumps(request["payload"]).encode()
        pid = os.fork()
        if pid == 0:
            try:
                listener.close()
                conn.close()
                os.setsid()
                if os.fork():
                    os._exit(0)
                monitor.serve_forked(payload, fds[0])
            finally:
                os._exit(1)
        os.waitpid(pid, 0)
        conn.sendall(b"ok")
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _loaded_files(src):
    import sys

    out = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None) or ""
        if name.startswith(src + os.sep):
            try:
                out[name] = os.stat(name).st_mtime_ns
            except OSError:
                pass
    return out


def _changed(watched):
    for name, mtime in watched.items():
        try:
            if os.stat(name).st_mtime_ns != mtime:
                return True
        except OSError:
            return True
    return False


def _same_file(path, identity):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (identity.st_dev, identity.st_ino)
