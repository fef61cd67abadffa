"""Container ids: what runc accepts, and nothing unsafe as a directory name.

Apart from validate.py so that the verbs that only look a container up (state, start,
kill, delete) need not import the whole config model.
"""

from berth.errors import InvalidArgument

_ID_MAX = 1024
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")


def validate_id(container_id):
    """Reject a container id that is unsafe as a directory name or differs from runc's rules."""
    problem = None
    if not isinstance(container_id, str) or not container_id:
        problem = "must not be empty"
    elif len(container_id) > _ID_MAX:
        problem = f"must be at most {_ID_MAX} characters"
    elif "/" in container_id:
        problem = 'must not contain "/"'
    elif container_id in (".", ".."):
        problem = 'must not be "." or ".."'
    elif not _ID_CHARS.issuperset(container_id):
        problem = "may contain only letters, digits and _ + . -"
    if problem:
        raise InvalidArgument(f"invalid container id {_quote(container_id)}: {problem}")


def _quote(text):
    """``text`` in double quotes, escaped so that the message stays on one line."""
    out = []
    for ch in str(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
