"""A small command-line parser in runc's (urfave/cli) manner, cheap to import.

``argparse`` costs about 8 ms to import; berth-oci runs once per container operation, so it
parses with this instead. A flag table maps each spelling to (canonical name, kind), where
kind is "bool", "value" or "multi". Flags may be written --name, -name (Go style), --name=v or
"-x v"; parsing stops at the first positional argument or at "--".
"""

from berth.errors import InvalidArgument


def table(*entries):
    """Build a flag table from ("--name", "-n", kind, default) tuples (short name may be None)."""
    flags = {}
    defaults = {}
    for long, short, kind, default in entries:
        name = long.lstrip("-")
        flags[long] = (name, kind)
        flags["-" + name] = (name, kind)
        if short:
            flags[short] = (name, kind)
        defaults[name] = list(default) if kind == "multi" else default
    return flags, defaults


def parse(argv, flag_table, stop_at_positional=True):
    """Return (options dict, positional list)."""
    flags, defaults = flag_table
    opts = {k: (list(v) if isinstance(v, list) else v) for k, v in defaults.items()}
    rest = []
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            rest.extend(argv[i:])
            break
        if len(arg) < 2 or arg[0] != "-":
            rest.append(arg)
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            continue
        value = None
        if "=" in arg:
            arg, value = arg.split("=", 1)
        entry = flags.get(arg)
        if entry is None:
            raise InvalidArgument(f"flag provided but not defined: {arg}")
        name, kind = entry
        if kind == "bool":
            if value is None:
                opts[name] = True
            else:
                low = value.lower()
                if low not in ("true", "false", "1", "0", "t", "f"):
                    raise InvalidArgument(f"invalid boolean value {value!r} for {arg}")
                opts[name] = low in ("true", "1", "t")
            continue
        if value is None:
            if i >= n:
                raise InvalidArgument(f"flag needs an argument: {arg}")
            value = argv[i]
            i += 1
        if kind == "multi":
            opts[name].append(value)
        elif kind == "int":
            try:
                opts[name] = int(value, 0)
            except ValueError:
                raise InvalidArgument(f"invalid value {value!r} for flag {arg}: "
                                      f"parse error") from None
        else:
            opts[name] = value
    return opts, rest
