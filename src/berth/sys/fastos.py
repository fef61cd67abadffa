"""``os`` for berth-oci's hot path, without importing ``os``.

Importing ``os`` costs about 1 ms of every berth-oci call (it builds ``_collections_abc``'s
classes and ``os.environ``), a tenth of a `start` or `delete`. Everything berth-oci calls
is in the C module ``posix`` that ``os`` wraps; this module re-exports it with the few
pure-Python helpers the runtime uses (``path.join`` and friends, ``makedirs``, ``walk``,
``fsencode``). Any other name (``environ`` among them) falls through to the real ``os`` on
first use, so a rare path pays the import and still gets the real thing.

Modules on the runtime's path import it as ``from berth.sys import fastos as os``.
"""

import posix
from posix import *  # noqa: F401,F403  (the names ``os`` itself re-exports)
from posix import _exit  # noqa: F401

import _stat

# posix.environ holds bytes; the str mapping (and putenv on assignment) is os's.
del environ  # noqa: F821

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
sep = "/"
curdir = "."
pardir = ".."
devnull = "/dev/null"
linesep = "\n"


def __getattr__(name):
    import os

    return getattr(os, name)


def getenv(name, default=None):
    """The variable from the environment the process started with (no ``os.environ``)."""
    value = posix.environ.get(name.encode())
    return default if value is None else value.decode("utf-8", "surrogateescape")


def fsencode(value):
    if isinstance(value, bytes):
        return value
    return posix.fspath(value).encode("utf-8", "surrogateescape")


# -- os.path, for str paths --------------------------------------------------------------

def join(a, *parts):
    out = a
    for p in parts:
        if p.startswith("/"):
            out = p
        elif not out or out.endswith("/"):
            out += p
        else:
            out += "/" + p
    return out


def split(p):
    i = p.rfind("/") + 1
    head, tail = p[:i], p[i:]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head, tail


def dirname(p):
    return split(p)[0]


def basename(p):
    return p[p.rfind("/") + 1:]


def isabs(p):
    return p.startswith("/")


def exists(p):
    try:
        posix.stat(p)
    except (OSError, ValueError):
        return False
    return True


def _mode(p, follow=True):
    try:
        return posix.stat(p).st_mode if follow else posix.lstat(p).st_mode
    except (OSError, ValueError):
        return 0


def isdir(p):
    return _stat.S_ISDIR(_mode(p))


def isfile(p):
    return _stat.S_ISREG(_mode(p))


def islink(p):
    return _stat.S_ISLNK(_mode(p, follow=False))


def normpath(p):
    if not p:
        return "."
    initial = 2 if p.startswith("//") and not p.startswith("///") else int(p.startswith("/"))
    parts = []
    for comp in p.split("/"):
        if comp in ("", "."):
            continue
        if comp != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(comp)
        elif parts:
            parts.pop()
    out = "/" * initial + "/".join(parts)
    return out or "."


def abspath(p):
    return normpath(p if p.startswith("/") else join(posix.getcwd(), p))


def realpath(p):
    """``p`` absolute with every symlink resolved (missing parts are kept as written)."""
    done = "/"
    rest = abspath(p).split("/")[::-1]
    links = 0
    while rest:
        name = rest.pop()
        if name in ("", "."):
            continue
        if name == "..":
            done = dirname(done)
            continue
        candidate = join(done, name)
        try:
            is_link = _stat.S_ISLNK(posix.lstat(candidate).st_mode)
        except OSError:
            is_link = False
        if not is_link:
            done = candidate
            continue
        links += 1
        if links > 40:  # a loop: give up resolving, as posixpath does
            return normpath(join(candidate, *rest[::-1]))
        target = posix.readlink(candidate)
        if target.startswith("/"):
            done = "/"
        rest.extend(target.split("/")[::-1])
    return done


def relpath(p, start=None):
    base, target = abspath(start or "."), abspath(p)
    if target == base:
        return "."
    if target.startswith(base.rstrip("/") + "/"):
        return target[len(base.rstrip("/")) + 1:]
    import posixpath  # climbing out of ``start``: rare, os's own rules

    return posixpath.relpath(p, start)


# ``os.path.join`` and the others: this module is its own ``path``.
path = posix.__class__(__name__ + ".path")
for _name in ("join", "split", "dirname", "basename", "isabs", "exists", "isdir", "isfile",
              "islink", "normpath", "abspath", "realpath", "relpath"):
    setattr(path, _name, globals()[_name])
path.sep = sep
del _name


def makedirs(name, mode=0o777, exist_ok=False):
    head, tail = split(name)
    if not tail:
        head, tail = split(head)
    if head and tail and not exists(head):
        try:
            makedirs(head, exist_ok=exist_ok)
        except FileExistsError:
            pass
    try:
        posix.mkdir(name, mode)
    except OSError:
        if not exist_ok or not isdir(name):
            raise


def walk(top, topdown=True):
    """Directories under ``top`` as os.walk yields them (symlinks are not followed)."""
    try:
        entries = list(posix.scandir(top))
    except OSError:
        return
    dirs, files = [], []
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        (dirs if is_dir else files).append(entry.name)
    if topdown:
        yield top, dirs, files
    for d in dirs:
        yield from walk(join(top, d), topdown)
    if not topdown:
        yield top, dirs, files
