"""Install the `berth-oci` launcher and the interpreter it runs on.

The launcher's interpreter is a private copy of Debian's /usr/bin/python3 under
``<prefix>/lib/berth/``. berth-oci keeps that copy behind a read-only bind mount (made on the
first call after boot, see ``berth.runtime.guard``), so a container process that reaches the
runtime's executable through /proc/<pid>/exe can never open it for writing: the kernel
answers EROFS. That is the CVE-2019-5736 class, defended without copying the interpreter
into memory on every call. The copy also keeps host upgrades of python3 from replacing the
file under a running runtime.

Usage: python -m berth.runtime.install [--prefix /usr/local] [--python /usr/bin/python3]
"""

import os
import shutil
import sys

MARKER = ".berth-interpreter"

LAUNCHER = """#!{interpreter} -IS
# berth-oci launcher, written by `python -m berth.runtime.install`.
# The cyclic collector only costs a short-lived process time (~1 ms of passes while
# berth-oci imports its modules): it is off before the first import.
import gc
gc.disable()
import sys
sys.path.insert(0, {src!r})
from berth.runtime.main import entry
entry()
"""


def install(prefix="/usr/local", python="/usr/bin/python3"):
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    libdir = os.path.join(prefix, "lib", "berth")
    os.makedirs(libdir, exist_ok=True)
    interpreter = os.path.join(libdir, "python3")
    real = os.path.realpath(python)
    if not _same_content(real, interpreter):
        _unprotect(interpreter)
        tmp = interpreter + ".tmp"
        shutil.copyfile(real, tmp)
        os.chmod(tmp, 0o555)
        os.rename(tmp, interpreter)
    open(os.path.join(libdir, MARKER), "w").close()
    bindir = os.path.join(prefix, "bin")
    os.makedirs(bindir, exist_ok=True)
    launcher = os.path.join(bindir, "berth-oci")
    tmp = launcher + ".tmp"
    with open(tmp, "w") as f:
        f.write(LAUNCHER.format(interpreter=interpreter, src=src))
    os.chmod(tmp, 0o755)
    os.rename(tmp, launcher)
    # Compile the runtime's modules now so no call pays for it (or writes beside the code).
    import compileall
    compileall.compile_dir(os.path.join(src, "berth"), quiet=1)
    return launcher


def _same_content(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    if sa.st_size != sb.st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def _unprotect(path):
    """Lift the read-only bind mounts over an old copy so it can be replaced."""
    from berth.sys import consts, linux

    for _ in range(16):
        try:
            linux.umount(path, consts.MNT_DETACH)
        except OSError:
            return


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    prefix, python = "/usr/local", "/usr/bin/python3"
    it = iter(argv)
    for arg in it:
        if arg == "--prefix":
            prefix = next(it)
        elif arg == "--python":
            python = next(it)
        else:
            sys.stderr.write("usage: python -m berth.runtime.install [--prefix DIR] "
                             "[--python PATH]\n")
            return 2
    path = install(prefix, python)
    print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
