"""`berth-oci _serve SOCKET`: a warm berth-oci for an engine (hidden, as runc's `init`).

An engine that calls the runtime for every container (create, then delete) pays
berth-oci's interpreter start and imports on each call (~7 ms). This verb is that
interpreter, started once: it imports every verb and the code they run, then serves calls
through ``berth.sys.forkserver``, each in a forked child that runs ``berth-oci ARGS`` as a
fresh process would, on the caller's stdio, environment and working directory.

The server runs on the same read-only interpreter copy as every berth-oci call (the guard
runs first), so /proc/<pid>/exe of its children is as unwritable as a fresh call's. It is
not a subreaper: a container's init whose runtime child exits re-parents to the caller's
nearest one (berth's zygote, which starts the server as its child). It stops listening when
its parent goes, when it was idle for ten seconds, or when the launcher it runs from is
replaced (``key``), and exits once its last child is done.
"""

import sys

from berth.runtime.main import need_id
from berth.sys import fastos as os

USAGE = "usage: berth-oci _serve SOCKET\n"
# A start-up cache, not a resident: it exits once no runtime call came for this long (a
# burst of `run`s keeps it; containers that just run do not need it).
IDLE_S = 10


def main(g, verb, args):
    sock = need_id(verb, args)[0]
    from berth.runtime.guard import ensure_readonly_interpreter
    from berth.sys import forkserver

    ensure_readonly_interpreter()
    _preload()
    import berth

    launcher = os.path.abspath(sys.argv[0])
    src = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    parent = os.getppid()
    # early_status=False: a monitor hears of a `run -d` once its runtime child is reaped,
    # so the container's init has been re-parented to the zygote, which waits for it.
    # The key a caller must name: the launcher file's identity (a reinstall makes running
    # servers stale) and this server's parent, whose subreaping its containers' inits reach.
    forkserver.serve(sock, forkserver.file_key(launcher, parent), _entry, idle_s=IDLE_S, parent=parent,
                     watch_prefix=src + "/", early_status=False)
    return 0


def _entry(argv):
    from berth.runtime.main import main

    code = main(argv)
    return code if isinstance(code, int) else 1


def _preload():
    import importlib
    import pkgutil

    import berth.cgroups
    import berth.runtime
    import berth.runtime.verbs
    import berth.spec
    import berth.sys

    for package in (berth.runtime, berth.runtime.verbs, berth.cgroups, berth.spec, berth.sys):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name.endswith((".install", ".__main__", ".serve")):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - what cannot load here loads in the child
                pass
