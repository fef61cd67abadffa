"""Compiled seccomp programs, kept by what they were compiled from.

libseccomp takes 10-20 ms here to compile Docker's default profile (364 syscall names), and
`run` waits for the program before the init may exec; `exec` (every healthcheck probe)
compiled it again each time. Engines give most containers the same profile, so the
runtime keeps each program it compiles under ``<root>/@seccomp-cache/`` (``@`` cannot be in a
container id) and loads it back when the same profile comes again (~0.1 ms).

The key is a SHA-256 over everything the program depends on: the config's ``linux.seccomp``
as JSON, the kernel release (libseccomp adapts to the kernel's seccomp API level), the
libseccomp library file and berth's compiler module (size and mtime of each). A file that
does not parse is ignored and replaced. Entries are written by rename; being a cache, not
synced.
"""

import _sha256

from berth.runtime.filter import Program
from berth.spec import jsonio
from berth.sys import fastos as os

DIR = "@seccomp-cache"


def program(root, raw, model):
    """The Program for ``raw`` (the config's linux.seccomp dict; ``model`` its parsed form),
    from the cache or compiled now and kept."""
    key = cache_key(raw)
    found = load(root, key)
    if found is not None:
        return found
    from berth.runtime.seccomp import compile_program

    compiled = compile_program(model)
    store(root, key, compiled)
    return compiled


def cache_key(raw):
    h = _sha256.sha256(b"berth-seccomp-1\0")
    h.update(os.uname().release.encode() + b"\0")
    for path in (_libseccomp(), _compiler()):
        try:
            st = os.stat(path)
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\0".encode())
        except (OSError, TypeError):
            h.update(b"-\0")
    h.update(jsonio.dumps(raw).encode())
    return h.hexdigest()


def load(root, key):
    try:
        with open(os.path.join(root, DIR, key), "rb") as f:
            text = f.read().decode()
        found = Program.from_text(text)
    except (OSError, ValueError):
        return None
    return found if found.bpf and len(found.bpf) % 8 == 0 else None


def store(root, key, compiled):
    directory = os.path.join(root, DIR)
    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        tmp = os.path.join(directory, f".{key}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, compiled.to_text().encode())
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(directory, key))
    except OSError:
        pass  # a cache: compiling again next time is the only cost


def _libseccomp():
    import sys

    arch = getattr(sys.implementation, "_multiarch", "")
    for base in (f"/usr/lib/{arch}", f"/lib/{arch}", "/usr/lib64", "/usr/lib"):
        path = os.path.join(base, "libseccomp.so.2")
        if os.path.exists(path):
            return os.path.realpath(path)
    return None


def _compiler():
    return os.path.join(os.path.dirname(__file__), "seccomp.py")
