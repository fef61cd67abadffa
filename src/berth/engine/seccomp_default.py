"""berth's default seccomp profile, and Docker's JSON profile format turned into OCI's.

``profile(caps)`` is an allowlist: every syscall not named returns EPERM. It lets through
what ordinary programs use (files, processes, memory, time, signals, sockets, System V and
POSIX IPC) and keeps out what reaches past the container: the kernel keyring, mounting,
loading modules or kernels, BPF, perf, ptrace, rebooting, swap, new namespaces. A container
granted a capability gets the syscalls that capability is about (``--cap-add SYS_ADMIN``
brings mount, unshare, setns...), as Docker's profile does. clone() is allowed only without
namespace flags unless CAP_SYS_ADMIN is held, and clone3() - whose flags live in memory a
filter cannot read - fails with ENOSYS so libc falls back to clone().

``from_docker(raw, caps)`` reads a profile in Docker's format (``--security-opt
seccomp=file.json``): ``names``/``name``, ``includes``/``excludes`` by capability, arch and
kernel version, ``archMap``, ``defaultErrnoRet``.
"""

import os

from berth.errors import InvalidArgument

_EPERM = 1
_ENOSYS = 38
_AF_VSOCK = 40
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
# | CLONE_NEWNET: any of these makes a namespace.
_CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
# personality(2) values a program may ask for: Linux, its 32-bit address limit, UNAME26
# (old software checking the kernel version), both, and 0xffffffff which only queries.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_FILES = """
    access faccessat faccessat2 chdir fchdir getcwd chmod fchmod fchmodat fchmodat2
    chown chown32 fchown fchown32 fchownat lchown lchown32 umask
    open openat openat2 creat close close_range dup dup2 dup3 fcntl fcntl64 flock
    read readv pread64 preadv preadv2 write writev pwrite64 pwritev pwritev2
    lseek _llseek sendfile sendfile64 splice tee vmsplice copy_file_range readahead
    fadvise64 fadvise64_64 arm_fadvise64_64 fallocate ftruncate ftruncate64 truncate truncate64
    fsync fdatasync sync syncfs sync_file_range sync_file_range2 arm_sync_file_range
    stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64
    fstatfs fstatfs64 getdents getdents64
    mkdir mkdirat mknod mknodat rmdir rename renameat renameat2 link linkat unlink unlinkat
    symlink symlinkat readlink readlinkat utime utimes utimensat utimensat_time64 futimesat
    getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr flistxattr
    removexattr lremovexattr fremovexattr
    inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
    ioctl pipe pipe2 memfd_create
    landlock_create_ruleset landlock_add_rule landlock_restrict_self
"""

_POLLING = """
    select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait
    epoll_pwait2 eventfd eventfd2 signalfd signalfd4
    timerfd_create timerfd_settime timerfd_settime64 timerfd_gettime timerfd_gettime64
"""

_PROCESSES = """
    execve execveat fork vfork exit exit_group wait4 waitid waitpid
    getpid getppid gettid getpgid getpgrp getsid setpgid setsid
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
    getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
    setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
    setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid setfsgid32
    setgroups setgroups32 capget capset prctl arch_prctl seccomp
    getrlimit ugetrlimit setrlimit prlimit64 getrusage getpriority setpriority
    ioprio_get ioprio_set
    sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr
    sched_getparam sched_setparam sched_getscheduler sched_setscheduler
    sched_get_priority_max sched_get_priority_min
    sched_rr_get_interval sched_rr_get_interval_time64
    set_tid_address set_robust_list get_robust_list rseq set_thread_area get_thread_area
    set_tls futex futex_time64 futex_waitv membarrier restart_syscall
    uname sysinfo getcpu pidfd_open pidfd_send_signal
    breakpoint cacheflush riscv_flush_icache
"""

_MEMORY = """
    brk mmap mmap2 munmap mremap mprotect madvise mincore msync remap_file_pages
    mlock mlock2 mlockall munlock munlockall pkey_alloc pkey_free pkey_mprotect
"""

_TIME = """
    time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
    clock_nanosleep clock_nanosleep_time64 nanosleep clock_adjtime clock_adjtime64 adjtimex
    alarm getitimer setitimer times
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
    timer_settime timer_settime64
"""

_SIGNALS = """
    kill tkill tgkill pause rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
    sigaction sigaltstack signal sigpending sigprocmask sigreturn sigsuspend
"""

_SOCKETS = """
    socketpair bind connect listen accept accept4 shutdown getsockname getpeername
    getsockopt setsockopt send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg
    recvmmsg_time64 socketcall
"""

_IPC = """
    ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
    shmget shmat shmdt shmctl
    mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
    mq_timedreceive_time64 mq_notify mq_getsetattr
"""

_ALWAYS = tuple(" ".join((_FILES, _POLLING, _PROCESSES, _MEMORY, _TIME, _SIGNALS, _SOCKETS,
                          _IPC)).split())

# What holding a capability adds. Left out of every list, so always EPERM: the kernel keyring
# (keyctl add_key request_key), swapon/swapoff, kexec_load/kexec_file_load, userfaultfd,
# io_uring (a second path around this filter), and the obsolete calls nobody needs.
_BY_CAP = {
    "CAP_SYS_ADMIN": """
        mount umount umount2 mount_setattr move_mount open_tree fsopen fsconfig fsmount fspick
        unshare setns sethostname setdomainname quotactl quotactl_fd name_to_handle_at
        fanotify_init lookup_dcookie bpf perf_event_open syslog pivot_root
    """,
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "init_module finit_module delete_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "ptrace kcmp pidfd_getfd process_vm_readv process_vm_writev "
                      "process_madvise",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "mbind get_mempolicy set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
}

# uname -m -> the SCMP_ARCH_* list a filter covers (the native ABI and its compat ones).
_ARCHES = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "armv7l": ("SCMP_ARCH_ARM",),
    "i686": ("SCMP_ARCH_X86",),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}

# uname -m -> Go's GOARCH, the names Docker's profiles use in includes/excludes "arches".
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def _machine(machine):
    return machine or os.uname().machine


def profile(caps=(), machine=None):
    """The default profile (OCI ``linux.seccomp``) for a container holding ``caps``."""
    machine = _machine(machine)
    caps = set(caps)
    allow = list(_ALWAYS)
    for cap, names in _BY_CAP.items():
        if cap in caps:
            allow.extend(n for n in names.split() if n not in allow)
    rules = [{"names": allow, "action": "SCMP_ACT_ALLOW"}]
    rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_NE"}]})
    for value in _PERSONALITIES:
        rules.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
    if "CAP_SYS_ADMIN" in caps:
        rules.append({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"})
    else:
        # s390's clone takes the flags second.
        index = 1 if machine.startswith("s390") else 0
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": index, "value": _CLONE_NS_FLAGS, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": _EPERM,
        "architectures": list(_ARCHES.get(machine, ())),
        "syscalls": rules,
    }


# ---------------------------------------------------------------- Docker's format

def from_docker(raw, caps=(), machine=None, kernel=None):
    """An OCI ``linux.seccomp`` from a Docker-format profile (a parsed JSON object)."""
    if not isinstance(raw, dict):
        raise InvalidArgument("decoding seccomp profile failed: the profile must be an object")
    machine = _machine(machine)
    goarch = _GOARCH.get(machine, machine)
    kernel = _kernel_version(kernel)
    caps = set(caps)
    out = {"defaultAction": _text(raw, "defaultAction")}
    if raw.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = raw["defaultErrnoRet"]
    archs = list(raw.get("architectures") or ())
    arch_map = raw.get("archMap") or ()
    if archs and arch_map:
        raise InvalidArgument("both 'architectures' and 'archMap' are specified in the seccomp "
                              "profile, use either 'architectures' or 'archMap'")
    native = _ARCHES.get(machine, ("",))[0]
    for entry in arch_map:
        if entry.get("architecture") == native:
            archs.append(native)
            archs.extend(entry.get("subArchitectures") or ())
    if archs:
        out["architectures"] = archs
    for key in ("listenerPath", "listenerMetadata"):
        if raw.get(key):
            out[key] = raw[key]
    if raw.get("flags"):
        out["flags"] = list(raw["flags"])
    rules = []
    for i, call in enumerate(raw.get("syscalls") or ()):
        where = f"seccomp profile syscalls[{i}]"
        if call.get("name") and call.get("names"):
            raise InvalidArgument(f"{where}: use either 'name' or 'names'")
        if not _applies(call, caps, goarch, kernel):
            continue
        names = list(call.get("names") or ()) or ([call["name"]] if call.get("name") else [])
        if not names:
            continue
        rule = {"names": names, "action": _text(call, "action", where)}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        args = []
        for arg in call.get("args") or ():
            one = {"index": arg.get("index", 0), "value": arg.get("value", 0),
                   "op": arg.get("op", "")}
            if arg.get("valueTwo"):
                one["valueTwo"] = arg["valueTwo"]
            args.append(one)
        if args:
            rule["args"] = args
        rules.append(rule)
    out["syscalls"] = rules
    return out


def _text(raw, key, where="seccomp profile"):
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{where}: {key} is required")
    return value


def _applies(call, caps, goarch, kernel):
    inc = call.get("includes") or {}
    exc = call.get("excludes") or {}
    if goarch in (exc.get("arches") or ()):
        return False
    if any(c in caps for c in exc.get("caps") or ()):
        return False
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("minKernel") and kernel < _parse_kernel(inc["minKernel"]):
        return False
    return True


def _parse_kernel(text):
    """(major, minor) of "6.1.0-18-amd64" or "4.8"."""
    numbers = []
    for piece in str(text).split(".")[:2]:
        width = len(piece) - len(piece.lstrip("0123456789"))
        numbers.append(int(piece[:width] or 0))
    return tuple(numbers + [0] * (2 - len(numbers)))


def _kernel_version(kernel):
    return _parse_kernel(kernel if kernel is not None else os.uname().release)
