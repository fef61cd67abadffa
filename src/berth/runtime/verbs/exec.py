"""`berth-oci exec [flags] ID [COMMAND [ARG...]]`: run a process in a running container.

Without --process, the new process starts from the container's own (env, cwd, user,
capabilities, rlimits, no_new_privs) with the flags' changes on top, as runc does.
"""

from berth.sys import fastos as os

from berth.errors import InvalidArgument
from berth.runtime import _args
from berth.runtime.main import need_id

USAGE = """usage: berth-oci exec [--process FILE] [--tty] [--detach] [--pid-file PATH]
                      [--console-socket PATH] [--cwd DIR] [--env K=V]... [--user UID[:GID]]
                      [--additional-gids GID]... [--cap CAP]... [--no-new-privs]
                      [--preserve-fds N] ID [COMMAND [ARG...]]
"""

FLAGS = _args.table(
    ("--console-socket", None, "value", ""),
    ("--pidfd-socket", None, "value", ""),
    ("--cwd", None, "value", ""),
    ("--env", "-e", "multi", []),
    ("--tty", "-t", "bool", False),
    ("--user", "-u", "value", ""),
    ("--additional-gids", "-g", "multi", []),
    ("--process", "-p", "value", ""),
    ("--detach", "-d", "bool", False),
    ("--pid-file", None, "value", ""),
    ("--process-label", None, "value", ""),
    ("--apparmor", None, "value", ""),
    ("--no-new-privs", None, "bool", False),
    ("--cap", "-c", "multi", []),
    ("--preserve-fds", None, "int", 0),
    ("--cgroup", None, "multi", []),
    ("--ignore-paused", None, "bool", False),
)


def build_process(config, opts, command):
    """The process to run: --process as given, else the container's with the flags applied."""
    from berth.spec import jsonio
    from berth.spec.runtime import Capabilities, Process, User

    if opts["process"]:
        path = opts["process"]
        raw = jsonio.loads(os.read(0, 1 << 20) if path == "-" else _read(path), path)
        return Process.from_json(raw, "process")
    if not command:
        raise InvalidArgument("exec: a command is required unless --process is given")
    base = Process.from_json(config.get("process") or {"cwd": "/", "user": {}}, "process")
    user = base.user
    if opts["user"]:
        uid, _, gid = opts["user"].partition(":")
        try:
            user = User(uid=int(uid), gid=int(gid) if gid else 0,
                        additional_gids=user.additional_gids, umask=user.umask)
        except ValueError:
            raise InvalidArgument(f"--user {opts['user']}: must be UID[:GID] in numbers") from None
    if opts["additional-gids"]:
        try:
            gids = tuple(int(g) for g in opts["additional-gids"])
        except ValueError:
            raise InvalidArgument("--additional-gids: must be numbers") from None
        user = user.replace(additional_gids=gids)
    caps = base.capabilities
    if opts["cap"]:
        from berth.spec.caps import CAPS
        extra = []
        for name in opts["cap"]:
            name = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
            if name not in CAPS:
                raise InvalidArgument(f"--cap: unknown capability {name}")
            extra.append(name)
        caps = caps or Capabilities()
        caps = Capabilities(**{k: tuple(dict.fromkeys(getattr(caps, k) + tuple(extra)))
                               for k in ("bounding", "effective", "permitted", "inheritable",
                                         "ambient")})
    env = list(base.env)
    for item in opts["env"]:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key]
        env.append(item)
    return base.replace(
        args=tuple(command), env=tuple(env), cwd=opts["cwd"] or base.cwd, user=user,
        terminal=opts["tty"], capabilities=caps,
        no_new_privileges=base.no_new_privileges or opts["no-new-privs"],
        apparmor_profile=opts["apparmor"] or base.apparmor_profile,
        selinux_label=opts["process-label"] or base.selinux_label, console_size=None)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise InvalidArgument(f"--process {path}: {err.strerror}") from None


def main(g, verb, argv):
    from berth.runtime.enter import enter
    from berth.runtime.state import Container, require_status
    from berth.runtime.verbs.run import exit_status, forward_signals

    opts, args = _args.parse(argv, FLAGS)
    args = need_id(verb, args)
    c = Container.load(g.root, args[0])
    allowed = ("created", "running", "paused") if opts["ignore-paused"] else ("created", "running")
    require_status(c, *allowed, verb="exec")
    config = c.config()
    process = build_process(config, opts, args[1:])
    from berth.spec.validate import validate_process
    validate_process(process)
    seccomp_filter = None
    seccomp_raw = (config.get("linux") or {}).get("seccomp")
    if seccomp_raw:
        from berth.runtime import filtercache
        from berth.spec.runtime import Seccomp
        seccomp_filter = filtercache.program(g.root, seccomp_raw,
                                             Seccomp.from_json(seccomp_raw))
    if process.terminal:
        import fcntl  # noqa: F401 - the child needs these once inside the container
        import socket  # noqa: F401
        import struct  # noqa: F401

        import berth.runtime.console  # noqa: F401
    if os.getenv("BERTH_OCI_DEBUG"):
        import traceback  # noqa: F401
    manager = c.cgroup()
    entered = enter(c, process, manager=manager, seccomp_filter=seccomp_filter,
                    console_socket=opts["console-socket"] or None,
                    foreground=not opts["detach"], preserve_fds=opts["preserve-fds"],
                    pid_file=opts["pid-file"] or None)
    if opts["detach"]:
        return 0
    forward_signals(entered.pid)
    if entered.master_fd >= 0:
        from berth.runtime.console import relay
        return exit_status(relay(entered.master_fd, entered.pid))
    while True:
        try:
            _, status = os.waitpid(entered.pid, 0)
            return exit_status(status)
        except InterruptedError:
            continue
