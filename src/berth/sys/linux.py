"""The Linux system calls the standard library lacks, through the C library (``_ffi``).

Only this package calls libc. Every wrapper retries on EINTR, raises ``OSError`` whose text
names the operation and the path, and decides nothing. ``LIBC`` is looked up once and may be
replaced by tests (``set_libc``) with an object that records calls.
"""

from berth.sys import fastos as os

from berth.sys import _ffi as ctypes

_errno_location = None


def _load():
    lib = ctypes.Library(None)
    lib.syscall.restype = ctypes.c_long
    lib.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                          ctypes.c_ulong, ctypes.c_char_p)
    lib.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    lib.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                          ctypes.c_ulong)
    return lib


LIBC = _load()


def set_libc(lib):
    """Swap the C library handle (for tests); returns the previous one."""
    global LIBC
    old, LIBC = LIBC, lib
    return old


# x86_64 and aarch64 numbers of the calls glibc 2.36 does not wrap.
if os.uname().machine == "aarch64":
    _NR = {"seccomp": 277, "pivot_root": 41, "openat2": 437, "close_range": 436, "keyctl": 219,
           "capget": 90, "capset": 91, "ioprio_set": 30, "pidfd_open": 434,
           "pidfd_send_signal": 424, "mount_setattr": 442, "setns": 268,
           "rt_sigaction": 134}
else:
    _NR = {"seccomp": 317, "pivot_root": 155, "openat2": 437, "close_range": 436, "keyctl": 250,
           "capget": 125, "capset": 126, "ioprio_set": 251, "pidfd_open": 434,
           "pidfd_send_signal": 424, "mount_setattr": 442, "setns": 308,
           "rt_sigaction": 13}


def _check(result, what, path=None):
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _retry(call, what, path=None):
    while True:
        result = call()
        if result != -1 or ctypes.get_errno() != 4:  # EINTR
            return _check(result, what, path)


def _b(value):
    if value is None:
        return None
    return os.fsencode(value)


# ---------------------------------------------------------------- mounts

def mount(source, target, fstype, flags=0, data=None):
    _retry(lambda: LIBC.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {source or fstype or ''} on {target}", target)


def umount(target, flags=0):
    _retry(lambda: LIBC.umount2(_b(target), flags), f"umount {target}", target)


def default_signal(signum):
    """rt_sigaction(2) straight to SIG_DFL: the C library refuses to touch its own real-time
    signals (32, 33), which glibc's posix_spawn leaves ignored in a child, and an ignored
    signal stays ignored across execve."""
    act = _KernelSigaction()  # all zero: SIG_DFL, no flags, an empty mask
    _retry(lambda: LIBC.syscall(_NR["rt_sigaction"], signum, ctypes.byref(act), None, 8),
           f"rt_sigaction {signum}")


class _KernelSigaction(ctypes.Structure):
    # The kernel's struct sigaction on x86_64 and aarch64 (not the C library's).
    _fields_ = [("handler", ctypes.c_ulong), ("flags", ctypes.c_ulong),
                ("restorer", ctypes.c_ulong), ("mask", ctypes.c_uint64)]


def pivot_root(new_root, put_old):
    _retry(lambda: LIBC.syscall(_NR["pivot_root"], _b(new_root), _b(put_old)),
           f"pivot_root {new_root}", new_root)


# The new mount API (Linux 5.2+); the same numbers on every architecture.
_NR_MOVE_MOUNT, _NR_FSOPEN, _NR_FSCONFIG, _NR_FSMOUNT = 429, 430, 431, 432
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6


def mount_fs(fstype, source, target, options, readonly=False):
    """Mount through fsopen/fsconfig/fsmount/move_mount, one fsconfig per option.

    ``options`` are "key=value" or "flag" strings; unlike mount(2)'s single page of data
    they have no overall size limit (overlayfs' "lowerdir+=" needs this path).
    """
    what = f"mount {fstype} on {target}"
    fs = _retry(lambda: LIBC.syscall(_NR_FSOPEN, _b(fstype), 1), f"{what}: fsopen", target)
    try:
        pairs = [opt.partition("=") for opt in options]
        if source:
            pairs.append(("source", "=", source))
        for key, eq, value in pairs:
            cmd, val = (_FSCONFIG_SET_STRING, _b(value)) if eq else (_FSCONFIG_SET_FLAG, None)
            _retry(lambda: LIBC.syscall(_NR_FSCONFIG, fs, cmd, _b(key), val, 0),
                   f"{what}: option {key}", target)
        _retry(lambda: LIBC.syscall(_NR_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
               f"{what}: create", target)
        mnt = _retry(lambda: LIBC.syscall(_NR_FSMOUNT, fs, 1, 1 if readonly else 0),
                     f"{what}: fsmount", target)
    finally:
        os.close(fs)
    try:
        _retry(lambda: LIBC.syscall(_NR_MOVE_MOUNT, mnt, b"", -100, _b(target), 4),
               f"{what}: move_mount", target)
    finally:
        os.close(mnt)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


def openat2(dirfd, path, flags, mode=0, resolve=0):
    """openat2(2): open ``path`` below ``dirfd`` with RESOLVE_* rules; returns an fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _retry(lambda: LIBC.syscall(_NR["openat2"], dirfd, _b(path), ctypes.byref(how),
                                       ctypes.sizeof(how)),
                  f"open {path}", path)


# ---------------------------------------------------------------- namespaces, identity

def unshare(flags):
    _retry(lambda: LIBC.unshare(flags), f"unshare {flags:#x}")


def setns(fd, nstype=0, path=None):
    _retry(lambda: LIBC.setns(fd, nstype), f"setns {path or fd}", path)


def sethostname(name):
    raw = name.encode()
    _retry(lambda: LIBC.sethostname(raw, len(raw)), f"sethostname {name}")


def setdomainname(name):
    raw = name.encode()
    _retry(lambda: LIBC.setdomainname(raw, len(raw)), f"setdomainname {name}")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    return _retry(lambda: LIBC.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def personality(persona):
    return _retry(lambda: LIBC.personality(ctypes.c_ulong(persona)), "personality")


def join_session_keyring(name=None):
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): a fresh session keyring for the container."""
    return _retry(lambda: LIBC.syscall(_NR["keyctl"], 1, _b(name)), "keyctl join")


def close_range(first, last=0xFFFFFFFF, flags=0):
    _retry(lambda: LIBC.syscall(_NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(last),
                                ctypes.c_uint(flags)), "close_range")


CLOSE_RANGE_CLOEXEC = 4


def ioprio_set(which, who, ioprio):
    _retry(lambda: LIBC.syscall(_NR["ioprio_set"], which, who, ioprio), "ioprio_set")


def pidfd_open(pid):
    return _retry(lambda: LIBC.syscall(_NR["pidfd_open"], pid, 0), f"pidfd_open {pid}")


def pidfd_send_signal(pidfd, sig):
    _retry(lambda: LIBC.syscall(_NR["pidfd_send_signal"], pidfd, sig, None, 0),
           "pidfd_send_signal")


# ---------------------------------------------------------------- capabilities

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget(pid=0):
    """(effective, permitted, inheritable) as 64-bit masks."""
    head = _CapHeader(_CAP_V3, pid)
    data = (_CapData * 2)()
    _retry(lambda: LIBC.syscall(_NR["capget"], ctypes.byref(head), data), "capget")
    return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32)
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective, permitted, inheritable):
    head = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _retry(lambda: LIBC.syscall(_NR["capset"], ctypes.byref(head), data), "capset")


# ---------------------------------------------------------------- seccomp

class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint), ("filter", ctypes.c_char_p)]


SECCOMP_SET_MODE_FILTER = 1


def seccomp_set_filter(program, flags=0):
    """seccomp(SECCOMP_SET_MODE_FILTER): install a BPF program (struct sock_filter array)."""
    if len(program) % 8:
        raise OSError(22, "seccomp: a BPF program is a whole number of 8-byte instructions")
    prog = _SockFprog(len(program) // 8, bytes(program))
    _retry(lambda: LIBC.syscall(_NR["seccomp"], SECCOMP_SET_MODE_FILTER, flags,
                                ctypes.byref(prog)), "seccomp")


# ---------------------------------------------------------------- resource limits

class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


RLIM_INFINITY = (1 << 64) - 1


def setrlimit(resource, soft, hard):
    """prlimit(2) on this process; RLIM_INFINITY for no limit."""
    new = _Rlimit(soft, hard)
    _retry(lambda: LIBC.prlimit(0, resource, ctypes.byref(new), None),
           f"setrlimit {resource}")
