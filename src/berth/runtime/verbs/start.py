"""`berth-oci start ID`: release a created container's init to exec the user's process."""

from berth.sys import fastos as os

from berth.errors import Conflict, SystemFailure
from berth.runtime.main import need_id
from berth.runtime.state import FIFO, Container, require_status

USAGE = "usage: berth-oci start ID\n"


def start(root, container_id, log=None):
    c = Container.locked(root, container_id)
    try:
        require_status(c, "created", verb="start")
        release(c, _poststart_hooks(c), log)
    finally:
        c.unlock()
    return c


def release(c, poststart=(), log=None):
    """Let a created container's init exec, then run the poststart hooks."""
    fd = os.open(c.path(FIFO), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _await_init(c, fd)
    finally:
        os.close(fd)
    # Nothing to record: with the fifo gone, a live init reads as running (state.py).
    os.unlink(c.path(FIFO))
    if poststart:
        from berth.runtime import hooks
        from berth.spec import jsonio
        hooks.run_reporting(poststart, jsonio.dumps(c.oci_state()).encode(), "poststart",
                            log or (lambda m: None))


def _poststart_hooks(c):
    hooks_raw = c.config().get("hooks") or {}
    if not hooks_raw.get("poststart"):
        return ()
    from berth.spec.runtime import Hooks
    return Hooks.from_json(hooks_raw).poststart


def _await_init(c, fd):
    """Read the init's status from the fifo: "0" it execs, "1<why>" it cannot."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if poller.poll(50):
            data = os.read(fd, 4096)
            if data[:1] == b"0":
                return
            if data[:1] == b"1":
                raise SystemFailure(f"cannot start container {c.id}: "
                                    f"{data[1:].decode(errors='replace')}")
        if not c.init_alive():
            raise Conflict(f"cannot start container {c.id}: its init exited")


def main(g, verb, argv):
    container_id = need_id(verb, argv)[0]
    start(g.root, container_id, log=lambda m: g.log_line("warning", m))
    return 0
