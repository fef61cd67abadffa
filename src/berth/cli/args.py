"""Argument words several commands share: --filter and key=value lists (--label, --opt)."""

from berth.flags import UsageError


def filters(items, allowed=None, lower=False):
    """{key: [values]} from --filter words ("key=value"), as Docker reads them; ``allowed``
    the keys a command knows (None: any), ``lower`` folds the keys to lower case."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError("bad format of filter (expected name=value)")
        if lower:
            key = key.strip().lower()
        if allowed is not None and key not in allowed:
            raise UsageError(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


def key_values(items, flag):
    """{key: value} from --label or --opt words; an --opt without "=" is refused."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if flag == "opt" and not eq:
            raise UsageError(f'invalid argument "{item}" for "-o, --opt" flag: invalid key '
                             f"value pair format")
        out[key] = value
    return out
