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
# How often the OOM counter and the init are checked between stats events.
_POLL = 0.2


def parse_duration(text):
    """A Go duration ("500ms", "1m30s") in nanoseconds; errors in Go's words."""
    from berth.units import parse_duration as parse

    try:
        return parse(text)
    except ValueError as err:
        raise InvalidArgument(str(err)) from None


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
