"""What the `berth` launcher runs: the command in a child of a warm fork server, or here.

The command's imports (the CLI, the engine, SQLite, the network code: ~15 ms of every call)
are paid once by a fork server (``berth.sys.forkserver``) that this launcher starts on
first use. Every later call connects to it, sends its arguments, environment, working
directory and standard streams, and waits for the child running the command; signals and
the exit status pass through, so a caller sees one process. Without a server (the first
call, or after a change to berth's code made the server stale) the command runs in this
process, as it always could, and a new server is started in the background for the next
call. ``BERTH_WARM=0`` runs every call here.

The server is one per source tree (its socket's name holds a checksum of the path, written
into the launcher at install time), not per ``--root``: the root is one of a call's
arguments. It lives under /run/berth (root only), exits after ``IDLE_S`` idle, and knows
nothing between calls: each child opens the databases a command needs, as a fresh process
would.
"""

import sys

IDLE_S = 600
# Commands that must own the caller's terminal: `login` prompts through /dev/tty.
_LOCAL = ("login",)
_BOOT = ("import sys;sys.path[:0]={path!r};"
         "from berth.cli.launch import _serve;_serve({sock!r},{key!r},{ready})")


def launch(sock, key):
    """The launcher's whole body."""
    import posix

    argv = sys.argv
    if posix.environ.get(b"BERTH_WARM") != b"0" and not _local(argv[1:]):
        from berth.sys import forkserver

        status = forkserver.call(sock, argv, key)
        if status is not None and status >= 0:
            posix._exit(forkserver.exit_like(status))
        _start_server(sock, key)
    from berth.cli.main import entry

    entry()


def _local(args):
    """Whether the command (the first word after the global flags) must run here."""
    args = iter(args)
    for arg in args:
        if arg == "--root":
            next(args, None)  # its value
        elif not arg.startswith("-"):
            return arg in _LOCAL
    return False


def _start_server(sock, key):
    """Start a server in the background (it detaches itself); never fails the command."""
    import os

    from berth.sys import spawn

    try:
        os.makedirs(os.path.dirname(sock), mode=0o700, exist_ok=True)
        argv = [sys.executable or spawn.PYTHON, "-IS", "-c",
                _BOOT.format(path=[p for p in sys.path if p], sock=sock, key=key, ready=-1)]
        pid = spawn.spawn_detached(argv, {"PATH": spawn.PATH})
        os.waitpid(pid, 0)  # it forks at once and leaves; only that first exit is waited
    except OSError:
        pass


def _serve(sock, key, ready_fd):
    """The server's process: detach, import what commands run, serve until idle."""
    import fcntl
    import os

    lock = os.open(sock + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os._exit(0)  # another one is starting or serving
    if os.fork():
        os._exit(0)  # the starter waits only for this; the server is nobody's child
    os.chdir("/")
    preload()
    from berth.cli.main import served
    from berth.sys import forkserver

    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    forkserver.serve(sock, key, served, ready_fd, idle_s=IDLE_S,
                     watch_prefix=src + os.sep, private_fds=(lock,))
    os._exit(0)


# Everything a command may import, loaded once in the server (a module missing here is
# imported by the child that needs it, at the cost a fresh process would pay).
PRELOAD = (
    "berth.cli.main", "berth.cli.containers", "berth.cli.images", "berth.cli.network",
    "berth.cli.volumes", "berth.cli.files", "berth.cli.events", "berth.cli.output",
    "berth.cli.args", "berth.cli.progress", "berth.flags", "berth.units", "berth.events",
    "berth.engine.containers", "berth.engine.spec", "berth.engine.runopts",
    "berth.engine.networks", "berth.engine.volumes", "berth.engine.monitor",
    "berth.engine.zygote", "berth.engine.reconcile", "berth.engine.names",
    "berth.engine.store", "berth.engine.logs", "berth.engine.health",
    "berth.engine.seccomp_default", "berth.engine.fstree", "berth.engine.usage",
    "berth.images.service", "berth.snapshots", "berth.snapshots.overlay",
    "berth.content.digest", "_sha256", "_sha512", "berth.spec.jsonio",
    "berth.network.netns", "berth.network.bridge", "berth.network.dns",
    "berth.network.ipam", "berth.network.netlink", "berth.network.driver",
    "berth.network.firewall",
    "berth.sys.linux", "berth.sys.spawn", "berth.sys.tree",
    "_sqlite3", "ctypes", "ipaddress", "_socket", "select", "termios", "fcntl",
)


def preload():
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that cannot load here loads in the child
            pass
