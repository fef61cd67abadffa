"""ctypes bindings to libseccomp.so.2: the thin layer under berth.runtime.seccomp.

Each wrapper calls one libseccomp function, turns its negative-errno return into an ``OSError``
whose text names the function and the object (syscall, architecture, attribute), and decides
nothing. The library is opened on first use, so importing this module costs only ``ctypes``;
tests may swap the handle with ``set_library``.

The constants are libseccomp's ABI values from <seccomp.h> (2.5.x).
"""

import ctypes
from berth.sys import fastos as os

# ---- actions (uint32 SCMP_ACT_*); ERRNO and TRACE carry 16 bits of data ----
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
ACT_DATA_MASK = 0x0000FFFF

# ---- filter attributes (enum scmp_filter_attr) ----
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_API_TSKIP = 5
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8
ATTR_API_SYSRAWRC = 9

# ---- comparison operators (enum scmp_compare) ----
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_EQ = 4
CMP_GE = 5
CMP_GT = 6
CMP_MASKED_EQ = 7

# seccomp_syscall_resolve_name's answer for a name it does not know.
NR_ERROR = -1

LIBRARY_NAME = "libseccomp.so.2"


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib = None


def _open():
    lib = ctypes.CDLL(LIBRARY_NAME)
    vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    for name, restype, argtypes in (
        ("seccomp_init", vp, (u32,)),
        ("seccomp_release", None, (vp,)),
        ("seccomp_arch_resolve_name", u32, (ctypes.c_char_p,)),
        ("seccomp_arch_native", u32, ()),
        ("seccomp_arch_add", cint, (vp, u32)),
        ("seccomp_attr_set", cint, (vp, cint, u32)),
        ("seccomp_syscall_resolve_name", cint, (ctypes.c_char_p,)),
        ("seccomp_rule_add_array", cint, (vp, u32, cint, ctypes.c_uint,
                                          ctypes.POINTER(ArgCmp))),
        ("seccomp_load", cint, (vp,)),
        ("seccomp_export_bpf", cint, (vp, cint)),
        ("seccomp_api_get", ctypes.c_uint, ()),
        ("seccomp_version", ctypes.POINTER(_Version), ()),
    ):
        func = getattr(lib, name)
        func.restype = restype
        func.argtypes = argtypes
    return lib


def library():
    """The libseccomp handle, opened on first use; OSError when the library is missing."""
    global _lib
    if _lib is None:
        _lib = _open()
    return _lib


def set_library(lib):
    """Swap the libseccomp handle (for tests); returns the previous one."""
    global _lib
    old, _lib = _lib, lib
    return old


def _check(rc, what):
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


def version():
    """(major, minor, micro) of the loaded libseccomp."""
    v = library().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def api_level():
    """libseccomp's API level: what the library and the running kernel both support."""
    return library().seccomp_api_get()


def init(default_action):
    """seccomp_init: a new filter context (an opaque pointer value)."""
    ctx = library().seccomp_init(default_action)
    if not ctx:
        # libseccomp reports no errno here; a rejected action is the only documented cause.
        raise OSError(22, f"seccomp_init {default_action:#x}: invalid or unsupported action")
    return ctx


def release(ctx):
    library().seccomp_release(ctx)


def arch_resolve_name(name):
    """The SCMP_ARCH_* token of a libseccomp arch name ("x86_64"), or 0 when unknown."""
    return library().seccomp_arch_resolve_name(name.encode())


def arch_native():
    return library().seccomp_arch_native()


def arch_add(ctx, token):
    _check(library().seccomp_arch_add(ctx, token), f"seccomp_arch_add {token:#x}")


def attr_set(ctx, attr, value):
    _check(library().seccomp_attr_set(ctx, attr, value), f"seccomp_attr_set {attr}={value}")


def syscall_resolve_name(name):
    """The native syscall number of ``name`` (negative pseudo-numbers for calls that exist
    only on other architectures), or NR_ERROR when libseccomp does not know the name."""
    return library().seccomp_syscall_resolve_name(name.encode())


def rule_add(ctx, action, nr, conditions=(), name=None):
    """seccomp_rule_add_array; ``conditions`` are (arg, op, datum_a, datum_b) tuples."""
    count = len(conditions)
    array = (ArgCmp * max(count, 1))(*(ArgCmp(*c) for c in conditions))
    _check(library().seccomp_rule_add_array(ctx, action, nr, count, array),
           f"seccomp_rule_add {name or nr}")


def load(ctx):
    """seccomp_load: install the filter on the calling thread (or all, with CTL_TSYNC)."""
    _check(library().seccomp_load(ctx), "seccomp_load")


def export_bpf(ctx):
    """The filter's BPF program as bytes, written by libseccomp to a memfd and read back."""
    fd = os.memfd_create("berth-seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _check(library().seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        size = os.lseek(fd, 0, os.SEEK_CUR)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
