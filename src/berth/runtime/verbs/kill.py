"""`berth-oci kill [--all] ID [SIGNAL]`: signal the init, or every process with --all."""

import _signal

from berth.errors import InvalidArgument
from berth.runtime import _args
from berth.runtime.main import need_id
from berth.runtime.state import Container, require_status

USAGE = "usage: berth-oci kill [--all] ID [SIGNAL]\n"

FLAGS = _args.table(("--all", "-a", "bool", False))


def parse_signal(text):
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
    else:
        name = text.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        number = getattr(_signal, name, None)
        if isinstance(number, int):
            return number
        if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
            base = _signal.SIGRTMIN if "MIN" in name else _signal.SIGRTMAX
            try:
                off = int(name[9:])
            except ValueError:
                off = -1
            if off >= 0:
                return base + off if "MIN" in name else base - off
    raise InvalidArgument(f"unknown signal {text!r}")


def kill(root, container_id, sig, all_processes=False):
    from berth.sys import fastos as os

    c = Container.locked(root, container_id)
    try:
        require_status(c, "created", "running", "paused", verb="kill")
        if all_processes:
            c.cgroup().kill_all(sig)
        else:
            os.kill(c.pid, sig)
    finally:
        c.unlock()


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    args = need_id(verb, args)
    sig = parse_signal(args[1]) if len(args) > 1 else _signal.SIGTERM
    kill(g.root, args[0], sig, opts["all"])
    return 0
