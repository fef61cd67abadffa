"""A warm process for container monitors: one per berth root, each monitor a thread of it.

Exec'ing a fresh interpreter for each monitor costs ~10 ms of every `run` (start-up and the
monitor's imports) and ~3 MB of private memory per container (forking them from a warm
parent still left ~1.5 MB each: 3.11's reference counts dirty every shared page a monitor
touches). The zygote is that interpreter, started once: it imports everything a monitor
runs and serves each container's monitor on a thread of its own (a monitor sleeps in poll
and calls the runtime through posix_spawn, so the GIL is never the bottleneck). A container
then costs a thread's stack and its monitor's few objects; the process's memory is shared by
every container it watches. It is the subreaper of all their processes: a monitor waits for
its own children by pid, and ``_Reaper`` takes the strays no monitor waits for.

The zygote holds no state of its own: each monitor writes its container's state file as an
exec'd monitor does. If the process dies, its containers read as exited on the next
command (their MonitorPid is gone), as for any dead monitor, and the next request starts a
new zygote.

Protocol, on the unix socket ``<root>/run/zygote.sock``, one request per connection: the
client sends ``{"src": <berth's source dir>, "payload": <the monitor's spec payload>}`` as
JSON with the monitor's status pipe attached (SCM_RIGHTS), then shuts its side. The zygote
starts the monitor's thread and answers ``ok``; or answers ``stale`` when its code is not the
client's (another source tree, or a module changed on disk since it loaded), and the client
starts a fresh one. A zygote that is stale, whose socket was removed, or that stayed idle
for ``IDLE_S`` with no container stops listening (freeing the path for a new one) and exits
when its last monitor ends.
"""

import os

from berth.errors import InvalidArgument, SystemFailure

IDLE_S = 60
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
    # _socket, not socket: the wrapper module imports enum and selectors (~3 ms a run).
    import _socket
    import sys

    from berth.sys.forkserver import connect_unix

    message = b'{"src":%s,"payload":%s}' % (_json_str(_src()), payload)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        if connect_unix(sock, path):
            return None
        sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                  status_w.to_bytes(4, sys.byteorder))])
        sock.shutdown(_socket.SHUT_WR)
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
    """Entry of the exec'd interpreter: load what monitors run, listen, serve requests."""
    import fcntl
    import gc
    import select
    import socket
    import sys
    import threading

    # Everything a monitor imports, loaded once here.
    import berth.engine.health  # noqa: F401
    import berth.engine.logs  # noqa: F401
    import berth.events  # noqa: F401
    import berth.engine.monitor as monitor
    import berth.snapshots  # noqa: F401
    import berth.spec.jsonio  # noqa: F401
    import berth.sys.forkserver as forkserver
    import zlib  # noqa: F401
    import berth.sys.consts as consts
    import berth.sys.linux as linux

    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _await_other(path)  # another zygote serves this root: the caller retries there
        os._exit(0)
    if os.fork():
        os._exit(0)  # the starter reaps this one; the zygote is nobody's child
    os.chdir("/")
    # Every container's init and stray processes re-parent to this process.
    linux.prctl(consts.PR_SET_CHILD_SUBREAPER, 1)
    monitor.WARM_RUNTIME_DIR = os.path.dirname(path)
    threading.stack_size(256 * 1024)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    forkserver.bind_unix(listener, path)
    listener.listen(64)
    watched = forkserver.loaded_files(sys.modules, _src() + os.sep)
    identity = os.stat(path)
    held = _hold_database(os.path.dirname(os.path.dirname(path)))
    gc.collect()
    gc.freeze()
    os.close(ready_fd)
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    reaper = _Reaper(monitor.OWNED)
    idle_ms = 0
    while listener is not None or threading.active_count() > 1:
        reaper.sweep()
        if listener is None or not poller.poll(1000):
            if listener is None:
                threading.Event().wait(1)
            idle_ms += 1000
            if listener is not None and (
                    not _same_file(path, identity) or
                    (idle_ms >= IDLE_S * 1000 and threading.active_count() == 1)):
                listener = _stop_listening(listener, poller, path, identity, lock)
                lock = -1
                held = _release(held)
            continue
        idle_ms = 0
        conn, _ = listener.accept()
        try:
            if not _serve(conn, watched, monitor):
                listener = _stop_listening(listener, poller, path, identity, lock)
                lock = -1
                held = _release(held)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()
    reaper.sweep(final=True)
    os._exit(0)


def _hold_database(root):
    """An idle connection to the root's metadata database, held while this zygote listens.

    SQLite checkpoints the WAL into the database and deletes it when the last connection
    closes: with this one open, a command's close is just a close (~0.5-1 ms and three
    fdatasyncs less for every berth command). Commits still checkpoint now and then
    (every 1000 pages), and the last closer, this one included, checkpoints as before."""
    import sqlite3

    from berth.metadata.db import database_path

    path = database_path(root)
    if not os.path.exists(path):
        return None
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA user_version").fetchone()  # opens the WAL: a shared lock, kept
        return db
    except sqlite3.Error:
        return None


def _release(held):
    if held is not None:
        try:
            held.close()
        except Exception:  # noqa: BLE001 - only a checkpoint is lost, the next closer's
            pass
    return None


def _stop_listening(listener, poller, path, identity, lock):
    """No more requests (stale, orphaned or idle): free the path and the lock for a new
    zygote; this one lives on until its monitors end."""
    poller.unregister(listener.fileno())
    listener.close()
    if _same_file(path, identity):
        os.unlink(path)
    if lock >= 0:
        os.close(lock)
    return None


def _serve(conn, watched, monitor):
    """One request; False when this zygote is stale and must stop listening."""
    import socket
    import threading

    from berth.spec import jsonio

    conn.settimeout(5)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 1, socket.MSG_CMSG_CLOEXEC)
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
        from berth.sys.forkserver import changed

        if request.get("src") != _src() or changed(watched):
            conn.sendall(b"stale")
            return False
        payload = jsonio.dumps(request["payload"]).encode()
        threading.Thread(target=monitor.serve_thread, args=(payload, fds.pop()),
                         name=str(request["payload"].get("container_id"))).start()
        conn.sendall(b"ok")
        return True
    finally:
        for fd in fds:
            os.close(fd)


class _Reaper:
    """Reaps the processes that re-parent to the zygote (a container's strays, an exec'd
    process whose runtime exited) and no monitor waits for. A zombie is reaped once it has
    been seen unowned in two sweeps a second apart, so a monitor that learns its init's pid
    a moment after the init became our child still collects its exit status itself."""

    def __init__(self, owned):
        self.owned = owned
        self.seen = set()
        self.last = 0.0

    def sweep(self, final=False):
        import time

        now = time.monotonic()
        if not final and now - self.last < 1:
            return
        self.last = now
        zombies = {pid for pid in _children() if pid not in self.owned and _zombie(pid)}
        for pid in zombies if final else zombies & self.seen:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self.seen = zombies


def _children():
    out = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return out


def _zombie(pid):
    from berth.sys.proc import stat

    st = stat(pid)
    return st is not None and st[0] == "Z"


def _await_other(path, tries=50):
    """Wait (up to ~5 s) until the zygote that holds the lock listens at ``path``."""
    import socket
    import time

    from berth.sys.forkserver import connect_unix

    for _ in range(tries):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if connect_unix(sock, path) == 0:
                return
        finally:
            sock.close()
        time.sleep(0.1)


def _same_file(path, identity):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (identity.st_dev, identity.st_ino)
