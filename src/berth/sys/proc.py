"""Facts about a process from /proc, shared by the runtime and the engine."""


def stat(pid):
    """(state letter, start time in clock ticks) of ``pid``, or None when it does not exist.

    The start time tells a process from a later one that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])
