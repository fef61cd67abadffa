"""The `berth` command: Docker's commands and flags, run in process with no daemon.

This module only dispatches: each command lives in a module of this package and is imported
when asked for. A command is ``fn(ctx, argv) -> exit code``. Errors print as one line
(``Error: ...``) with exit 1, or 125 for the commands where docker uses 125 (run, create,
exec ...); a bad command line adds ``See 'berth CMD --help'.``, as docker does.
"""

import os
import sys

from berth.errors import BerthError

VERSION = "0.1.0"

# command -> (module, function); groups map sub-commands the same way.
COMMANDS = {
    "pull": ("berth.cli.images", "pull"),
    "push": ("berth.cli.images", "push"),
    "images": ("berth.cli.images", "images"),
    "tag": ("berth.cli.images", "tag"),
    "rmi": ("berth.cli.images", "rmi"),
    "history": ("berth.cli.images", "history"),
    "save": ("berth.cli.images", "save"),
    "load": ("berth.cli.images", "load"),
    "import": ("berth.cli.images", "import_"),
    "login": ("berth.cli.images", "login"),
    "logout": ("berth.cli.images", "logout"),
    "inspect": ("berth.cli.images", "inspect"),
    "version": ("berth.cli.main", "version"),
    "run": ("berth.cli.containers", "run"),
    "create": ("berth.cli.containers", "create"),
    "start": ("berth.cli.containers", "start"),
    "stop": ("berth.cli.containers", "stop"),
    "restart": ("berth.cli.containers", "restart"),
    "kill": ("berth.cli.containers", "kill"),
    "rm": ("berth.cli.containers", "rm"),
    "ps": ("berth.cli.containers", "ps"),
    "logs": ("berth.cli.containers", "logs"),
    "wait": ("berth.cli.containers", "wait"),
    "export": ("berth.cli.containers", "export"),
    "exec": ("berth.cli.containers", "exec_"),
    "pause": ("berth.cli.containers", "pause"),
    "unpause": ("berth.cli.containers", "unpause"),
    "top": ("berth.cli.containers", "top"),
    "rename": ("berth.cli.containers", "rename"),
    "attach": ("berth.cli.containers", "attach"),
    "stats": ("berth.cli.containers", "stats"),
    "port": ("berth.cli.network", "port"),
    "cp": ("berth.cli.files", "cp"),
    "diff": ("berth.cli.files", "diff"),
    "commit": ("berth.cli.files", "commit"),
    "events": ("berth.cli.events", "events"),
}

GROUPS = {
    "image": {
        "ls": ("berth.cli.images", "images"), "list": ("berth.cli.images", "images"),
        "pull": ("berth.cli.images", "pull"), "push": ("berth.cli.images", "push"),
        "tag": ("berth.cli.images", "tag"), "rm": ("berth.cli.images", "rmi"),
        "remove": ("berth.cli.images", "rmi"), "history": ("berth.cli.images", "history"),
        "save": ("berth.cli.images", "save"), "load": ("berth.cli.images", "load"),
        "import": ("berth.cli.images", "import_"), "inspect": ("berth.cli.images", "inspect"),
        "prune": ("berth.cli.images", "prune"),
    },
    "container": {
        "run": ("berth.cli.containers", "run"), "create": ("berth.cli.containers", "create"),
        "start": ("berth.cli.containers", "start"), "stop": ("berth.cli.containers", "stop"),
        "restart": ("berth.cli.containers", "restart"),
        "kill": ("berth.cli.containers", "kill"), "rm": ("berth.cli.containers", "rm"),
        "ls": ("berth.cli.containers", "ps"), "list": ("berth.cli.containers", "ps"),
        "ps": ("berth.cli.containers", "ps"), "logs": ("berth.cli.containers", "logs"),
        "wait": ("berth.cli.containers", "wait"),
        "export": ("berth.cli.containers", "export"),
        "inspect": ("berth.cli.images", "inspect"),
        "exec": ("berth.cli.containers", "exec_"), "pause": ("berth.cli.containers", "pause"),
        "unpause": ("berth.cli.containers", "unpause"), "top": ("berth.cli.containers", "top"),
        "rename": ("berth.cli.containers", "rename"),
        "prune": ("berth.cli.containers", "container_prune"),
        "attach": ("berth.cli.containers", "attach"), "stats": ("berth.cli.containers", "stats"),
        "port": ("berth.cli.network", "port"),
    "cp": ("berth.cli.files", "cp"), "diff": ("berth.cli.files", "diff"),
        "commit": ("berth.cli.files", "commit"),
    },
    "network": {
        "create": ("berth.cli.network", "create"), "ls": ("berth.cli.network", "ls"),
        "list": ("berth.cli.network", "ls"), "inspect": ("berth.cli.network", "inspect"),
        "rm": ("berth.cli.network", "rm"), "remove": ("berth.cli.network", "rm"),
        "prune": ("berth.cli.network", "prune"), "connect": ("berth.cli.network", "connect"),
        "disconnect": ("berth.cli.network", "disconnect"),
    },
    "volume": {
        "create": ("berth.cli.volumes", "create"), "ls": ("berth.cli.volumes", "ls"),
        "list": ("berth.cli.volumes", "ls"), "inspect": ("berth.cli.volumes", "inspect"),
        "rm": ("berth.cli.volumes", "rm"), "remove": ("berth.cli.volumes", "rm"),
        "prune": ("berth.cli.volumes", "prune"),
    },
    "system": {
        "check": ("berth.cli.images", "system_check"),
        "prune": ("berth.cli.images", "system_prune"),
        "df": ("berth.cli.volumes", "system_df"),
        "restore": ("berth.cli.events", "system_restore"),
        "events": ("berth.cli.events", "events"),
    },
}

USAGE = """Usage:  berth [OPTIONS] COMMAND

A container engine with Docker's commands, no daemon needed.

Options:
      --root string   where berth keeps images and containers (default /var/lib/berth,
                      or $BERTH_ROOT)
  -D, --debug         show tracebacks of unexpected errors
  -v, --version       print version information and quit

Commands:
  run       Create and run a container             create    Create a container
  start     Start containers                       stop      Stop running containers
  restart   Restart containers                     kill      Kill running containers
  rm        Remove containers                      ps        List containers
  logs      Fetch the logs of a container          wait      Wait for containers to stop
  exec      Run a command in a running container   top       Show a container's processes
  pause     Pause containers                       unpause   Unpause containers
  rename    Rename a container                     export    Export a container's filesystem
  attach    Attach to a running container          stats     Containers' resource usage
  cp        Copy files to or from a container      diff      Changes to a container's files
  commit    Create an image from a container       events    Get real time events
  pull      Download an image from a registry      push      Upload an image to a registry
  images    List images                            tag       Create a tag for an image
  rmi       Remove images                          history   Show the history of an image
  save      Save images to a tar archive           load      Load images from a tar archive
  import    Import a filesystem tarball as image   inspect   Low-level information
  login     Log in to a registry                   logout    Log out from a registry
  version   Show the berth version

Management commands:
  container Manage containers                      image     Manage images
  system    Manage berth                           volume    Manage volumes

Run 'berth COMMAND --help' for more information on a command.
"""


class Context:
    """What every command gets: where state lives and where to print."""

    def __init__(self, root, debug=False, stdout=None, stderr=None):
        self.root = root
        self.debug = debug
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._images = None

    def out(self, text=""):
        self.stdout.write(text + "\n")

    def images(self):
        """The image service, opened on first use."""
        if self._images is None:
            from berth.images.service import ImageService
            self._images = ImageService(self.root)
        return self._images


def version(ctx, argv):
    import platform

    ctx.out(f"Client:\n Version:    {VERSION}\n Python:     {platform.python_version()}\n"
            f" OS/Arch:    linux/{platform.machine()}")
    return 0


def _resolve(args):
    if not args:
        return None, None, []
    name = args[0]
    if name in GROUPS:
        group = GROUPS[name]
        if len(args) < 2 or args[1] in ("-h", "--help"):
            return f"{name}", ("help", sorted(group)), []
        sub = args[1]
        if sub not in group:
            return f"{name} {sub}", None, []
        return f"{name} {sub}", group[sub], args[2:]
    return name, COMMANDS.get(name), args[1:]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from berth.flags import Flag, UsageError, parse

    root = os.environ.get("BERTH_ROOT", "/var/lib/berth")
    try:
        opts, rest = parse(argv, [Flag("root", kind="string", default=root),
                                  Flag("debug", "D"), Flag("version", "v"),
                                  Flag("help", "h")], interspersed=False)
    except UsageError as err:
        sys.stderr.write(f"{err}\nSee 'berth --help'.\n")
        return 125
    if opts["version"]:
        sys.stdout.write(f"berth version {VERSION}\n")
        return 0
    if opts["help"] or not rest:
        sys.stdout.write(USAGE)
        return 0
    ctx = Context(opts["root"], debug=opts["debug"])
    name, target, args = _resolve(rest)
    if target is None:
        sys.stderr.write(f"berth: '{name}' is not a berth command.\n"
                         f"See 'berth --help'\n")
        return 1
    if target[0] == "help":
        sys.stdout.write(f"Usage:  berth {name} COMMAND\n\nCommands:\n"
                         + "".join(f"  {c}\n" for c in target[1]))
        return 0
    module, function = target
    fn = getattr(__import__(module, fromlist=[function]), function)
    try:
        return fn(ctx, args)
    except UsageError as err:
        ctx.stderr.write(f"{err}\nSee 'berth {name} --help'.\n")
        return getattr(fn, "usage_exit", 1)
    except BerthError as err:
        ctx.stderr.write(f"Error: {err}\n")
        return getattr(fn, "error_exit", 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # an unexpected failure: one line unless --debug
        if ctx.debug:
            raise
        ctx.stderr.write(f"Error: {type(err).__name__}: {err}\n")
        return 1
    finally:
        if ctx._images is not None:
            ctx._images.close()


def entry():
    import gc

    # A command's imports make tens of thousands of objects, none of them garbage: with the
    # default threshold (700) the collector walks them ~80 times (~2 ms of a `run`). Rarely
    # is enough for the few cycles a command makes, even a long pull.
    gc.set_threshold(100_000, 50, 100)
    code = main()
    _finish(code)


def served(argv):
    """A command in a child of the launcher's fork server (cli/launch.py); its exit code.
    The server's objects are frozen: the collector walks only what the command makes."""
    import gc

    gc.set_threshold(100_000, 50, 100)
    return _exit_code(main(argv), True)


def _exit_code(code, finish_threads=False):
    if finish_threads:
        threading = sys.modules.get("threading")
        if threading is not None and threading.active_count() > 1:
            threading._shutdown()  # what the interpreter's exit would wait for
        if "logging" in sys.modules:
            sys.modules["logging"].shutdown()
    return code if isinstance(code, int) else 0 if code is None else 1


def _finish(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    threading = sys.modules.get("threading")
    if (threading is not None and threading.active_count() > 1) or "logging" in sys.modules:
        sys.exit(code)  # threads to join, log handlers to flush: the interpreter's way
    # Nothing is left to finish: the interpreter's teardown (every module's dict, the
    # database's objects) would cost ~2 ms of every command.
    os._exit(_exit_code(code))
