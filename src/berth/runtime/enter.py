"""Running another process inside an existing container (the work behind `exec`).

The runtime forks; the child joins the init's namespaces by /proc/<pid>/ns (user first) and
forks again, so the grandchild is inside the pid namespace too. The runtime moves it into
the container's cgroup, then lets it become the configured user and exec. Everything the
grandchild imports is imported before it enters the container's mount namespace: from
there the host's Python library is out of reach.
"""

from berth.sys import fastos as os

from berth.errors import Conflict
from berth.runtime import _sync
from berth.runtime.create import close_quietly
from berth.runtime.create import finish_launch
from berth.runtime import process as proc
from berth.sys import consts as C
from berth.sys import linux

# The order namespaces are joined in: user first (it grants the rights to join the others),
# mount last among those that change the view of paths.
_JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "time", "pid", "mnt")


class Entered:
    def __init__(self, pid, master_fd=-1):
        self.pid = pid
        self.master_fd = master_fd


def enter(container, process, *, manager, seccomp_filter=None, console_socket=None,
          foreground=True, preserve_fds=0, pid_file=None):
    init_pid = container.pid
    namespaces = _namespaces_to_join(init_pid)
    fds = []
    console_fd = local_console = -1
    if process.terminal:
        from berth.runtime import console
        if console_socket:
            console_fd = console.connect(console_socket)
        elif foreground:
            local_console, console_fd = console.socketpair()
            fds.append(local_console)
        else:
            from berth.errors import InvalidArgument
            raise InvalidArgument("cannot allocate tty if berth-oci will detach without "
                                  "setting console socket")
        fds.append(console_fd)
    parent, child = _sync.Channel.pair()
    fds.extend((parent.rfd, parent.wfd))
    if foreground:
        linux.prctl(C.PR_SET_CHILD_SUBREAPER, 1)
    first = os.fork()
    if first == 0:
        parent.close()
        _intermediate(child, namespaces, process, seccomp_filter, console_fd, preserve_fds)
    child.close()
    pid = 0
    try:
        try:
            msg = parent.recv()
            if msg is None:
                raise Conflict(f"cannot exec in container {container.id}: setup failed")
            if msg.startswith("error "):
                _sync.raise_remote(msg)
            pid = int(msg.split()[1])
        finally:
            os.waitpid(first, 0)
        manager.apply(pid)
        parent.send("go")
        parent.expect("ready", "exec process")
        parent.await_exec()
        return Entered(pid, finish_launch(pid, pid_file, local_console))
    except BaseException:
        if pid > 0:
            try:
                os.kill(pid, 9)
                if foreground:
                    os.waitpid(pid, 0)
            except OSError:
                pass
        raise
    finally:
        close_quietly(fds)


def _namespaces_to_join(init_pid):
    """(name, fd) of the init's namespaces that differ from ours, opened now."""
    out = []
    try:
        for name in _JOIN_ORDER:
            path = f"/proc/{init_pid}/ns/{name}"
            try:
                theirs = os.stat(path)
            except FileNotFoundError:
                continue
            ours = os.stat(f"/proc/self/ns/{name}")
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                continue
            out.append((name, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    except OSError as err:
        for _, fd in out:
            os.close(fd)
        raise Conflict(f"cannot join the namespaces of pid {init_pid}: {err.strerror}") from None
    return out


_FLAG_OF = {"user": C.CLONE_NEWUSER, "cgroup": C.CLONE_NEWCGROUP, "ipc": C.CLONE_NEWIPC,
            "uts": C.CLONE_NEWUTS, "net": C.CLONE_NEWNET, "time": C.CLONE_NEWTIME,
            "pid": C.CLONE_NEWPID, "mnt": C.CLONE_NEWNS}


def _intermediate(ch, namespaces, process, seccomp_filter, console_fd, preserve_fds):
    try:
        linux.prctl(C.PR_SET_DUMPABLE, 0)
        for name, fd in namespaces:
            linux.setns(fd, _FLAG_OF[name], f"/proc/<init>/ns/{name}")
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            _process(ch, process, seccomp_filter, console_fd, preserve_fds)
        ch.send(f"pid {pid}")
        os._exit(0)
    except BaseException as err:  # noqa: BLE001 - a child reports, it never unwinds
        ch.fail(err)
        os._exit(1)


def _process(ch, process, seccomp_filter, console_fd, preserve_fds):
    try:
        keep = {ch.rfd, ch.wfd, console_fd}
        keep.update(range(3, 3 + preserve_fds))
        keep.discard(-1)
        proc.close_fds_except(keep)
        ch.expect("go", "runtime")
        if process.terminal:
            os.setsid()
            slave = _open_pty(console_fd)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            import fcntl
            fcntl.ioctl(0, C.TIOCSCTTY, 0)
            if slave > 2:
                os.close(slave)
        pending = proc.prepare(process, seccomp_filter=seccomp_filter)
        proc.enter_cwd(process.cwd)
        executable = proc.find_executable(process.args[0], process.env)
        ch.send("ready")
        proc.execute(process, executable, pending)
    except BaseException as err:  # noqa: BLE001
        ch.fail(err)
        os._exit(127 if isinstance(err, FileNotFoundError) else 1)


def _open_pty(console_fd):
    import fcntl
    import struct

    from berth.runtime.console import send_fd

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, C.TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("i", fcntl.ioctl(master, C.TIOCGPTN, struct.pack("i", 0)))[0]
    path = f"/dev/pts/{number}"
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    send_fd(console_fd, master, path)
    os.close(master)
    os.close(console_fd)
    return slave
