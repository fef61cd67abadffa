"""The container's first process, from fork to execve.

The runtime (``create``) forks once; that intermediate child joins or creates the
namespaces and forks again, so the second child is pid 1 of a new pid namespace. The
intermediate reports that pid and exits. The init then builds the filesystem, pivots into
it, becomes the configured user and blocks opening the exec fifo until ``start`` opens the
other end; then it runs the startContainer hooks and execs the user's program.

The interpreter that runs this code is the host's: the process is made non-dumpable at once
so nothing in the container can open /proc/<pid>/exe or /proc/<pid>/mem of it (the
CVE-2019-5736 class); berth's launcher also runs the interpreter from a read-only mount.
"""

import fcntl
from berth.sys import fastos as os

from berth.runtime import process as proc
from berth.runtime.rootfs import Rootfs
from berth.sys import consts as C
from berth.sys import linux


class InitConfig:
    """Everything the init needs, prepared by the parent before fork (plain data)."""

    def __init__(self, spec, bundle, rootfs, state_dir, channel, fifo_fd, *,
                 preserve_fds=0, console_fd=-1, no_pivot=False, no_new_keyring=False,
                 seccomp_filter=None, state_json=b"", detach=True,
                 terminal_slave_fd=-1):
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.state_dir = state_dir
        self.channel = channel
        self.fifo_fd = fifo_fd
        self.preserve_fds = preserve_fds
        self.console_fd = console_fd
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.seccomp_filter = seccomp_filter
        self.state_json = state_json
        self.detach = detach
        self.terminal_slave_fd = terminal_slave_fd


# Namespaces that only take effect in children: the process that unshares or joins them
# must fork afterwards for them to apply.
_FOR_CHILDREN = ("pid", "time")


def needs_intermediate(spec):
    """A new user namespace must own the pid namespace (or the init could not mount its
    /proc), so it is made first by an intermediate process that forks the init. Otherwise
    the runtime sets the pid namespace for its children itself and forks the init directly,
    saving a fork."""
    ns = spec.linux.namespace("user")
    return ns is not None and not ns.path


def set_child_namespaces(spec):
    """In the runtime, before forking the init directly: the pid and time namespaces its
    children get. Returns a function that restores the runtime's own."""
    saved = []
    try:
        for kind in _FOR_CHILDREN:
            ns = spec.linux.namespace(kind)
            if ns is None:
                continue
            flag, name = C.NAMESPACES[kind]
            saved.append((os.open(f"/proc/self/ns/{name}_for_children",
                                  os.O_RDONLY | os.O_CLOEXEC), flag))
            if ns.path:
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    linux.setns(fd, flag, ns.path)
                finally:
                    os.close(fd)
            else:
                linux.unshare(flag)
                if kind == "time":
                    _write_time_offsets(spec.linux.time_offsets)
    except BaseException:
        _restore(saved)
        raise
    return lambda: _restore(saved)


def _restore(saved):
    for fd, flag in saved:
        try:
            linux.setns(fd, flag, "runtime namespace")
        finally:
            os.close(fd)


def _write_time_offsets(offsets):
    if offsets:
        with open("/proc/self/timens_offsets", "w") as f:
            for clock, (secs, nanos) in offsets.items():
                f.write(f"{clock} {secs} {nanos}\n")


def _enter_namespaces(cfg, skip):
    """Join the namespaces given by path and create the new ones, except those in ``skip``
    (the cgroup namespace always waits: see container_init). Returns whether the process
    ends up in a user namespace."""
    ch = cfg.channel
    lx = cfg.spec.linux
    joined = [ns for ns in lx.namespaces if ns.path and ns.type not in skip]
    new = [ns for ns in lx.namespaces if not ns.path and ns.type not in skip]
    # Join by path, the user namespace first so the others are entered with its rights.
    joined.sort(key=lambda ns: ns.type != "user")
    for ns in joined:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, C.NAMESPACES[ns.type][0], ns.path)
        finally:
            os.close(fd)
    flags = 0
    for ns in new:
        flags |= C.NAMESPACES[ns.type][0]
    if flags & C.CLONE_NEWUSER:
        linux.unshare(C.CLONE_NEWUSER)
        ch.send("userns")
        ch.expect("mapped", "runtime")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    # The cgroup namespace is unshared by the init itself, once the runtime has moved it
    # into its cgroup: that move costs a kernel grace period (~10 ms on cgroup v1), so it
    # runs while the init builds the rootfs instead of before.
    rest = flags & ~(C.CLONE_NEWUSER | C.CLONE_NEWCGROUP)
    if rest:
        linux.unshare(rest)
    if rest & C.CLONE_NEWTIME:
        _write_time_offsets(lx.time_offsets)
    return lx.namespace("user") is not None


def has_hooks(spec):
    """Whether creating needs the hooks round trip between the init and the runtime."""
    h = spec.hooks
    return bool(h.prestart or h.create_runtime or h.create_container or h.start_container)


def intermediate(cfg):
    """The first child when a user namespace is new: namespaces, then fork the init."""
    ch = cfg.channel
    try:
        linux.prctl(C.PR_SET_DUMPABLE, 0)
        in_userns = _enter_namespaces(cfg, ())
        pid = os.fork()
        if pid == 0:
            container_init(cfg, in_userns)
        ch.send(f"pid {pid}")
        os._exit(0)
    except BaseException as err:  # noqa: BLE001 - a child reports, it never unwinds
        ch.fail(err)
        os._exit(1)


def direct_init(cfg):
    """The init forked by the runtime itself (see needs_intermediate). Never returns."""
    try:
        linux.prctl(C.PR_SET_DUMPABLE, 0)
        in_userns = _enter_namespaces(cfg, _FOR_CHILDREN)
    except BaseException as err:  # noqa: BLE001
        cfg.channel.fail(err)
        os._exit(1)
    container_init(cfg, in_userns)


def container_init(cfg, in_userns):
    """pid 1 of the container. Never returns."""
    ch = cfg.channel
    spec = cfg.spec
    try:
        # Everything the init will use is imported before pivot_root (most of it with this
        # module, in the runtime before the fork): after it the host's Python library is out
        # of reach.
        if spec.linux.seccomp is not None:
            import berth.runtime.filter  # noqa: F401
        hooks = None
        if spec.hooks.create_container or spec.hooks.start_container:
            from berth.runtime import hooks
        if os.getenv("BERTH_OCI_DEBUG"):
            import traceback  # noqa: F401

        keep = {ch.rfd, ch.wfd, cfg.fifo_fd, cfg.console_fd, cfg.terminal_slave_fd}
        keep.update(range(3, 3 + cfg.preserve_fds))
        keep.discard(-1)
        proc.close_fds_except(keep)
        os.setsid()
        if not cfg.no_new_keyring:
            try:
                linux.join_session_keyring(None)
            except OSError:
                pass  # keyrings may be unavailable (old kernels, some sandboxes)
        lx = spec.linux
        own_mount_ns = lx.namespace("mount") is not None and not lx.namespace("mount").path
        waited = []

        def cgroup_ready():
            # The runtime creates the container's cgroups while this process starts; their
            # directories exist, and this process is inside them, once it says so. The
            # message carries what the cgroup mounts bind (host dir, name below the mount).
            if not waited:
                from berth.spec import jsonio
                waited.append(jsonio.loads(ch.expect("cgroup-ready", "runtime")))
                cgroup_ns = lx.namespace("cgroup")
                if cgroup_ns is not None and not cgroup_ns.path:
                    linux.unshare(C.CLONE_NEWCGROUP)
            return waited[0]

        rootfs = Rootfs(spec, cfg.bundle, cfg.rootfs, cgroup_ready=cgroup_ready)
        if own_mount_ns:
            rootfs.prepare()
            rootfs.mount_all(in_userns)
        cgroup_ready()
        slave = -1
        if spec.process.terminal:
            slave = _open_terminal(cfg, rootfs if own_mount_ns else None)
        if has_hooks(spec):
            ch.send("hooks")
            # The runtime answers with the container's state, which the hooks run here read.
            cfg.state_json = ch.expect("hooks-done", "runtime").encode()
        if spec.hooks.create_container:
            hooks.run(spec.hooks.create_container, cfg.state_json, "createContainer")
        if own_mount_ns:
            rootfs.pivot(cfg.no_pivot)
        # sysctls go in through the container's /proc, before readonlyPaths closes /proc/sys.
        for key, value in lx.sysctl.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        if own_mount_ns:
            rootfs.finish()
        if spec.hostname and lx.namespace("uts") is not None:
            linux.sethostname(spec.hostname)
        if spec.domainname and lx.namespace("uts") is not None:
            linux.setdomainname(spec.domainname)
        if lx.personality:
            linux.personality(0x0008 if lx.personality.get("domain") == "LINUX32" else 0)
        process = spec.process
        if slave >= 0:
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            fcntl.ioctl(0, C.TIOCSCTTY, 0)
            if slave > 2:
                os.close(slave)
        seccomp = cfg.seccomp_filter
        if lx.seccomp is not None:
            from berth.runtime.filter import Program
            seccomp = Program.from_text(ch.expect("seccomp", "runtime"))
        pending = proc.prepare(process, seccomp_filter=seccomp)
        proc.enter_cwd(process.cwd)
        executable = proc.find_executable(process.args[0], process.env)
        ch.send("ready")
        if cfg.fifo_fd < 0:
            # `run`: no `start` to wait for; a failing hook is reported on the channel.
            if spec.hooks.start_container:
                hooks.run(spec.hooks.start_container, cfg.state_json, "startContainer")
        else:
            _await_start(cfg, hooks)
            ch.close()  # `create` has returned: nobody reads it now
        # With `run` the channel stays open (close-on-exec): the runtime reads EOF once the
        # execve succeeded, or why it failed (exec format error, ...).
        proc.execute(process, executable, pending)
    except BaseException as err:  # noqa: BLE001
        ch.fail(err)
        os._exit(1)


def _await_start(cfg, hooks):
    """Block until `start` opens the fifo, run the startContainer hooks, and answer it:
    "0" the process is about to exec, or "1" and why not."""
    # Opening the fifo for writing blocks until it is opened to read.
    fd = os.open(f"/proc/self/fd/{cfg.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.close(cfg.fifo_fd)
    try:
        if cfg.spec.hooks.start_container:
            hooks.run(cfg.spec.hooks.start_container, cfg.state_json, "startContainer")
    except BaseException as err:  # noqa: BLE001
        os.write(fd, b"1" + str(err).encode(errors="replace")[:4000])
        raise
    os.write(fd, b"0")
    os.close(fd)


def _open_terminal(cfg, rootfs):
    """A new pty from the container's devpts; the master goes out on the console socket.

    The pty is opened as the container will see it (through the rootfs fd, never a host path
    an image's /dev symlink could point at), and the slave comes from the master itself
    (TIOCGPTPEER), so no path is looked up twice.
    """
    import struct

    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    master = -1
    for path in ("/dev/pts/ptmx", "/dev/ptmx"):
        try:
            master = rootfs.open_in_root(path, flags) if rootfs is not None else os.open(path,
                                                                                       flags)
            break
        except FileNotFoundError:
            continue
    if master < 0:
        from berth.errors import NotFound
        raise NotFound("process.terminal: the container has no /dev/pts/ptmx or /dev/ptmx")
    fcntl.ioctl(master, C.TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("i", fcntl.ioctl(master, C.TIOCGPTN, struct.pack("i", 0)))[0]
    slave = fcntl.ioctl(master, C.TIOCGPTPEER, flags)
    size = cfg.spec.process.console_size
    if size is not None:
        fcntl.ioctl(slave, C.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))
    if rootfs is not None:
        rootfs.bind_console(f"/proc/self/fd/{slave}")
    from berth.runtime.console import send_fd
    send_fd(cfg.console_fd, master, f"/dev/pts/{number}")
    os.close(master)
    if cfg.console_fd >= 0:
        os.close(cfg.console_fd)
    return slave
