"""JSON in and out through the C accelerator alone.

``import json`` costs about 11 ms here (it compiles regular expressions at import); ``_json``
costs 0.3 ms. berth-oci reads config.json and writes state on every call, so it uses these.
Errors are rare and may be slow: they fall back to the json module for a precise message.
"""

import _json

from berth.errors import InvalidArgument


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = {}

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Context)
_WS = " \t\n\r"


def loads(text, what="JSON"):
    """Parse ``text`` (str or bytes); a malformed document raises InvalidArgument naming ``what``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidArgument(f"{what}: not UTF-8: {err}") from None
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    try:
        value, end = _scan(text, i)
    except StopIteration:
        value, end = None, -1
    except Exception:  # the accelerator's JSONDecodeError; reported below
        value, end = None, -1
    if end >= 0:
        while end < n and text[end] in _WS:
            end += 1
        if end == n:
            return value
    raise InvalidArgument(f"{what}: not valid JSON: {_why(text)}")


def _why(text):
    import json

    try:
        json.loads(text)
    except ValueError as err:
        return str(err)
    return "unexpected content"


def load_file(path, what=None):
    with open(path, "rb") as f:
        return loads(f.read(), what or path)


_encode = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                             False, False, True)


def dumps(value):
    """Compact JSON text of ``value`` (dicts, lists, strings, numbers, booleans, None)."""
    return "".join(_encode(value, 0))


def pretty(value, indent="  ", _level=0):
    """Indented JSON, as runc prints state, without importing json."""
    pad = indent * (_level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{_json.encode_basestring_ascii(str(k))}: "
                 f"{pretty(v, indent, _level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent * _level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [pad + pretty(v, indent, _level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent * _level + "]"
    return dumps(value)
