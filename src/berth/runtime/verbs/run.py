"""`berth-oci run [flags] ID`: create and start in one call, then wait for the exit.

The runtime becomes a child subreaper, so the init, orphaned when the intermediate process
exits, is re-parented to it; it forwards signals to the init, relays a terminal when the
config asks for one and no console socket is given, deletes the container afterwards
(unless --keep), and exits with the container's status (128+signal when killed).
"""

from berth.sys import fastos as os

from berth.runtime import _args
from berth.runtime.main import need_id
from berth.runtime.verbs import create as create_verb

USAGE = """usage: berth-oci run [--bundle DIR] [--detach] [--keep] [--console-socket PATH]
                     [--pid-file PATH] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
"""

FLAGS = _args.table(
    *create_verb.ENTRIES,
    ("--detach", "-d", "bool", False),
    ("--keep", None, "bool", False),
    ("--no-subreaper", None, "bool", False),
)


def exit_status(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def forward_signals(pid):
    import _signal

    def forward(sig, frame):
        try:
            os.kill(pid, sig)
        except OSError:
            pass

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
                _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH):
        _signal.signal(sig, forward)


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    container_id = need_id(verb, args)[0]
    detach = opts["detach"]
    created = create_verb.create_from(g, opts, container_id, foreground=not detach,
                                      start_now=True)
    from berth.runtime.verbs.delete import remove

    log = lambda m: g.log_line("warning", m)  # noqa: E731
    container = created.container
    hooks = created.spec.hooks
    if hooks.poststart:
        from berth.runtime import hooks as run_hooks
        from berth.spec import jsonio
        run_hooks.run_reporting(hooks.poststart, jsonio.dumps(container.oci_state()).encode(),
                                "poststart", log)
    if detach:
        return 0
    forward_signals(created.pid)
    if created.master_fd >= 0:
        from berth.runtime.console import relay
        status = relay(created.master_fd, created.pid)
    else:
        while True:
            try:
                _, status = os.waitpid(created.pid, 0)
                break
            except InterruptedError:
                continue
    if not opts["keep"]:
        from berth.errors import NotFound
        try:
            container.lock()
        except NotFound:
            return exit_status(status)  # someone deleted it meanwhile
        remove(container, created.manager, hooks.poststop, log)
    return exit_status(status)
