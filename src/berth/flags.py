"""Docker's (cobra/pflag) command-line grammar, small and cheap to import.

A command declares its flags as ``Flag`` entries. Parsing accepts ``--name value``,
``--name=value``, ``-n value``, ``-nvalue``, bundled booleans (``-it``), repeated flags for
lists, ``--`` as the end of flags, and flags after positional arguments unless the command
stops at its first positional (``run IMAGE CMD...`` does). Errors read like Docker's:
``unknown flag: --foo``, ``unknown shorthand flag: 'x' in -x``, ``flag needs an argument: --name``.
"""

from berth.errors import InvalidArgument


class UsageError(InvalidArgument):
    """A command line the command cannot take; the CLI adds "See 'berth X --help'."."""


class Flag:
    __slots__ = ("name", "short", "kind", "default", "help", "metavar")

    def __init__(self, name, short=None, kind="bool", default=None, help="", metavar=None):
        self.name = name
        self.short = short
        self.kind = kind  # "bool", "string", "int", "list", "bytes" (kept as text)
        if default is None:
            default = {"bool": False, "list": [], "int": 0}.get(kind, "")
        self.default = default
        self.help = help
        self.metavar = metavar

    @property
    def key(self):
        return self.name.replace("-", "_")


def parse(argv, flags, *, interspersed=True):
    """(options namespace as a dict keyed by flag key, positional arguments)."""
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    opts = {f.key: (list(f.default) if f.kind == "list" else f.default) for f in flags}
    opts["_set"] = set()
    rest = []
    i = 0
    n = len(argv)

    def take(flag, value, shown):
        nonlocal i
        if value is None:
            if i >= n:
                raise UsageError(f"flag needs an argument: {shown}")
            value = argv[i]
            i += 1
        store(flag, value, shown)

    def store(flag, value, shown):
        opts["_set"].add(flag.key)
        if flag.kind == "list":
            opts[flag.key].append(value)
        elif flag.kind == "int":
            try:
                opts[flag.key] = int(value, 10)
            except ValueError:
                raise UsageError(f'invalid argument "{value}" for "{shown}" flag: '
                                 f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
        else:
            opts[flag.key] = value

    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: --{name}")
            if flag.kind == "bool":
                opts[flag.key] = _bool(value, f"--{name}") if eq else True
                opts["_set"].add(flag.key)
            else:
                take(flag, value if eq else None, f"--{name}")
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                ch = arg[j]
                flag = by_short.get(ch)
                if flag is None:
                    raise UsageError(f"unknown shorthand flag: '{ch}' in {arg}")
                j += 1
                if flag.kind == "bool":
                    if j < len(arg) and arg[j] == "=":
                        opts[flag.key] = _bool(arg[j + 1:], f"-{ch}")
                        j = len(arg)
                    else:
                        opts[flag.key] = True
                    opts["_set"].add(flag.key)
                    continue
                value = arg[j:] if j < len(arg) else None
                if value is not None and value.startswith("="):
                    value = value[1:]
                take(flag, value, f"-{ch}")
                break
            continue
        rest.append(arg)
        if not interspersed:
            rest.extend(argv[i:])
            break
    return opts, rest


def _bool(text, shown):
    low = text.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise UsageError(f'invalid argument "{text}" for "{shown}" flag: '
                     f'strconv.ParseBool: parsing "{text}": invalid syntax')


def usage_lines(flags):
    """Docker-style option lines for --help."""
    lines = []
    for f in flags:
        short = f"-{f.short}, " if f.short else "    "
        meta = "" if f.kind == "bool" else " " + (f.metavar or
                                                 {"list": "list", "int": "int"}.get(f.kind,
                                                                                    "string"))
        lines.append(f"  {short}--{f.name}{meta}".ljust(34) + f.help)
    return lines
