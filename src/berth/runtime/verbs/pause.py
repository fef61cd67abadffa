"""`berth-oci pause ID` and `berth-oci resume ID`: freeze or thaw every process of a container.

As runc: a running or created container may be paused, only a paused one resumed. The
freezer does the work; the state file's "paused" records it for `state` and `list`.
"""

from berth.errors import Conflict
from berth.runtime.main import need_id
from berth.runtime.state import Container

USAGE = "usage: berth-oci pause ID\n       berth-oci resume ID\n"


def _manager(c):

    return c.cgroup()


def pause(root, container_id):
    c = Container.locked(root, container_id)
    try:
        if c.status() not in ("running", "created"):
            raise Conflict(f"cannot pause container {container_id}: container not running")
        _manager(c).freeze()
        c.state["paused"] = True
        c.save()
    finally:
        c.unlock()


def resume(root, container_id):
    c = Container.locked(root, container_id)
    try:
        status = c.status()
        # A paused created container still reads "created" (the exec fifo is checked first).
        if not (status == "paused" or (status == "created" and c.state.get("paused"))):
            raise Conflict(f"cannot resume container {container_id}: container not paused")
        _manager(c).thaw()
        c.state.pop("paused", None)
        c.save()
    finally:
        c.unlock()


def main(g, verb, argv):
    container_id = need_id(verb, argv)[0]
    if verb == "resume":
        resume(g.root, container_id)
    else:
        pause(g.root, container_id)
    return 0
