"""The events journal: what `berth events` shows, appended by the engine, the image service
and every container's monitor.

One JSON object a line (Docker's events.Message: Type, Action, Actor{ID, Attributes}, scope,
time, timeNano, and the old status/id/from) in ``<root>/events.jsonl``. Each event is one
``write`` on an O_APPEND descriptor, so writers in many processes never interleave. When the
file passes ``MAX_SIZE`` the writer that notices renames it to ``events.jsonl.1`` (under a
flock, replacing the older one): the journal is bounded to about twice ``MAX_SIZE``.

Monitors import this module, so it imports only ``os``, ``time`` and ``_json`` at the top.
"""

import os
import time
from _json import encode_basestring as _quote

MAX_SIZE = 2 << 20
NAME = "events.jsonl"


def journal_path(root):
    return os.path.join(root, NAME)


def append(path, type_, action, actor_id, attributes=None):
    """Add one event to the journal at ``path``; a journal that cannot be written loses the
    event, never the operation that caused it."""
    ns = time.time_ns()
    attrs = attributes or {}
    pairs = ",".join(f"{_quote(str(k))}:{_quote(str(v))}" for k, v in sorted(attrs.items()))
    old = ""
    if type_ == "container":
        old = f'"status":{_quote(action)},"id":{_quote(actor_id)},' \
              f'"from":{_quote(str(attrs.get("image", "")))},'
    elif type_ == "image":
        old = f'"status":{_quote(action)},"id":{_quote(actor_id)},'
    line = (f'{{{old}"Type":{_quote(type_)},"Action":{_quote(action)},'
            f'"Actor":{{"ID":{_quote(actor_id)},"Attributes":{{{pairs}}}}},'
            f'"scope":"local","time":{ns // 1_000_000_000},"timeNano":{ns}}}\n').encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        return
    try:
        os.write(fd, line)
        if os.fstat(fd).st_size > MAX_SIZE:
            _rotate(path, fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rotate(path, fd):
    import fcntl

    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        st = os.stat(path)
        # Another writer may have rotated it already: only the file we wrote to rolls.
        if st.st_ino == os.fstat(fd).st_ino and st.st_size > MAX_SIZE:
            os.rename(path, path + ".1")
    except FileNotFoundError:
        pass
    finally:
        os.close(lock)


def container_attributes(record, **extra):
    """Docker's attributes of a container event: image, name and the container's labels."""
    attrs = dict((record.get("config") or {}).get("Labels") or {})
    attrs.update(image=record.get("image", ""), name=record.get("name", ""))
    attrs.update({k: str(v) for k, v in extra.items()})
    return attrs


# ---------------------------------------------------------------- reading

def read(path, *, since_ns=None, until_ns=None, follow=False, keep=None, interval=0.1):
    """The events (dicts) of the journal from ``since_ns`` (or from now when following
    without one) to ``until_ns``; with ``follow`` wait for new ones until ``until_ns``
    (forever without one)."""
    import json

    if since_ns is None and follow:
        since_ns = time.time_ns()

    def wanted(ev):
        t = ev.get("timeNano", 0)
        if since_ns is not None and t < since_ns:
            return False
        if until_ns is not None and t > until_ns:
            return False
        return keep is None or keep(ev)

    def parse(lines):
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a torn line of a crashed writer
            if isinstance(ev, dict) and wanted(ev):
                yield ev

    try:
        with open(path + ".1", "rb") as old:
            yield from parse(old.read().splitlines())
    except FileNotFoundError:
        pass
    f = _open(path)
    pending = b""
    try:
        while True:
            if f is not None:
                data = f.read()
                if data:
                    data = pending + data
                    cut = data.rfind(b"\n") + 1
                    pending = data[cut:]
                    yield from parse(data[:cut].splitlines())
            if not follow or (until_ns is not None and time.time_ns() > until_ns):
                return
            # Rolled over (a new file at the path): finish the old one first.
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and (f is None or st.st_ino != os.fstat(f.fileno()).st_ino):
                if f is not None:
                    rest = pending + f.read()
                    yield from parse(rest.splitlines())
                    f.close()
                pending = b""
                f = _open(path)
                continue
            time.sleep(interval)
    finally:
        if f is not None:
            f.close()


def _open(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def matcher(filters):
    """A predicate for Docker's `events --filter` list ("key=value"): values of one key are
    alternatives, different keys must all match. Raises ValueError on an unknown key."""
    by_key = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key not in ("container", "event", "image", "type", "label", "scope",
                                  "network", "volume"):
            raise ValueError(f"invalid filter '{item}'")
        by_key.setdefault(key, []).append(value)

    def keep(ev):
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        type_ = ev.get("Type", "")
        action = ev.get("Action", "")
        for key, values in by_key.items():
            if key == "type" and type_ not in values:
                return False
            if key == "event" and not any(
                    action == v or (":" not in v and action.split(":")[0] == v)
                    for v in values):
                return False
            if key == "container" and (type_ != "container" or not any(
                    _id_match(actor.get("ID", ""), v) or attrs.get("name") == v
                    for v in values)):
                return False
            if key == "image":
                names = {attrs.get("image", ""), ev.get("from", "")}
                if type_ == "image":
                    names |= {actor.get("ID", ""), attrs.get("name", "")}
                if not any(v in names or _id_match(actor.get("ID", ""), v) and
                           type_ == "image" for v in values):
                    return False
            if key == "label" and not any(_label(attrs, v) for v in values):
                return False
            if key == "scope" and ev.get("scope", "local") not in values:
                return False
            if key in ("network", "volume") and (type_ != key or not any(
                    _id_match(actor.get("ID", ""), v) or attrs.get("name") == v
                    for v in values)):
                return False
        return True
    return keep


def _id_match(full, prefix):
    bare = full.split(":", 1)[-1]
    return bool(prefix) and (full.startswith(prefix) or bare.startswith(prefix))


def _label(attrs, want):
    key, sep, value = want.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


def format_line(ev):
    """Docker's line: ``<time> <type> <action> <id> (k=v, k=v)``."""
    ns = int(ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000)
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return line
