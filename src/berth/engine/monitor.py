"""The per-container monitor: containerd-shim's and conmon's job, one process a container.

``spawn_monitor`` starts it detached from the caller (new session, stdio on /dev/null, not
the caller's child; forked by the root's zygote, see ``berth.engine.zygote``, or exec'd); it
becomes the child subreaper, mounts the rootfs from the given mount list, runs
``<runtime> run --detach`` with the container's stdio on pipes it owns (or a pty that the
runtime sends over --console-socket when tty) and reports the init's pid back over a pipe;
a container not to be started yet is run so when the attach socket asks (one runtime call,
not create then start; ``create``/``start`` remain for what the runtime created earlier).
It copies its output into the json-file
log (``logs.JsonFileWriter``), serves attach clients, waits for the init (it is our child:
subreaper), records the exit code (128+signal when killed) and the OOM kill count of the
container's memory cgroup, runs ``<runtime> delete``, unmounts, then applies the restart
policy with Docker's back-off (100 ms doubling, up to a minute, reset after 10 s of running)
unless ``<state_path>.stop`` says the engine stopped it, and exits.

State goes through a ``Reporter``; the monitor process uses ``StateFileReporter``, an
atomically replaced JSON file the engine merges into its records.

Memory (PSS from /proc/<pid>/smaps_rollup, USS = Private_Clean + Private_Dirty; Debian's
python 3.11; printed by tests/integration/test_engine_monitor.py::test_monitor_memory):

                                                PSS       USS
    engine process forked and kept (CLI heap)   5.7 MB    5.4 MB  (private once the CLI exits)
    bare `/usr/bin/python3 -IS`                 3.0 MB    2.4 MB  (the floor)
    this monitor, one alone                     5.6 MB    3.4 MB
    this monitor, the 10th of 10                3.7 MB    3.2 MB  (10 in all: 36.8 MB PSS)

So the monitor execs a fresh ``/usr/bin/python3 -IS -c`` that imports this module (os,
select, _socket, _json, time, berth.sys.linux for prctl and mounts) and reads its
``MonitorSpec`` as JSON from a pipe: the interpreter's code and libraries are shared with
every other python, nothing of the engine's heap comes along, and each further container
costs ~3.2 MB instead of ~5.4. Of that, 1.2 MB is the interpreter's own .data that 3.11's
refcounting dirties in every process and ~1 MB its start-up heap; the monitor adds ~0.8 MB
(its code objects, ctypes for prctl ~0.2-0.4 MB). Dropping ctypes would need a second exec
(PR_SET_CHILD_SUBREAPER survives execve, not fork), ~10 ms on every start: not worth it.
conmon's 368 kB is out of reach for any CPython process; a zygote monitor forking siblings
would be the next step.

Attach protocol (unix socket ``attach_socket``): the client sends one line, words among
``attach stdin stdout stderr close-stdin start size=ROWSxCOLS`` or ``start`` or
``resize ROWS COLS``, then raw stdin bytes; the monitor sends frames: 8-byte header
(type, 0, 0, 0, big-endian length) and payload; types 1 stdout, 2 stderr, 3 exit (code as
text), 4 error (message), 5 started (pid as text). The client ends a session on the
detach keys by closing its socket (`attach` returns DETACHED).
"""

import _thread
import os

from berth.errors import SystemFailure

PYTHON = "/usr/bin/python3"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_BOOT = ("import sys;sys.path.insert(0,%r);"
         "from berth.engine.monitor import _main;_main(%d,%d)")
_CALL = "import sys;sys.path.insert(0,%r);from %s import %s as call;call(*%r)"

_STDOUT, _STDERR, _EXIT, _ERROR, _STARTED = 1, 2, 3, 4, 5
_RESTART_MIN_NS = 100_000_000
_RESTART_MAX_NS = 60_000_000_000
_RESET_AFTER_NS = 10_000_000_000


class MonitorSpec:
    """What a monitor needs, as plain JSON-able data (it crosses a pipe to the monitor)."""

    FIELDS = ("container_id", "bundle", "runtime", "rootfs_mounts", "log_path",
              "log_max_size", "log_max_file", "tty", "stdin_open", "restart_policy",
              "state_path", "attach_socket", "healthcheck", "health_on_failure",
              "stop_signal", "stop_timeout", "events_path", "event_attrs", "exit_call")

    def __init__(self, container_id, bundle, runtime, rootfs_mounts=(), log_path="",
                 log_max_size=0, log_max_file=1, tty=False, stdin_open=False,
                 restart_policy=None, state_path="", attach_socket="", healthcheck=None,
                 health_on_failure="none", stop_signal="SIGTERM", stop_timeout=10,
                 events_path="", event_attrs=None, exit_call=()):
        home = os.path.dirname(os.path.abspath(bundle))
        self.container_id = container_id
        self.bundle = os.path.abspath(bundle)
        self.runtime = list(runtime)
        self.rootfs_mounts = [dict(m) for m in rootfs_mounts]
        self.log_path = log_path or os.path.join(home, f"{container_id}-json.log")
        self.log_max_size = int(log_max_size or 0)
        self.log_max_file = int(log_max_file or 1)
        self.tty = bool(tty)
        self.stdin_open = bool(stdin_open)
        self.restart_policy = dict(restart_policy or {"Name": "no", "MaximumRetryCount": 0})
        self.state_path = state_path or os.path.join(home, "monitor.json")
        self.attach_socket = attach_socket or os.path.join(home, "attach.sock")
        self.healthcheck = dict(healthcheck) if healthcheck else None
        self.health_on_failure = health_on_failure or "none"
        self.stop_signal = stop_signal or "SIGTERM"
        self.stop_timeout = 10 if stop_timeout is None else int(stop_timeout)
        self.events_path = events_path
        self.event_attrs = dict(event_attrs or {})
        # A call made once the container is gone for good (the engine's network teardown),
        # as [module, function, arguments...]; its failure is not the container's. A
        # monitor that is a thread of the zygote makes it in process; an exec'd one runs it
        # in an interpreter of its own (~30 ms that a `run --rm` would wait for).
        self.exit_call = list(exit_call or ())

    def to_json(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_json(cls, data):
        return cls(**{name: data[name] for name in cls.FIELDS if name in data})


# ---------------------------------------------------------------- state reporting

class Reporter:
    """Where a monitor reports the container's life; these no-ops are the protocol."""

    def created(self, pid):
        pass

    def started(self, pid, started_at):
        pass

    def exited(self, code, finished_at, oom_killed, error):
        pass

    def restarting(self, count):
        pass

    def health(self, health):
        pass


class StateFileReporter(Reporter):
    """Keeps Docker's State fields (and RestartCount, MonitorPid) in a JSON file, replaced
    atomically at each change; ``read_state`` reads it back."""

    def __init__(self, path):
        self.path = path
        self.state = {"Status": "created", "Running": False, "Paused": False,
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                      "ExitCode": 0, "Error": "", "StartedAt": "", "FinishedAt": "",
                      "RestartCount": 0, "MonitorPid": os.getpid(),
                      "MonitorStart": process_start(os.getpid())}

    def _save(self, **fields):
        from berth.spec import jsonio

        self.state.update(fields)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, jsonio.dumps(self.state).encode())
        finally:
            os.close(fd)
        os.rename(tmp, self.path)

    def created(self, pid):
        self._save(Status="created", Pid=pid, MonitorPid=os.getpid())

    def started(self, pid, started_at):
        self._save(Status="running", Running=True, Restarting=False, Pid=pid,
                   StartedAt=started_at, ExitCode=0, Error="", OOMKilled=False)

    def exited(self, code, finished_at, oom_killed, error):
        self._save(Status="exited", Running=False, Restarting=False, Pid=0, ExitCode=code,
                   FinishedAt=finished_at, OOMKilled=bool(oom_killed), Error=error or "")

    def restarting(self, count):
        self._save(Status="restarting", Restarting=True, RestartCount=count)

    def health(self, health):
        self._save(Health=health)

    def monitor_exited(self):
        self._save(MonitorPid=0)


def process_start(pid):
    """"<boot id>:<start time in ticks>" of a live process ("" when it is gone or a zombie):
    names the same process, unlike a bare pid, which is reused (and after a reboot)."""
    from berth.sys.proc import stat

    st = stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return ""  # dead, not yet reaped (its parent may be an init that never reaps)
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            boot = f.read().strip().decode()
    except OSError:
        return ""
    return f"{boot}:{st[1]}"


def read_state(path):
    """The state a ``StateFileReporter`` wrote, or {} when there is none yet."""
    from berth.spec import jsonio

    try:
        with open(path, "rb") as f:
            return jsonio.loads(f.read(), path)
    except FileNotFoundError:
        return {}


# ---------------------------------------------------------------- the engine's side

def spawn_monitor(spec, *, start=True, zygote=None):
    """Start a detached monitor for ``spec``; return the init's pid once the container is
    created (and started with ``start``). A failure is raised as the runtime's one-line
    message (SystemFailure) after the monitor cleaned up and exited. With ``zygote`` (a
    socket path, see berth.engine.zygote) the monitor is forked by that warm parent;
    without, a fresh interpreter is exec'd for it."""
    import berth
    from berth.spec import jsonio
    from berth.sys import spawn

    try:
        os.unlink(spec.state_path + ".stop")
    except FileNotFoundError:
        pass
    payload = dict(spec.to_json(), start=bool(start), path=os.environ.get("PATH") or _PATH)
    data = jsonio.dumps(payload).encode()
    status_r, status_w = os.pipe()
    if zygote:
        from berth.engine import zygote as zy

        try:
            zy.spawn(zygote, data, status_w)
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        return _created_pid(spec, spawn.collect(status_r, None), start)
    src = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    spec_r, spec_w = os.pipe()
    try:
        argv = [PYTHON, "-IS", "-c", _BOOT % (src, spec_r, status_w)]
        first = spawn.spawn_detached(argv, {"PATH": _PATH}, (spec_r, status_w))
    except OSError as err:
        for fd in (spec_r, spec_w, status_r, status_w):
            os.close(fd)
        raise SystemFailure(f"cannot start the monitor ({PYTHON}): {err.strerror}") from None
    os.close(spec_r)
    os.close(status_w)
    try:
        _write_all(spec_w, data)
    except OSError:
        pass  # it died: its status pipe says nothing, reported below
    finally:
        os.close(spec_w)
    return _created_pid(spec, spawn.collect(status_r, first), start)


def _created_pid(spec, said, start):
    """The init's pid from what the monitor said on its status pipe."""
    pid = 0
    for line in said.decode(errors="replace").splitlines():
        word, _, rest = line.partition(" ")
        if word == "error":
            raise SystemFailure(rest)
        if word == "created" or word == "started":
            pid = int(rest)
        if word == "started" or (word == "created" and not start):
            return pid
    raise SystemFailure(f"container {spec.container_id}: the monitor exited without a word")


DETACHED = "detached"  # what attach returns when the user typed the detach keys


def _escape(buf, keys):
    """(bytes to send, bytes held back, detached?) for input ``buf``: the detach ``keys``
    end the session; a part of them at the end is held until the next input decides."""
    at = buf.find(keys)
    if at >= 0:
        return buf[:at], b"", True
    for n in range(min(len(keys) - 1, len(buf)), 0, -1):
        if buf.endswith(keys[:n]):
            return buf[:-n], buf[-n:], False
    return buf, b"", False


def attach(socket_path, stdin=None, stdout=None, stderr=None, *, start=False,
           close_stdin=True, size=None, detach_keys=b""):
    """Stream the container's output to ``stdout``/``stderr`` (binary files or fds) and
    ``stdin`` (file or fd) to it until it exits; return its exit code. ``start`` starts a
    container its monitor created with start=False, once attached (no output is missed);
    ``close_stdin`` closes the container's stdin when ``stdin`` ends (`run -i`);
    ``detach_keys`` typed on ``stdin`` end the session: DETACHED is returned."""
    import _socket
    import select

    sock = _connect(socket_path)
    words = ["attach"]
    words += [name for name, on in (("stdin", stdin is not None),
                                    ("stdout", stdout is not None),
                                    ("stderr", stderr is not None),
                                    ("close-stdin", close_stdin and stdin is not None),
                                    ("start", start)) if on]
    if size:
        words.append(f"size={int(size[0])}x{int(size[1])}")
    outs = {_STDOUT: _writer(stdout), _STDERR: _writer(stderr)}
    in_fd = stdin if isinstance(stdin, int) or stdin is None else stdin.fileno()
    try:
        sock.sendall((" ".join(words) + "\n").encode())
        reader = _FrameReader()
        held = b""
        watch = [sock] + ([in_fd] if in_fd is not None else [])
        while True:
            ready, _, _ = select.select(watch, [], [])
            if in_fd in ready:
                data = os.read(in_fd, 65536)
                if not data:
                    if held:
                        sock.sendall(held)
                    watch.remove(in_fd)
                    sock.shutdown(_socket.SHUT_WR)
                elif detach_keys:
                    data, held, detached = _escape(held + data, detach_keys)
                    if data:
                        sock.sendall(data)
                    if detached:
                        return DETACHED
                else:
                    sock.sendall(data)
            if sock in ready:
                for kind, payload in _receive(sock, reader, f"attach {socket_path}"):
                    if kind == _EXIT:
                        return int(payload)
                    if kind == _ERROR:
                        raise SystemFailure(payload.decode(errors="replace"))
                    out = outs.get(kind)
                    if out is not None:
                        out(payload)
    finally:
        sock.close()


def start(socket_path):
    """Start a container whose monitor was spawned with start=False; returns its pid."""
    sock = _connect(socket_path)
    try:
        sock.sendall(b"start\n")
        reader = _FrameReader()
        while True:
            for kind, payload in _receive(sock, reader, f"start via {socket_path}"):
                if kind == _STARTED:
                    return int(payload)
                if kind in (_ERROR, _EXIT):
                    raise SystemFailure(payload.decode(errors="replace") if kind == _ERROR
                                        else "the container exited before it was started")
    finally:
        sock.close()


def resize(socket_path, rows, cols):
    """Set the size of a tty container's terminal."""
    sock = _connect(socket_path)
    try:
        sock.sendall(f"resize {int(rows)} {int(cols)}\n".encode())
    finally:
        sock.close()


def _connect(path):
    # _socket, not socket: the wrapper module imports enum and selectors (~3 ms a command).
    import _socket

    from berth.errors import Conflict

    from berth.sys.forkserver import connect_unix

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    failed = connect_unix(sock, path)
    if failed:
        sock.close()
        raise Conflict(f"cannot attach to {path}: {os.strerror(failed)} "
                       f"(is the container running?)")
    return sock


def _receive(sock, reader, what):
    """The whole frames one recv completes; the monitor closing first is an error."""
    data = sock.recv(65536)
    if not data:
        raise SystemFailure(f"{what}: the monitor went away")
    return reader.feed(data)


def _writer(out):
    if out is None:
        return None
    if isinstance(out, int):
        return lambda data: _write_all(out, data)

    def write(data):
        out.write(data)
        out.flush()
    return write


class _FrameReader:
    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        frames = []
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[4:8], "big")
            if len(self.buf) < 8 + size:
                break
            frames.append((self.buf[0], self.buf[8:8 + size]))
            self.buf = self.buf[8 + size:]
        return frames


def _frame(kind, payload):
    return bytes((kind, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---------------------------------------------------------------- the monitor process

def _main(spec_fd, status_fd):
    """Entry of the exec'd interpreter: read the spec, leave the spawner, serve."""
    chunks = []
    while True:
        chunk = os.read(spec_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(spec_fd)
    os.set_inheritable(status_fd, False)  # neither the runtime nor the init may hold it
    keep = {0, 1, 2, status_fd}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    if os.fork():
        os._exit(0)  # the spawner reaps this one; the monitor is nobody's child now
    os.chdir("/")
    import gc

    gc.collect()
    gc.freeze()  # what is loaded now stays: the collector need not walk it again
    os._exit(_serve_monitor(b"".join(chunks), status_fd, False))


def serve_thread(payload, status_fd):
    """Entry of a monitor that runs as a thread of the zygote (berth.engine.zygote): serve
    ``payload``, then return (the process goes on for its other monitors)."""
    os.set_inheritable(status_fd, False)  # neither the runtime nor the init may hold it
    _serve_monitor(payload, status_fd, True)


# Children some monitor thread waits for by pid (runtime calls, inits): the zygote's reaper
# of stray processes leaves them alone (a set's add and discard are atomic under the GIL).
OWNED = set()

# Set by the zygote: the directory of its warm runtime's socket (see _warm_runtime).
WARM_RUNTIME_DIR = None
_WARM_LOCK = _thread.allocate_lock()
_warm_started = {}  # socket -> until when a server started for it may still be starting


def _warm_runtime(argv, env, stdio):
    """Run berth-oci ``argv`` in a child of its fork server (`berth-oci _serve`, a child of
    this zygote: the container's init re-parents here as from a runtime spawned here),
    which skips the interpreter's start and imports (~7 ms a call). The wait status, or None
    to spawn the runtime as usual: not berth-oci, no zygote, or no server yet (one is
    started in the background for the next call)."""
    if WARM_RUNTIME_DIR is None or os.path.basename(argv[0]) != "berth-oci":
        return None
    import zlib

    from berth.sys import forkserver

    launcher = argv[0]
    sock = os.path.join(WARM_RUNTIME_DIR, f"oci-{zlib.crc32(launcher.encode()):08x}.sock")
    try:
        # The launcher's file and this zygote: a server left by a dead zygote (re-parented
        # elsewhere, so no longer a way to this one's subreaping) is stale.
        key = forkserver.file_key(launcher, os.getpid())
    except OSError:
        return None
    status = forkserver.call(sock, argv, key, env=env, stdio=stdio, forward=False)
    if status is None or status == forkserver.STALE:
        _start_warm_runtime(launcher, sock, env, status == forkserver.STALE)
        return None
    return status


def _start_warm_runtime(launcher, sock, env, stale):
    """Start a server for ``sock`` (this zygote's child, reaped by its reaper) unless one is
    starting (for two seconds at most; a stale answer means the server there has just given
    up the path, and one must start)."""
    import time

    from berth.sys import spawn

    with _WARM_LOCK:
        if not stale and _warm_started.get(sock, 0) > time.monotonic():
            return  # one is starting
        _warm_started[sock] = time.monotonic() + 2
        try:
            spawn.spawn_detached([launcher, "_serve", sock], env)
        except OSError:
            pass  # the runtime is spawned per call, as without a server


def _serve_monitor(payload, status_fd, threaded):
    """Run one container's monitor to its end; its exit code."""
    from berth.spec import jsonio
    raw = jsonio.loads(payload, "monitor spec")
    spec = MonitorSpec.from_json(raw)
    reporter = StateFileReporter(spec.state_path)
    monitor = _Monitor(spec, reporter, status_fd, raw.get("path") or _PATH, threaded)
    code = 0
    try:
        monitor.run(raw.get("start", True))
    except BaseException as err:  # noqa: BLE001 - the last word, then leave
        monitor.tell("error", f"monitor: {err}")
        code = 1
    finally:
        try:
            reporter.monitor_exited()
        except OSError:
            pass
    return code


class _Failed(Exception):
    """Creating or starting failed; the message is the runtime's one line."""


class _Monitor:
    """One container's life: create, start, copy, wait, clean up, maybe again."""

    def __init__(self, spec, reporter, status_fd, path, threaded=False):
        self.threaded = threaded  # one of several monitors of a zygote's process
        self.spec = spec
        self.reporter = reporter
        self.status_fd = status_fd
        self.env = {"PATH": path}
        self.runtime_log = spec.state_path + ".oci-log"
        self.pid = 0
        self.pidfd = -1
        self.outputs = {}  # fd -> stream name
        self.stdin_w = -1
        self.master = -1
        self.clients = {}  # fd -> _Client
        self.listener = None
        self.poller = None
        self.writer = None
        self.running = False
        self.last_exit = None
        self.started_ns = 0
        self.mounted = False
        self.deferred = False
        self.hook_thread = None  # a lock held while an early exit hook runs (_finish)
        self.health = None             # health.Checker when the container has a check
        self.health_restart = False    # --health-on-failure restart asked for a restart
        self.kill_at = None            # monotonic ns of a SIGKILL after a stop signal

    # -- reporting to the spawner

    def tell(self, word, text):
        if self.status_fd < 0:
            return
        try:
            _write_all(self.status_fd, f"{word} {text}\n".encode())
        except OSError:
            pass
        if word in ("error", "started") or word == "created" and not self._start_now:
            os.close(self.status_fd)
            self.status_fd = -1

    # -- the life cycle

    def run(self, start_now):
        from berth.sys import consts as C
        from berth.sys import linux

        from berth.engine.logs import JsonFileWriter

        self._start_now = start_now
        linux.prctl(C.PR_SET_CHILD_SUBREAPER, 1)
        import select
        self.poller = select.poll()
        self.writer = JsonFileWriter(self.spec.log_path, self.spec.log_max_size,
                                     self.spec.log_max_file)
        self._listen()
        self._health_checker()
        try:
            try:
                if start_now:
                    self._create(run=True)
                else:
                    # Created on the attach that starts it, with the runtime's `run`: one
                    # runtime call instead of create and start (~10 ms). Until then the
                    # container exists for the engine only.
                    self.deferred = True
                    self.reporter.created(0)
                    self.tell("created", "0")
            except _Failed as err:
                self.reporter.exited(_failure_code(str(err)), _rfc3339(), False, str(err))
                self.tell("error", str(err))
                return
            count = 0
            backoff = 0
            while True:
                result = self._serve()
                if result is None:
                    return  # a requested start failed: reported, nothing to restart
                code, oom, error = result
                ran_ns = _now_ns() - self.started_ns if self.started_ns else 0
                if not self._should_restart(code, count):
                    return
                if ran_ns >= _RESET_AFTER_NS:
                    backoff = 0
                backoff = min(_RESTART_MAX_NS, backoff * 2 if backoff else _RESTART_MIN_NS)
                count += 1
                self.reporter.restarting(count)
                if not self._wait_backoff(backoff):
                    self.reporter.exited(code, _rfc3339(), oom, error)
                    return
                try:
                    self._create(run=True)
                except _Failed as err:
                    self.reporter.exited(code, _rfc3339(), False, str(err))
                    return
        finally:
            self.writer.close()
            self._close_listener()
            if self.hook_thread is not None:
                self.hook_thread.acquire()  # started at the exit (below): wait for it
            else:
                self._run_exit_hook()

    def _early_exit_hook(self):
        """A container that will not restart is gone for good once its init is reaped: in a
        zygote, take its network down on another thread beside the runtime's `delete`, so
        the `rm` that follows a `run --rm` finds it done (~2.5 ms off every networked run)."""
        policy = (self.spec.restart_policy.get("Name") or "no")
        if not (self.threaded and self.spec.exit_call) or policy != "no" or \
                self.health_restart or self.hook_thread is not None:
            return
        import _thread

        done = _thread.allocate_lock()
        done.acquire()

        def run():
            try:
                self._run_exit_hook()
            finally:
                done.release()

        self.hook_thread = done
        _thread.start_new_thread(run, ())

    def _run_exit_hook(self):
        if not self.spec.exit_call:
            return
        module, function, *args = self.spec.exit_call
        if self.threaded:
            try:
                getattr(__import__(module, fromlist=[function]), function)(*args)
                return
            except Exception:  # noqa: BLE001 - an interpreter of its own tries again
                pass
        import berth

        src = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
        argv = [PYTHON, "-IS", "-c", _CALL % (src, module, function, args)]
        try:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            try:
                pid = os.posix_spawn(argv[0], argv, self.env,
                                     file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                                   (os.POSIX_SPAWN_DUP2, null, 1),
                                                   (os.POSIX_SPAWN_DUP2, null, 2)])
            finally:
                os.close(null)
            os.waitpid(pid, 0)
        except OSError:
            pass

    def _should_restart(self, code, count):
        if os.path.exists(self.spec.state_path + ".stop"):
            return False
        if self.health_restart:
            self.health_restart = False
            return True
        policy = self.spec.restart_policy
        name = policy.get("Name") or "no"
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return code != 0 and (limit == 0 or count < limit)
        return False

    def _wait_backoff(self, delay_ns):
        """Sleep out the back-off, serving attach clients; False when a stop came."""
        deadline = _now_ns() + delay_ns
        while True:
            left = deadline - _now_ns()
            if os.path.exists(self.spec.state_path + ".stop"):
                return False
            if left <= 0:
                return True
            for fd, _ in self.poller.poll(min(left // 1_000_000 + 1, 100)):
                self._event_idle(fd)

    # -- create / start / cleanup

    def _create(self, run=False):
        """Create the container with the runtime, or with ``run`` create and start it."""
        spec = self.spec
        from berth.snapshots import Mount, mount_all

        rootfs = os.path.join(spec.bundle, "rootfs")
        try:
            os.makedirs(rootfs, exist_ok=True)
            if spec.rootfs_mounts:
                mount_all([Mount.from_oci(m) for m in spec.rootfs_mounts], rootfs)
                self.mounted = True
        except Exception as err:  # noqa: BLE001 - reported as the failure
            self._unmount()
            raise _Failed(f"mount rootfs of {spec.container_id}: {err}") from None
        devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        mine = []
        theirs = []
        console = None
        try:
            if spec.tty:
                console = self._console_listener()
                stdio = (devnull, devnull, devnull)
                extra = ["--console-socket", console[1]]
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                mine += [out_r, err_r]
                theirs += [out_w, err_w]
                in_fd = devnull
                if spec.stdin_open:
                    in_r, in_w = os.pipe()
                    mine.append(in_w)
                    theirs.append(in_r)
                    in_fd = in_r
                stdio = (in_fd, out_w, err_w)
                extra = []
            pid_file = spec.state_path + ".pid"
            verb = ["run", "--detach"] if run else ["create"]
            rc, message = self._runtime([*verb, "--bundle", spec.bundle,
                                         "--pid-file", pid_file, *extra,
                                         spec.container_id], stdio)
            for fd in theirs:
                os.close(fd)
            theirs = []
            if rc != 0:
                raise _Failed(message)
            with open(pid_file) as f:
                self.pid = int(f.read().strip())
            OWNED.add(self.pid)
            os.unlink(pid_file)
            self.pidfd = os.pidfd_open(self.pid)
            self.poller.register(self.pidfd, 1)  # POLLIN: the init exited
            if spec.tty:
                self.master = self._receive_master(console[0])
                os.set_blocking(self.master, False)
                self.outputs[self.master] = "stdout"
                self.poller.register(self.master, 1)
            else:
                for fd, name in ((mine[0], "stdout"), (mine[1], "stderr")):
                    if not run:  # once started, what is there is the container's
                        _discard_pending(fd)  # the runtime's own words, not the container's
                    os.set_blocking(fd, False)
                    self.outputs[fd] = name
                    self.poller.register(fd, 1)
                if spec.stdin_open:
                    self.stdin_w = mine[2]
                    os.set_blocking(self.stdin_w, False)
            mine = []
        except BaseException as err:
            for fd in mine + theirs:
                os.close(fd)
            self._cleanup()
            if isinstance(err, _Failed):
                raise
            raise _Failed(str(err)) from None
        finally:
            os.close(devnull)
            if console is not None:
                console[0].close()
                _unlink(console[1])
                if os.path.basename(os.path.dirname(console[1])).startswith("berth-console-"):
                    try:
                        os.rmdir(os.path.dirname(console[1]))
                    except OSError:
                        pass
        self.reporter.created(self.pid)
        if run:
            self._started()
        else:
            self.tell("created", str(self.pid))

    def _start(self):
        rc, message = self._runtime(["start", self.spec.container_id])
        if rc != 0:
            self._cleanup()
            raise _Failed(message)
        self._started()

    def _started(self):
        self.running = True
        self.started_ns = _now_ns()
        self.reporter.started(self.pid, _rfc3339())
        self.event("start")
        if self.health is not None:
            self.health.start()
        self.tell("started", str(self.pid))

    # -- events and healthchecks

    def event(self, action, **extra):
        if self.spec.events_path:
            from berth import events
            events.append(self.spec.events_path, "container", action, self.spec.container_id,
                          dict(self.spec.event_attrs, **extra))

    def _health_checker(self):
        from berth.engine import health

        command = health.probe_command(self.spec.healthcheck)
        if command is None:
            return
        old = self.reporter.state.get("Health") if hasattr(self.reporter, "state") else None
        self.health = health.Checker(
            self.spec.healthcheck, command, self.spec.runtime, self.spec.container_id,
            self.poller, self.env, self.spec.state_path + ".probe-pid", self.reporter.health,
            self._health_changed, old, OWNED)

    def _health_changed(self, status):
        self.event(f"health_status: {status}")
        action = self.spec.health_on_failure
        if status != "unhealthy" or action == "none" or not self.running:
            return
        if action == "stop":
            with open(self.spec.state_path + ".stop", "w"):
                pass
            self._runtime(["kill", self.spec.container_id, self.spec.stop_signal])
            self.kill_at = _now_ns() + self.spec.stop_timeout * 1_000_000_000
            return
        self.health_restart = action == "restart"
        self._runtime(["kill", self.spec.container_id, "SIGKILL"])

    def _timeout_ms(self):
        waits = []
        if self.health is not None:
            waits.append(self.health.timeout_ms())
        if self.kill_at is not None:
            waits.append(max(0, (self.kill_at - _now_ns()) // 1_000_000 + 1))
        waits = [w for w in waits if w is not None]
        return min(waits) if waits else None

    def _timers(self):
        if self.health is not None:
            self.health.tick()
        if self.kill_at is not None and _now_ns() >= self.kill_at:
            self.kill_at = None
            self._runtime(["kill", self.spec.container_id, "SIGKILL"])

    def _runtime(self, args, stdio=None):
        """Run the OCI runtime; (exit code, its error message)."""
        try:
            offset = os.stat(self.runtime_log).st_size
        except FileNotFoundError:
            offset = 0
        argv = [*self.spec.runtime, "--log", self.runtime_log, "--log-format", "json", *args]
        null = -1
        if stdio is None:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            stdio = (null, null, null)
        status = _warm_runtime(argv, self.env, stdio) if self.threaded else None
        if status is not None:
            if null >= 0:
                os.close(null)
            rc = os.waitstatus_to_exitcode(status)
            if rc == 0:
                return 0, ""
            return rc, self._runtime_error(offset) or f"{argv[0]} {args[0]} exited {rc}"
        try:
            pid = os.posix_spawnp(argv[0], argv, self.env, file_actions=[
                (os.POSIX_SPAWN_DUP2, stdio[0], 0), (os.POSIX_SPAWN_DUP2, stdio[1], 1),
                (os.POSIX_SPAWN_DUP2, stdio[2], 2)])
        except OSError as err:
            return 1, f"{argv[0]}: {err.strerror}"
        finally:
            if null >= 0:
                os.close(null)
        OWNED.add(pid)
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            OWNED.discard(pid)
        rc = os.waitstatus_to_exitcode(status)
        if rc == 0:
            return 0, ""
        return rc, self._runtime_error(offset) or f"{argv[0]} {args[0]} exited {rc}"

    def _runtime_error(self, offset):
        from berth.spec import jsonio

        try:
            with open(self.runtime_log, "rb") as f:
                f.seek(offset)
                lines = f.read().splitlines()
        except OSError:
            return ""
        message = ""
        for line in lines:
            try:
                rec = jsonio.loads(line)
            except Exception:  # noqa: BLE001 - text logs: keep the line
                message = line.decode(errors="replace").strip() or message
                continue
            if isinstance(rec, dict) and rec.get("level") in ("error", "fatal"):
                message = str(rec.get("msg", "")) or message
        return message

    def _cleanup(self):
        """Delete the runtime's container and unmount; errors are joined to the report."""
        problems = []
        if self.pid:
            rc, message = self._runtime(["delete", "--force", self.spec.container_id])
            if rc != 0:
                problems.append(message)
        self._reap_strays()
        if self.pidfd >= 0:
            self.poller.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1
        for fd in list(self.outputs):
            self.poller.unregister(fd)
            os.close(fd)
        self.outputs.clear()
        if self.stdin_w >= 0:
            os.close(self.stdin_w)
            self.stdin_w = -1
        self.master = -1
        problem = self._unmount()
        if problem:
            problems.append(problem)
        self.pid = 0
        self.running = False
        return "; ".join(problems)

    def _unmount(self):
        if not self.mounted:
            return ""
        from berth.snapshots import unmount

        try:
            unmount(os.path.join(self.spec.bundle, "rootfs"))
        except Exception as err:  # noqa: BLE001 - reported beside the exit
            return str(err)
        self.mounted = False
        return ""

    def _reap_strays(self):
        # Processes the container left re-parent to us (subreaper); the init itself has
        # been waited for by pid before this runs. In a zygote the process's other monitors
        # wait for their own children by pid: its reaper takes the strays (zygote.py).
        if self.threaded:
            return
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _oom_killed(self):
        from berth.spec import jsonio

        try:
            config = jsonio.load_file(os.path.join(self.spec.bundle, "config.json"))
            path = (config.get("linux") or {}).get("cgroupsPath") or ""
        except Exception:  # noqa: BLE001 - no config, no answer
            return False
        if not path or ":" in path:
            return False
        path = path.strip("/")
        for name, key in ((f"/sys/fs/cgroup/memory/{path}/memory.oom_control", b"oom_kill"),
                          (f"/sys/fs/cgroup/{path}/memory.events", b"oom_kill"),
                          (f"/sys/fs/cgroup/unified/{path}/memory.events", b"oom_kill")):
            try:
                with open(name, "rb") as f:
                    for line in f:
                        k, _, v = line.partition(b" ")
                        if k == key:
                            return int(v) > 0
            except OSError:
                continue
        return False

    # -- serving

    def _serve(self):
        """Copy output and serve clients until the init exits; then clean up and report.
        Returns (exit code, oom killed, error)."""
        while True:
            for fd, ev in self.poller.poll(self._timeout_ms()):
                if fd == self.pidfd:
                    return self._finish()
                if self.health is not None and self.health.owns(fd):
                    self.health.on_fd(fd)
                    continue
                self._event(fd, ev)
                if self.pidfd < 0 and not self.deferred:
                    return None
            self._timers()

    def _event(self, fd, ev):
        if fd in self.outputs:
            self._read_output(fd)
        else:
            self._event_idle(fd)

    def _event_idle(self, fd):
        if self.listener is not None and fd == self.listener.fileno():
            self._accept()
        elif fd in self.clients:
            self._client_input(self.clients[fd])
        elif fd == self.stdin_w:
            self._flush_stdin()

    def _read_output(self, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""  # EIO: the pty's other side is gone
        stream = self.outputs[fd]
        if not data:
            self.poller.unregister(fd)
            del self.outputs[fd]
            os.close(fd)
            if fd == self.master:
                self.master = -1
            return False
        self.writer.write(stream, data)
        self._broadcast(_STDOUT if stream == "stdout" else _STDERR, data, stream)
        return True

    def _finish(self):
        import select

        try:
            _, status = os.waitpid(self.pid, 0)
        finally:
            OWNED.discard(self.pid)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            code = 128 - code
        self.poller.unregister(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        self._early_exit_hook()
        self.kill_at = None
        if self.health is not None:
            self.health.stop()
        # The init is gone; in its pid namespace the rest die with it. Read to the end,
        # briefly: processes outside a pid namespace could hold the pipes forever.
        drain = select.poll()
        for fd in self.outputs:
            drain.register(fd, 1)
        idle = 0
        while self.outputs and idle < 3:
            got = False
            for fd, _ in drain.poll(100):
                if fd in self.outputs:
                    got = self._read_output(fd) or got
                    if fd not in self.outputs:
                        drain.unregister(fd)
            idle = 0 if got else idle + 1
        oom = self._oom_killed()
        error = self._cleanup()
        self.writer.flush_partial()
        self.last_exit = code
        self.reporter.exited(code, _rfc3339(), oom, error)
        if oom:
            self.event("oom")
        self.event("die", exitCode=code)
        for client in list(self.clients.values()):
            if client.attached:
                client.send(_frame(_EXIT, str(code).encode()))
                self._drop(client)
        return code, oom, error

    def _broadcast(self, kind, data, stream):
        for client in list(self.clients.values()):
            if client.attached and stream in client.streams:
                if not client.send(_frame(kind, data)):
                    self._drop(client)

    # -- the attach socket

    def _listen(self):
        import _socket

        path = self.spec.attach_socket
        _unlink(path)
        from berth.sys.forkserver import bind_unix

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        bind_unix(sock, path)
        os.chmod(path, 0o600)
        sock.listen(16)
        self.listener = sock
        self.poller.register(sock.fileno(), 1)

    def _close_listener(self):
        for client in list(self.clients.values()):
            if self.last_exit is not None:
                client.send(_frame(_EXIT, str(self.last_exit).encode()))
            self._drop(client)
        if self.listener is not None:
            self.poller.unregister(self.listener.fileno())
            self.listener.close()
            self.listener = None
            _unlink(self.spec.attach_socket)

    def _accept(self):
        import _socket

        try:
            fd, _ = self.listener._accept()
        except OSError:
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        sock.settimeout(5.0)
        try:
            head = b""
            while b"\n" not in head and len(head) < 1024:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
        except OSError:
            sock.close()
            return
        line, _, rest = head.partition(b"\n")
        words = line.decode(errors="replace").split()
        client = _Client(sock, words)
        if not words:
            sock.close()
        elif words[0] == "resize":
            self._resize(words[1:])
            sock.close()
        elif words[0] == "start":
            self._start_request(client)
            sock.close()
        elif words[0] == "attach":
            if self.pidfd < 0 and not self.deferred:
                client.send(_frame(_EXIT, str(self.last_exit or 0).encode()))
                sock.close()
                return
            self.clients[sock.fileno()] = client
            self.poller.register(sock.fileno(), 1)
            if "start" in words and not self._start_request(client):
                self._drop(client)
                return
            for word in words:
                if word.startswith("size="):
                    self._resize(word[5:].split("x"))
            # Input sent with the request line: only once started is there a stdin pipe.
            if rest and "stdin" in words:
                self._to_stdin(rest)
        else:
            client.send(_frame(_ERROR, f"unknown request {words[0]!r}".encode()))
            sock.close()

    def _start_request(self, client):
        if self.running:
            client.send(_frame(_STARTED, str(self.pid).encode()))
            return True
        if self.pidfd < 0 and not self.deferred:
            client.send(_frame(_ERROR, b"the container is not created"))
            return False
        try:
            if self.deferred:
                self.deferred = False
                self._create(run=True)
            else:
                self._start()
        except _Failed as err:
            client.send(_frame(_ERROR, str(err).encode()))
            self.reporter.exited(_failure_code(str(err)), _rfc3339(), False, str(err))
            return False
        client.send(_frame(_STARTED, str(self.pid).encode()))
        return True

    def _resize(self, args):
        if self.master < 0 or len(args) != 2:
            return
        import fcntl

        from berth.sys import consts as C
        try:
            rows, cols = int(args[0]), int(args[1])
        except ValueError:
            return
        size = rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4)
        try:
            fcntl.ioctl(self.master, C.TIOCSWINSZ, size)
        except OSError:
            pass

    def _client_input(self, client):
        try:
            data = client.sock.recv(65536)
        except OSError:
            data = b""
        if data:
            if "stdin" in client.words:
                self._to_stdin(data)
            return
        self.poller.unregister(client.sock.fileno())
        client.reading = False
        if "close-stdin" in client.words and self.stdin_w >= 0:
            self._close_stdin_when_flushed = True
            if not self._pending_stdin:
                self._close_stdin()

    _pending_stdin = b""
    _close_stdin_when_flushed = False

    def _to_stdin(self, data):
        fd = self.stdin_w if self.stdin_w >= 0 else self.master
        if fd < 0:
            return
        if self._pending_stdin:
            self._pending_stdin += data
            return
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError:
            return
        if n < len(data):
            self._pending_stdin = data[n:]
            if fd == self.stdin_w:
                self.poller.register(fd, 4)  # POLLOUT

    def _flush_stdin(self):
        try:
            n = os.write(self.stdin_w, self._pending_stdin)
        except BlockingIOError:
            return
        except OSError:
            n = len(self._pending_stdin)
        self._pending_stdin = self._pending_stdin[n:]
        if not self._pending_stdin:
            self.poller.unregister(self.stdin_w)
            if self._close_stdin_when_flushed:
                self._close_stdin()

    def _close_stdin(self):
        if self.stdin_w >= 0:
            os.close(self.stdin_w)
            self.stdin_w = -1
        self._close_stdin_when_flushed = False
        self._pending_stdin = b""

    def _drop(self, client):
        fd = client.sock.fileno()
        if self.clients.pop(fd, None) is not None and client.reading:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
        client.sock.close()

    # -- the console socket

    def _console_listener(self):
        import _socket

        path = os.path.join(os.path.dirname(self.spec.attach_socket),
                            f"console-{os.getpid()}.sock")
        if len(path.encode()) >= 100:
            # The runtime connects to this path itself: keep it short, in a private dir.
            import tempfile
            path = os.path.join(tempfile.mkdtemp(prefix="berth-console-", dir="/run"),
                                "console.sock")
        _unlink(path)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1)
        return sock, path

    def _receive_master(self, listener):
        import _socket

        listener.settimeout(10.0)
        fd, _ = listener._accept()
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        try:
            conn.settimeout(10.0)
            _, ancdata, _, _ = conn.recvmsg(1024, _socket.CMSG_SPACE(4))
        finally:
            conn.close()
        for level, kind, data in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
                master = int.from_bytes(data[:4], "little")
                os.set_inheritable(master, False)
                return master
        raise _Failed("the runtime sent no terminal on the console socket")


class _Client:
    def __init__(self, sock, words):
        self.sock = sock
        self.words = words
        self.attached = bool(words) and words[0] == "attach"
        self.streams = {w for w in words if w in ("stdout", "stderr")}
        self.reading = self.attached

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False


def _failure_code(message):
    # What Docker records when the process could not be run at all.
    if "not found" in message or "no such file" in message.lower():
        return 127
    if "permission denied" in message.lower():
        return 126
    return 128


def _discard_pending(fd):
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _now_ns():
    import time
    return time.monotonic_ns()


def _rfc3339():
    from berth.engine.logs import now
    return now()
