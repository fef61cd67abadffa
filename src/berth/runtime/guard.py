"""Keep the runtime's own interpreter unwritable from inside containers.

Called by the verbs that put processes into containers. When berth-oci runs on the
interpreter copy that `berth.runtime.install` made (a marker file sits beside it) and that
copy is not yet behind a read-only mount, bind it read-only onto itself and re-exec: from
then on /proc/<pid>/exe of every runtime process points into a read-only mount and cannot
be opened for writing. This happens once per boot; every later call costs one statvfs.
"""

from berth.sys import fastos as os
import sys

from berth.errors import PermissionDenied
from berth.sys import consts as C
from berth.sys import linux

_ENV = "BERTH_OCI_GUARDED"


def ensure_readonly_interpreter():
    exe = sys.executable
    if not exe or os.statvfs(exe).f_flag & os.ST_RDONLY:
        # Not passed on: a berth-oci started later (a hook's, in another mount namespace
        # where the bind is missing) must bind again, not fail.
        if os.getenv(_ENV) is not None:
            os.unsetenv(_ENV)
        return
    if not os.path.exists(os.path.join(os.path.dirname(exe), ".berth-interpreter")):
        return  # a development run (python -m berth.runtime): nothing of ours to protect
    if os.getenv(_ENV):
        raise PermissionDenied(f"cannot keep the interpreter {exe} read-only")
    try:
        linux.mount(exe, exe, None, C.MS_BIND)
        linux.mount(None, exe, None, C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY | C.MS_NOSUID
                    | C.MS_NODEV)
    except OSError as err:
        raise PermissionDenied(f"cannot bind {exe} read-only: {err.strerror}") from None
    os.putenv(_ENV, "1")
    os.execv(exe, [exe, "-IS"] + sys.argv)
