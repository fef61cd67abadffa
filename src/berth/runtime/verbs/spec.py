"""`berth-oci spec [--bundle DIR] [--rootless]`: write a starter config.json, as `runc spec`.

runc indents with a tab; berth writes two spaces (the JSON is the same).
"""

from berth.sys import fastos as os

from berth.errors import AlreadyExists, InvalidArgument
from berth.runtime import _args

USAGE = "usage: berth-oci spec [--bundle DIR] [--rootless]\n"

FLAGS = _args.table(
    ("--bundle", "-b", "value", ""),
    ("--rootless", None, "bool", False),
)


def write_spec(bundle, rootless=False):
    """Write ``bundle``/config.json; refuse to replace one. Returns its path."""
    from berth.spec import jsonio
    from berth.spec.defaults import default_spec

    path = os.path.join(bundle, "config.json") if bundle else "config.json"
    data = (jsonio.pretty(default_spec(rootless)) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise AlreadyExists(f"File {path} exists. Remove it first") from None
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    if args:
        raise InvalidArgument(f'"{verb}" requires exactly 0 argument(s)')
    write_spec(opts["bundle"], opts["rootless"])
    return 0
