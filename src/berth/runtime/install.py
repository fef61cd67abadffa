"""Install the `berth-oci` launcher and the interpreter it runs on.

The launcher's interpreter is a private copy of Debian's /usr/bin/python3 under
``<prefix>/lib/berth/``. berth-oci keeps that copy behind a read-only bind mount (made on the
first call after boot, see ``berth.runtime.guard``), so a container process that reaches the
runtime's executable through /proc/<pid>/exe can never open it for writing: the kernel
answers EROFS. That is the CVE-2019-5736 class, defended without copying the interpreter
into memory on every call. The copy also keeps host upgrades of python3 from replacing the
file under a running runtime.

It also writes the `berth` command's launcher, on the interpreter that runs the installer.

Usage: python -m berth.runtime.install [--prefix /usr/local] [--python /usr/bin/python3]
"""

import os
import shutil
import sys

MARKER = ".berth-interpreter"

# The packages whose modules go into the launcher's bundle: everything berth-oci runs.
BUNDLED = ("berth", "berth.errors", "berth.spec", "berth.sys", "berth.cgroups", "berth.runtime")

LAUNCHER = """#!{interpreter} -IS
# berth-oci launcher, written by `python -m berth.runtime.install`: its code is in
# {boot} (compiled, so no call compiles it).
import berth_oci_boot
"""

# The launcher's body, compiled at install time into <libdir>/lib/berth_oci_boot.pyc.
BOOT = """# Written by `python -m berth.runtime.install`.
# The cyclic collector only costs a short-lived process time (~1 ms of passes while
# berth-oci imports its modules): it is off before the first import.
import gc
gc.disable()
import sys
sys.path.insert(0, {src!r})


def _bundled(path):
    # berth-oci's modules, compiled at install time into one file and executed from it:
    # the path finder's per-module directory scans and reads cost ~1.5 ms of every call.
    # An entry is used only while its source keeps the mtime and size it was built from,
    # so an edited module is imported from src/ as usual.
    # Only the table is read up front; a module's code is read when it is imported (the
    # whole file is ~0.5 MB: reading it all cost ~0.4 ms of every call).
    import marshal
    import posix
    from _frozen_importlib import ModuleSpec

    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        size = int.from_bytes(posix.pread(fd, 8, 0), "little")
        table = marshal.loads(posix.pread(fd, size, 8))
    except (OSError, ValueError, EOFError, TypeError):
        return
    base = 8 + size
    st = posix.fstat(fd)
    identity = (st.st_dev, st.st_ino)

    def read(start, end):
        try:
            st = posix.fstat(fd)
            if (st.st_dev, st.st_ino) == identity:
                return posix.pread(fd, end - start, base + start)
        except OSError:
            pass
        # The fd was closed (a child that closed every fd) or now names another file.
        again = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            return posix.pread(again, end - start, base + start)
        finally:
            posix.close(again)

    class Loader:
        @staticmethod
        def create_module(spec):
            return None

        @staticmethod
        def exec_module(module):
            _, _, _, (start, end), _ = table[module.__spec__.name]
            exec(marshal.loads(read(start, end)), module.__dict__)

    class Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            entry = table.get(name)
            if entry is None:
                return None
            origin, mtime, size, _, is_package = entry
            try:
                st = posix.stat(origin)
            except OSError:
                return None
            if st.st_mtime_ns != mtime or st.st_size != size:
                return None
            spec = ModuleSpec(name, Loader, origin=origin, is_package=is_package)
            spec.has_location = True
            if is_package:
                spec.submodule_search_locations = [origin.rpartition("/")[0]]
            return spec

    sys.meta_path.insert(0, Finder)


_bundled({bundle!r})
del _bundled
from berth.runtime.main import entry  # noqa: E402
entry()
"""

# Where the interpreter copy looks for modules (a ._pth file beside an interpreter replaces
# the search for its prefix and sets sys.path; it also implies -I and no site). The first
# entry is a small directory of berth's own: the interpreter imports `encodings` at every
# start, and finding it among the ~200 entries of the standard library's directory (then
# 125 in encodings/) costs ~0.7 ms a call.
PTH = """lib
{stdlib}/lib-dynload
{stdlib}
"""

# berth's `encodings` package for the interpreter copy. The interpreter looks up UTF-8 at
# start; the standard package builds its whole alias table for that (~0.3 ms a call). This
# one answers UTF-8 from the host's encodings.utf_8 and hands any other name to the host's
# package code, loaded on first use. Its __path__ ends with the host's encodings directory,
# so every codec module is the host's own.
ENCODINGS = """\"\"\"Codec search for berth-oci's interpreter (see berth.runtime.install).\"\"\"
import codecs

__path__.append({host!r})
_host_search = None


def _search(name):
    global _host_search
    if name.lower().replace("-", "_") in ("utf_8", "utf8"):
        from encodings import utf_8
        return utf_8.getregentry()
    if _host_search is None:
        namespace = {{"__name__": "encodings", "__package__": "encodings",
                     "__path__": __path__}}
        path = {host!r} + "/__init__.py"
        with open(path, "rb") as f:
            exec(compile(f.read(), path, "exec"), namespace)
        _host_search = namespace["search_function"]
    return _host_search(name)


codecs.register(_search)
"""

# -IS: no `site` (~4.5 ms a call) and no user or environment paths; the installer's
# site-packages (the venv's, Debian's dist-packages: isal, zstandard) come last, explicitly.
CLI_LAUNCHER = """#!{python} -IS
# berth launcher, written by `python -m berth.runtime.install`: commands run in a child
# of a warm fork server when one answers at the socket below (berth/cli/launch.py).
import sys
sys.path.insert(0, {src!r})
sys.path += {packages!r}
from berth.cli.launch import launch
launch({sock!r}, {src!r})
"""

# The CLI's fork servers, one per source tree.
CLI_SOCKETS = "/run/berth"


def install_cli(prefix, src, python=None):
    """The `berth` command, on the interpreter that runs the installer (the project's venv,
    which holds the optional fast codecs)."""
    path = os.path.join(prefix, "bin", "berth")
    tmp = path + ".tmp"
    packages = [p for p in sys.path if p.rstrip("/").endswith(("site-packages",
                                                                "dist-packages"))]
    with open(tmp, "w") as f:
        f.write(CLI_LAUNCHER.format(python=python or sys.executable, src=src,
                                    packages=packages, sock=cli_socket(src)))
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)
    return path


def cli_socket(src):
    """Where the fork server of the CLI from ``src`` listens."""
    import zlib

    return os.path.join(CLI_SOCKETS, f"cli-{zlib.crc32(src.encode()):08x}.sock")


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
    bundle = os.path.join(libdir, "berth-oci.bundle")
    write_bundle(src, bundle)
    bindir = os.path.join(prefix, "bin")
    os.makedirs(bindir, exist_ok=True)
    boot = _write_lib(interpreter, libdir, src, bundle)
    launcher = os.path.join(bindir, "berth-oci")
    tmp = launcher + ".tmp"
    with open(tmp, "w") as f:
        f.write(LAUNCHER.format(interpreter=interpreter, boot=boot))
    os.chmod(tmp, 0o755)
    os.rename(tmp, launcher)
    install_cli(prefix, src)
    # Compile everything else too, so no call pays for it (or writes beside the code).
    import compileall
    compileall.compile_dir(os.path.join(src, "berth"), quiet=1)
    return launcher


def _write_lib(interpreter, libdir, src, bundle):
    """The interpreter copy's ._pth file and lib/ (encodings, the launcher's compiled body).

    The modules are compiled by the interpreter copy itself, so their magic matches it."""
    import subprocess

    stdlib = subprocess.run(
        [interpreter, "-IS", "-c", "import sys; print(sys.path[-1] if sys.path[-1].endswith"
         "('lib-dynload') else [p for p in sys.path if p.endswith('lib-dynload')][0])"],
        check=True, capture_output=True, text=True).stdout.strip().rpartition("/")[0]
    lib = os.path.join(libdir, "lib")
    staging = lib + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "encodings"))
    sources = {"berth_oci_boot": BOOT.format(src=src, bundle=bundle)}
    host = os.path.join(stdlib, "encodings")
    sources["encodings/__init__"] = ENCODINGS.format(host=host)
    # The host's UTF-8 codec, compiled here too: found beside our __init__, the host's
    # 125-entry encodings directory is never listed.
    with open(os.path.join(host, "utf_8.py"), encoding="utf-8") as f:
        sources["encodings/utf_8"] = f.read()
    for name, text in sources.items():
        with open(os.path.join(staging, name + ".py"), "w", encoding="utf-8") as f:
            f.write(text)
    # Sourceless .pyc files beside nothing: the import system reads them without stat-ing
    # a source.
    compile_them = ("import py_compile, sys\nfor p in sys.argv[1:]:\n"
                    "    py_compile.compile(p, cfile=p + 'c', doraise=True,\n"
                    "                       dfile=p.replace('/lib.tmp/', '/lib/'))\n")
    paths = [os.path.join(staging, name + ".py") for name in sources]
    subprocess.run([interpreter, "-IS", "-c", compile_them, *paths], check=True)
    for p in paths:
        os.unlink(p)
    old = lib + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(lib):
        os.rename(lib, old)
    os.rename(staging, lib)
    shutil.rmtree(old, ignore_errors=True)
    pth = interpreter + "._pth"
    with open(pth + ".tmp", "w") as f:
        f.write(PTH.format(stdlib=stdlib))
    os.rename(pth + ".tmp", pth)
    return os.path.join(lib, "berth_oci_boot.pyc")


def write_bundle(src, path):
    """One file with the compiled modules of BUNDLED, for the launcher.

    Layout: the table's length (8 bytes, little-endian), the table (marshal: {module:
    (source path, mtime_ns, size, (start, end) of its code in the blob, is package)}), then
    the blob of marshalled code objects, so a call unmarshals only the modules it imports.
    """
    import marshal

    table = {}
    for package in BUNDLED:
        base = os.path.join(src, *package.split("."))
        if os.path.isfile(base + ".py"):
            _add(table, package, base + ".py", False)
            continue
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            rel = os.path.relpath(folder, src).replace(os.sep, ".")
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                if name == "__init__.py":
                    _add(table, rel, os.path.join(folder, name), True)
                else:
                    _add(table, f"{rel}.{name[:-3]}", os.path.join(folder, name), False)
            if folder == base and package == "berth":
                dirs[:] = []  # the top package alone; its subpackages are listed themselves
    blob = bytearray()
    index = {}
    for name, (origin, mtime, size, code, is_package) in table.items():
        index[name] = (origin, mtime, size, (len(blob), len(blob) + len(code)), is_package)
        blob += code
    head = marshal.dumps(index)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + bytes(blob))
    os.rename(tmp, path)


def _add(table, name, origin, is_package):
    import marshal

    with open(origin, "rb") as f:
        source = f.read()
    st = os.stat(origin)
    code = compile(source, origin, "exec", dont_inherit=True)
    table[name] = (origin, st.st_mtime_ns, st.st_size, marshal.dumps(code), is_package)


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
