"""`create`: turn a bundle into a created container whose init waits for `start`.

The runtime side of the handshake in init.py: reserve the id, parse and check the config,
prepare what may fail early (seccomp filter, cgroup limits), fork, write the id maps, run the
prestart and createRuntime hooks when the init asks, and record the state once it is ready.
Anything that fails undoes everything: no process, cgroup, fifo or state directory remains.
"""

from berth.sys import fastos as os

from berth.errors import BerthError, InvalidArgument
from berth.runtime import _sync
from berth.runtime.state import FIFO, Container, now_rfc3339, proc_stat, write_atomic
from berth.spec import jsonio
from berth.spec.runtime import Spec
from berth.sys import consts as C
from berth.sys import linux


class Created:
    """What `create` leaves for its caller: the container, its init pid, maybe a pty."""

    def __init__(self, container, pid, manager, spec, master_fd=-1):
        self.container = container
        self.spec = spec
        self.pid = pid
        self.manager = manager
        self.master_fd = master_fd


def load_bundle(bundle, container_id=None):
    """(spec, config dict, rootfs path) of a bundle, validated."""
    from berth.spec.validate import validate

    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"bundle {bundle}: config.json not found") from None
    except OSError as err:
        raise InvalidArgument(f"bundle {bundle}: cannot read config.json: "
                              f"{err.strerror}") from None
    config = jsonio.loads(raw, "config.json")
    spec = Spec.from_json(config)
    validate(spec, bundle, container_id)
    rootfs = os.path.realpath(os.path.join(bundle, spec.root.path))
    return spec, config, rootfs


def create(root, container_id, bundle, *, pid_file=None, console_socket=None, no_pivot=False,
           no_new_keyring=False, preserve_fds=0, systemd_cgroup=False, foreground=False,
           start_now=False):
    """Create a container; with ``start_now`` (what `run` does) its process execs as soon as
    it is ready, with no exec fifo and no round trip through `start`."""
    bundle = os.path.abspath(bundle or os.getcwd())
    spec, raw, rootfs = load_bundle(bundle, container_id)
    if spec.process.terminal and not console_socket and not foreground:
        raise InvalidArgument("cannot allocate tty if berth-oci will detach without setting "
                              "console socket")
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError:
            raise InvalidArgument(f"--preserve-fds {preserve_fds}: fd {fd} is not open") from None
    container = Container.reserve(root, container_id)
    manager = None
    pid = 0
    fds = []
    try:
        fifo_fd = -1 if start_now else _make_fifo(container, spec)
        if fifo_fd >= 0:
            fds.append(fifo_fd)
        console_fd = -1
        local_console = -1
        if spec.process.terminal:
            from berth.runtime import console
            if console_socket:
                console_fd = console.connect(console_socket)
            else:
                local_console, console_fd = console.socketpair()
                fds.append(local_console)
            fds.append(console_fd)
        parent, child = _sync.Channel.pair()
        fds.extend((parent.rfd, parent.wfd, child.rfd, child.wfd))
        from berth.runtime import init
        cfg = init.InitConfig(spec, bundle, rootfs, container.dir, child, fifo_fd,
                              preserve_fds=preserve_fds, console_fd=console_fd,
                              no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                              state_json=b"",
                              detach=not foreground)
        two_step = init.needs_intermediate(spec)
        if foreground and two_step:
            linux.prctl(C.PR_SET_CHILD_SUBREAPER, 1)
        restore = (lambda: None) if two_step else init.set_child_namespaces(spec)
        first = -1
        # Fork first: the init's namespace and mount work then runs beside ours below.
        try:
            first = os.fork()
            if first == 0:
                parent.close()
                if two_step:
                    init.intermediate(cfg)
                init.direct_init(cfg)
        finally:
            if first != 0:
                restore()  # only here: the child never returns from the calls above
        child.close()
        for fd in (child.rfd, child.wfd):
            fds.remove(fd)  # closed: their numbers may be reused, e.g. by a received pty
        if not two_step:
            pid = first
        # From the cache, or compiled beside the init's work.
        seccomp = _SeccompJob(root, (raw.get("linux") or {}).get("seccomp"),
                              spec.linux.seccomp)
        try:
            manager = _cgroup(spec, container_id, systemd_cgroup)
            container.state = {
                "ociVersion": spec.oci_version, "id": container_id, "status": "creating",
                "pid": 0, "bundle": bundle, "rootfs": rootfs, "created": now_rfc3339(),
                "owner": "", "annotations": spec.annotations,
                "cgroupPath": manager.path, "systemdCgroup": systemd_cgroup,
                "cgroup": manager.describe(),
                "config": raw,
            }
            manager.create()
            manager.set(effective_resources(spec))
            if two_step:
                msg = parent.recv()
                if msg == "userns":
                    _write_id_maps(first, spec)
                    parent.send("mapped")
                    msg = parent.recv()
                if msg is None:
                    raise _child_died(first)
                if msg.startswith("error "):
                    _sync.raise_remote(msg)
                pid = int(msg.split()[1])
        except BaseException:
            _kill(first)
            raise
        finally:
            if two_step:
                os.waitpid(first, 0)
        manager.apply(pid)
        parent.send("cgroup-ready " + jsonio.dumps(manager.container_mounts()))
        st = proc_stat(pid)
        container.state["pid"] = pid
        container.state["startTime"] = st[1] if st else 0
        # The one record, written while the init builds its rootfs. It says
        # "created" at once: the fifo makes a `start` that comes early wait until the init
        # is ready, and if the init fails this create removes everything anyway.
        container.state["status"] = "created"
        container.save()
        if init.has_hooks(spec):
            _hooks_round_trip(parent, container, spec, seccomp)
        if spec.linux.seccomp is not None:
            parent.send("seccomp " + seccomp.result().to_text())
        parent.expect("ready")
        if start_now:
            parent.await_exec()
        master = finish_launch(pid, pid_file, local_console)
        container.unlock()
        return Created(container, pid, manager, spec, master)
    except BaseException as err:
        cleanup = _undo(container, pid, manager)
        if isinstance(err, BerthError):
            err.cleanup_errors.extend(cleanup)
        raise
    finally:
        close_quietly(fds)


def close_quietly(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# Devices every container may use whatever its config says, as runc allows them: mknod of
# anything (the node is useless without rw), the standard /dev nodes, ptys and tun.
_ALWAYS_ALLOWED = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)


def effective_resources(spec):
    """The config's resources plus the device rules every container gets."""
    from berth.spec.runtime import DeviceRule, Resources

    res = spec.linux.resources or Resources()
    if not res.devices:
        return res  # no device policy asked for: leave the device cgroup open
    extra = [DeviceRule(allow=True, type=t, major=ma, minor=mi, access=acc)
             for t, ma, mi, acc in _ALWAYS_ALLOWED]
    extra += [DeviceRule(allow=True, type=d.type if d.type != "u" else "c", major=d.major,
                         minor=d.minor, access="rwm")
              for d in spec.linux.devices if d.type in ("c", "b", "u")]
    return res.replace(devices=tuple(res.devices) + tuple(extra))


def _cgroup(spec, container_id, systemd):
    from berth.cgroups import manager_for

    return manager_for(spec.linux.cgroups_path, container_id, systemd=systemd)


def _hooks_round_trip(parent, container, spec, seccomp):
    """When the init asks: run the prestart and createRuntime hooks here, then hand it the
    state its own hooks read."""
    parent.expect("hooks")
    hook_state = container.oci_state()
    hook_state["status"] = "creating"
    state_json = jsonio.dumps(hook_state).encode()
    if spec.hooks.prestart or spec.hooks.create_runtime:
        seccomp.result()  # no fork (for a hook) while the compiling thread runs
        from berth.runtime import hooks
        hooks.run(spec.hooks.prestart, state_json, "prestart")
        hooks.run(spec.hooks.create_runtime, state_json, "createRuntime")
    parent.send("hooks-done " + state_json.decode())


class _SeccompJob:
    """The config's seccomp program: from the runtime's cache (``filtercache``) when this
    profile was compiled before, else compiled on a thread while the runtime writes cgroups
    and the init builds its rootfs (libseccomp releases the GIL, and Docker's profile takes
    it 10-20 ms), then kept. (The init is forked already; the runtime forks nothing while the
    thread runs, and joins it before the hooks could.)"""

    def __init__(self, root, raw, seccomp):
        self.program = self.error = None
        self.done = None
        if seccomp is None:
            return
        from berth.runtime import filtercache

        key = filtercache.cache_key(raw)
        self.program = filtercache.load(root, key)
        if self.program is not None:
            return
        import _thread

        self.done = _thread.allocate_lock()
        self.done.acquire()
        _thread.start_new_thread(self._run, (root, key, seccomp))

    def _run(self, root, key, seccomp):
        try:
            from berth.runtime import filtercache
            from berth.runtime.seccomp import compile_program
            self.program = compile_program(seccomp)
            filtercache.store(root, key, self.program)
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
            self.error = err
        finally:
            self.done.release()

    def result(self):
        if self.done is not None:
            self.done.acquire()
            self.done.release()
        if self.error is not None:
            raise self.error
        return self.program


def _make_fifo(container, spec):
    """exec.fifo, which the init opens (blocking) to wait for `start`; an O_PATH fd on it."""
    path = container.path(FIFO)
    os.mkfifo(path, 0o600)
    # The init opens the fifo as the container's user, which may not be root (or root of a
    # user namespace mapped elsewhere): let it write, and nobody else read.
    os.chmod(path, 0o622)
    root_uid, root_gid = _host_ids_of_root(spec)
    if (root_uid, root_gid) != (0, 0):
        os.chown(path, root_uid, root_gid)
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def _host_ids_of_root(spec):
    """The host uid and gid that the container's root maps to (0, 0 without a user ns)."""
    out = []
    for maps in (spec.linux.uid_mappings, spec.linux.gid_mappings):
        host = 0
        for m in maps:
            if m.container_id <= 0 < m.container_id + m.size:
                host = m.host_id - m.container_id
        out.append(host)
    return out[0], out[1]


def _write_id_maps(pid, spec):
    lx = spec.linux
    for name, maps in (("uid_map", lx.uid_mappings), ("gid_map", lx.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as err:
            raise InvalidArgument(f"linux.{name.replace('_map', 'Mappings').replace('uid', 'uid')}"
                                  f": cannot write {name}: {err.strerror}") from None


def _child_died(pid):
    from berth.errors import SystemFailure

    return SystemFailure(f"container init (pid {pid}) exited during setup")


def finish_launch(pid, pid_file, local_console):
    """The steps create and exec end with: the pid file, and the pty master when the
    runtime itself relays the terminal. Returns the master fd (-1 without one)."""
    if pid_file:
        write_atomic(os.path.abspath(pid_file), str(pid).encode(), 0o644)
    if local_console < 0:
        return -1
    from berth.runtime import console
    return console.recv_fd(local_console)[0]


def _kill(pid):
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def _undo(container, pid, manager):
    """Remove everything a failed create made; returns the errors met on the way."""
    errors = []
    if pid > 0:
        _kill(pid)
        try:
            os.waitpid(pid, 0)  # ours only when run in the foreground (subreaper)
        except ChildProcessError:
            pass
    if manager is not None:
        try:
            manager.kill_all(9)
            manager.destroy()
        except Exception as err:  # noqa: BLE001 - kept beside the original error
            errors.append(err)
    try:
        container.remove_dir()
    except OSError as err:
        errors.append(err)
    return errors
