"""berth-oci's command line: runc's global flags and verbs, one module a verb.

Only this module and the verb asked for are imported, so a call pays for what it uses.
Errors print as one line on stderr (and in the --log file, in text or JSON, where
containerd and podman look for them) and exit 1; `run` exits with the container's status.
"""

from berth.sys import fastos as os
import sys

from berth.errors import BerthError
from berth.runtime import _args

VERSION = "0.1.0"

VERBS = {
    "create": "berth.runtime.verbs.create",
    "start": "berth.runtime.verbs.start",
    "run": "berth.runtime.verbs.run",
    "state": "berth.runtime.verbs.state",
    "kill": "berth.runtime.verbs.kill",
    "delete": "berth.runtime.verbs.delete",
    "exec": "berth.runtime.verbs.exec",
    "list": "berth.runtime.verbs.list",
    "ps": "berth.runtime.verbs.ps",
    "pause": "berth.runtime.verbs.pause",
    "resume": "berth.runtime.verbs.pause",
    "update": "berth.runtime.verbs.update",
    "events": "berth.runtime.verbs.events",
    "spec": "berth.runtime.verbs.spec",
    "features": "berth.runtime.verbs.features",
    "_serve": "berth.runtime.verbs.serve",
    "checkpoint": None,
    "restore": None,
}

GLOBAL = _args.table(
    ("--root", None, "value", "/run/berth-oci"),
    ("--log", None, "value", ""),
    ("--log-format", None, "value", "text"),
    ("--debug", None, "bool", False),
    ("--systemd-cgroup", None, "bool", False),
    ("--criu", None, "value", ""),
    ("--rootless", None, "value", "auto"),
    ("--version", "-v", "bool", False),
    ("--help", "-h", "bool", False),
)

USAGE = """usage: berth-oci [global options] command [command options] [arguments...]

An OCI runtime with runc's command line.

commands:
  create    create a container from a bundle      start     start a created container
  run       create and start a container          state     print a container's state
  kill      send a signal to a container          delete    delete a container
  exec      run a process in a container          list      list containers
  ps        list a container's processes          pause     freeze a container
  resume    thaw a container                      update    change resource limits
  events    print stats and OOM events            spec      write a config.json
  features  print what this runtime supports

global options:
  --root DIR         state directory (default /run/berth-oci)
  --log FILE         write errors there too      --log-format text|json
  --debug            verbose logs                --systemd-cgroup  use systemd's cgroup driver
  --version, -v      print the version
"""


class Globals:
    def __init__(self, opts):
        self.root = opts["root"]
        self.log = opts["log"]
        self.log_format = opts["log-format"]
        self.debug = opts["debug"]
        self.systemd_cgroup = opts["systemd-cgroup"]

    def log_line(self, level, message):
        """Append a log record to --log (errors also go to stderr, by the caller)."""
        if not self.log:
            return
        from berth.runtime.state import now_rfc3339

        if self.log_format == "json":
            from berth.spec import jsonio
            line = jsonio.dumps({"level": level, "msg": message, "time": now_rfc3339()})
        else:
            line = f'time="{now_rfc3339()}" level={level} msg="{message}"'
        try:
            fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass


def main(argv=None):
    # A berth-oci call lives for milliseconds: the cyclic collector would only cost time,
    # and its passes would dirty pages the forked init shares with us.
    import gc
    gc.disable()
    argv = sys.argv[1:] if argv is None else argv
    g = None
    try:
        opts, rest = _args.parse(argv, GLOBAL)
        g = Globals(opts)
        if opts["version"]:
            sys.stdout.write(f"berth-oci version {VERSION}\nspec: 1.2.0\n")
            return 0
        if opts["help"] or not rest or rest[0] == "help":
            sys.stdout.write(USAGE)
            return 0 if opts["help"] or rest else 1
        if g.log_format not in ("text", "json"):
            from berth.errors import InvalidArgument
            raise InvalidArgument(f"invalid log-format: {g.log_format}")
        verb, args = rest[0], rest[1:]
        if verb not in VERBS:
            from berth.errors import InvalidArgument
            raise InvalidArgument(f"No help topic for '{verb}'")
        module = VERBS[verb]
        if module is None:
            from berth.errors import Unsupported
            raise Unsupported(f"{verb}: checkpoint and restore are not supported")
        if "-h" in args[:1] or "--help" in args[:1]:
            sys.stdout.write(__import__(module, fromlist=["USAGE"]).USAGE)
            return 0
        if verb in ("create", "run", "exec"):
            from berth.runtime.guard import ensure_readonly_interpreter
            ensure_readonly_interpreter()
        mod = __import__(module, fromlist=["main"])
        return mod.main(g, verb, args)
    except BerthError as err:
        _report(g, str(err))
        return err.exit_code if err.exit_code != 0 else 1
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        from berth.errors import from_oserror
        _report(g, str(from_oserror(err, err.filename or "system call")))
        return 1


def entry():
    """The launcher's entry point: run, flush, and leave without the interpreter's teardown.

    Finalizing a Python process (module teardown, freeing every object) costs about 3 ms,
    a tenth of a whole `run`; nothing berth-oci holds needs it, so exit at once.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else 1)


def _report(g, message):
    if g is not None:
        g.log_line("error", message)
    sys.stderr.write(f"berth-oci: {message}\n")


def need_id(verb, args, count=1):
    """The positional arguments of a verb that takes ``count`` of them (an id first)."""
    if len(args) < count:
        from berth.errors import InvalidArgument
        raise InvalidArgument(f'"{verb}" requires a container id' if count == 1 else
                              f'"{verb}" requires at least {count} arguments')
    return args
