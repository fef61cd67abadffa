"""A small frozen-record base for the spec models, and the JSON field readers they share.

Why not dataclasses: importing ``dataclasses`` costs about 20 ms (it pulls in ``inspect`` and
``re``), more than runc needs to run a whole container, and berth-oci parses a config.json on
every ``create``. A record here is a plain class whose annotations name its fields and whose
class attributes give the defaults; instances are frozen after ``__init__``.
"""

from berth.errors import InvalidArgument


class Record:
    """Frozen value object. Subclasses list fields as annotations, defaults as class attributes."""

    def __init__(self, **fields):
        names = type(self).__annotations__
        for key in fields:
            if key not in names:
                raise TypeError(f"{type(self).__name__} has no field {key!r}")
        self.__dict__.update(fields)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is frozen")

    def replace(self, **changes):
        values = {k: getattr(self, k) for k in type(self).__annotations__}
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in type(self).__annotations__)

    def __hash__(self):
        return hash(tuple(_hashable(getattr(self, k)) for k in type(self).__annotations__))

    def __repr__(self):
        parts = []
        for k in type(self).__annotations__:
            v = getattr(self, k)
            if v != getattr(type(self), k, _MISSING):
                parts.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


_MISSING = object()


def _hashable(value):
    # Free-form fields (personality, ioPriority, ...) keep JSON dicts that may hold lists.
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


# ---- readers: each takes the raw value and the dotted path used in error messages ----

def fail(path, message):
    raise InvalidArgument(f"{path}: {message}")


def obj(value, path, required=False):
    if value is None:
        if required:
            fail(path, "is required")
        return {}
    if not isinstance(value, dict):
        fail(path, "must be an object")
    return value


def string(value, path, required=False, default=""):
    if value is None:
        if required:
            fail(path, "is required")
        return default
    if not isinstance(value, str):
        fail(path, "must be a string")
    return value


def boolean(value, path, default=False):
    if value is None:
        return default
    if not isinstance(value, bool):
        fail(path, "must be true or false")
    return value


def integer(value, path, required=False, default=None, minimum=None, maximum=None):
    if value is None:
        if required:
            fail(path, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, "must be an integer")
    if minimum is not None and value < minimum:
        fail(path, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        fail(path, f"must be at most {maximum}")
    return value


def strings(value, path):
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(path, "must be an array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            fail(f"{path}[{i}]", "must be a string")
    return tuple(value)


def records(value, path, parse):
    """Parse an array of objects with ``parse(raw, path)``."""
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(path, "must be an array")
    return tuple(parse(obj(item, f"{path}[{i}]", True), f"{path}[{i}]") for i, item in enumerate(value))


def string_map(value, path):
    value = obj(value, path)
    for k, v in value.items():
        if not isinstance(v, str):
            fail(f"{path}.{k}", "must be a string")
    return dict(value)
