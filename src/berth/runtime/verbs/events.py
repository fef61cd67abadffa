"""`berth-oci events [--interval 5s] [--stats] ID`: a container's statistics and OOM kills.

Each event is one JSON line, as runc prints them: {"type":"stats","id":..,"data":{..}} every
interval, {"type":"oom","id":..} when the OOM killer takes a process. runc learns of OOM
kills through an eventfd; berth polls the kill counter a few times a second instead, and
stops when the container's init has exited. --stats prints one stats event and returns.
"""

import sys
import time

from berth.errors import BerthError, Conflict, InvalidArgument
from berth.runtime import _args
from berth.runtime.main import need_id
from berth.runtime.state import Container
from berth.spec import jsonio

USAGE = "usage: berth-oci events [--interval DURATION] [--stats] ID\n"

FLAGS = _args.table(
    ("--interval", None, "value", "5s"),
    ("--stats", None, "bool", False),
)

# Go's time units, in nanoseconds.
_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DIGITS = "0123456789"
# How often the OOM counter and the init are looked at between stats events.
_POLL = 0.2


def parse_duration(text):
    """Nanoseconds in a Go duration ("500ms", "1m30s", "-2h", "0"), as time.ParseDuration."""
    quoted = '"' + text + '"'
    s = text
    negative = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise InvalidArgument(f"time: invalid duration {quoted}")
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i] in _DIGITS:
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s[:1] == ".":
            i = 1
            while i < len(s) and s[i] in _DIGITS:
                i += 1
            frac, s = s[1:i], s[i:]
            if not whole and not frac:
                raise InvalidArgument(f"time: invalid duration {quoted}")
        elif not whole:
            raise InvalidArgument(f"time: invalid duration {quoted}")
        i = 0
        while i < len(s) and s[i] != "." and s[i] not in _DIGITS:
            i += 1
        unit, s = s[:i], s[i:]
        if not unit:
            raise InvalidArgument(f"time: missing unit in duration {quoted}")
        scale = _UNITS.get(unit)
        if scale is None:
            raise InvalidArgument(f'time: unknown unit "{unit}" in duration {quoted}')
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        if total > 1 << 63:
            raise InvalidArgument(f"time: invalid duration {quoted}")
    if total == 1 << 63 and not negative:
        raise InvalidArgument(f"time: invalid duration {quoted}")
    return -total if negative else total


def _emit(event):
    sys.stdout.write(jsonio.dumps(event) + "\n")
    sys.stdout.flush()


def _stats_event(c, manager):
    return {"type": "stats", "id": c.id, "data": manager.stats()}


def events(g, container_id, interval_ns, stats_only=False):
    c = Container.load(g.root, container_id)
    if c.status() == "stopped":
        raise Conflict(f"container with id {container_id} is not running")

    manager = c.cgroup()
    if stats_only:
        _emit(_stats_event(c, manager))
        return
    interval = interval_ns / 1e9
    ooms = _oom_count(manager)
    next_stats = time.monotonic() + interval
    while True:
        alive = c.init_alive()
        ooms = _report_ooms(c, manager, ooms)
        if not alive:
            return
        now = time.monotonic()
        if now >= next_stats:
            try:
                _emit(_stats_event(c, manager))
            except BerthError as err:
                # The cgroup may be going away with the container; runc logs and goes on.
                g.log_line("error", f"events: stats of {container_id}: {err}")
            next_stats = max(next_stats + interval, now)
        time.sleep(max(0.0, min(_POLL, next_stats - time.monotonic())))


def _oom_count(manager):
    try:
        return manager.oom_kill_count()
    except (BerthError, OSError):
        return 0


def _report_ooms(c, manager, seen):
    count = _oom_count(manager)
    for _ in range(max(0, count - seen)):
        _emit({"type": "oom", "id": c.id})
    return max(count, seen)


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    container_id = need_id(verb, args)[0]
    try:
        interval = parse_duration(opts["interval"])
    except InvalidArgument as err:
        raise InvalidArgument(f'invalid value "{opts["interval"]}" for flag --interval: '
                              f"{err}") from None
    if interval <= 0:
        raise InvalidArgument("duration interval must be greater than 0")
    events(g, container_id, interval, opts["stats"])
    return 0
