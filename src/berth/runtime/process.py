"""Turning the current process into the container's process: the steps shared by the init
and by `exec`, from rlimits to execve.

Order matters and follows the kernel's rules: oom_score_adj and rlimits while still
privileged; the bounding set is dropped while CAP_SETPCAP is held; the uid changes with
KEEPCAPS so the permitted set survives; then the capability sets, ambient last; no_new_privs
and the seccomp filter go last, so the runtime's own calls are never filtered.
"""

from berth.sys import fastos as os

from berth.errors import InvalidArgument, NotFound, PermissionDenied
from berth.spec import caps as _caps
from berth.sys import consts as C
from berth.sys import linux

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

_INFINITY = 2**64 - 1


def set_oom_score_adj(value):
    if value is None:
        return
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def set_rlimits(rlimits):
    for r in rlimits:
        number = RLIMITS.get(r.type)
        if number is None:
            raise InvalidArgument(f"process.rlimits: unknown rlimit {r.type}")
        try:
            linux.setrlimit(number, min(r.soft, _INFINITY), min(r.hard, _INFINITY))
        except OSError as err:
            raise InvalidArgument(f"process.rlimits: cannot set {r.type} to {r.soft}/{r.hard}: "
                                  f"{err.strerror}") from None


_IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                   "SCHED_IDLE": 5}


def set_scheduling(process):
    """process.ioPriority, process.scheduler and process.execCPUAffinity."""
    io = process.io_priority
    if io:
        klass = _IOPRIO_CLASSES.get(io.get("class"))
        level = io.get("priority", 0)
        if klass is None:
            raise InvalidArgument(f"process.ioPriority.class: unknown class {io.get('class')}")
        if not isinstance(level, int) or not 0 <= level <= 7:
            raise InvalidArgument("process.ioPriority.priority: must be 0 to 7")
        linux.ioprio_set(1, 0, (klass << 13) | level)  # IOPRIO_WHO_PROCESS, this process
    sched = process.scheduler
    if sched:
        name = sched.get("policy", "")
        policy = _SCHED_POLICIES.get(name)
        if policy is None:
            raise InvalidArgument(f"process.scheduler.policy: {name or 'missing'} is not "
                                  f"supported (SCHED_OTHER, SCHED_FIFO, SCHED_RR, "
                                  f"SCHED_BATCH, SCHED_IDLE)")
        try:
            if "nice" in sched:
                os.setpriority(os.PRIO_PROCESS, 0, int(sched["nice"]))
            os.sched_setscheduler(0, policy, os.sched_param(int(sched.get("priority", 0))))
        except OSError as err:
            raise InvalidArgument(f"process.scheduler: cannot set {name}: "
                                  f"{err.strerror}") from None
    affinity = process.exec_cpu_affinity
    if affinity:
        cpus = affinity.get("final") or affinity.get("initial")
        if cpus:
            try:
                os.sched_setaffinity(0, parse_cpus(cpus))
            except (OSError, ValueError) as err:
                raise InvalidArgument(f"process.execCPUAffinity: {cpus!r}: {err}") from None


def parse_cpus(text):
    """The set of CPUs a list like "0-3,5" names."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo > hi:
            raise ValueError(f"bad range {part}")
        out.update(range(lo, hi + 1))
    return out


def set_identity(process):
    """Drop to the configured user and capability sets."""
    user = process.user
    capabilities = process.capabilities
    if capabilities is not None:
        bounding = _mask(capabilities.bounding)
        last = _caps.host_last_cap()
        for cap in range(last + 1):
            if not bounding & (1 << cap):
                linux.prctl(C.PR_CAPBSET_DROP, cap)
    linux.prctl(C.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.additional_gids))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    linux.prctl(C.PR_SET_KEEPCAPS, 0)
    if capabilities is not None:
        linux.capset(_mask(capabilities.effective), _mask(capabilities.permitted),
                     _mask(capabilities.inheritable))
        linux.prctl(C.PR_CAP_AMBIENT, C.PR_CAP_AMBIENT_CLEAR_ALL)
        for name in capabilities.ambient:
            try:
                linux.prctl(C.PR_CAP_AMBIENT, C.PR_CAP_AMBIENT_RAISE, _caps.CAPS[name])
            except OSError:
                # Raising needs the cap in permitted and inheritable; runc ignores the rest.
                pass
    elif user.uid != 0:
        # Without a capabilities object a non-root user keeps nothing, as after a setuid.
        pass


def _mask(names):
    try:
        return _caps.mask(names)
    except KeyError as err:
        raise InvalidArgument(f"process.capabilities: unknown capability {err.args[0]}") from None


def enter_cwd(cwd):
    """chdir to the process's cwd and make sure it is inside the container (CVE-2024-21626)."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        raise NotFound(f"process.cwd: {cwd}: no such directory in the container") from None
    except NotADirectoryError:
        raise InvalidArgument(f"process.cwd: {cwd}: not a directory") from None
    try:
        here = os.getcwd()
    except OSError:
        here = "(unreachable)"
    if not here.startswith("/"):
        raise PermissionDenied(f"process.cwd: {cwd} is outside the container's root")


def env_path(env):
    for item in env:
        if item.startswith("PATH="):
            return item[5:]
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_executable(name, env):
    """Resolve args[0] as execvp would, inside the container; errors read like runc's."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in env_path(env).split(":")]
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o100000:
            if os.access(path, os.X_OK):
                return path
            if "/" in name:
                raise PermissionDenied(f"exec: {name}: permission denied")
        elif "/" in name:
            raise PermissionDenied(f"exec: {name}: is a directory")
    if "/" in name:
        raise NotFound(f'exec: "{name}": stat {name}: no such file or directory')
    raise NotFound(f'exec: "{name}": executable file not found in $PATH')


def close_fds_except(keep, first=3):
    """Close every fd >= ``first`` except those in ``keep``."""
    start = first
    for fd in sorted(k for k in keep if k >= first):
        if fd > start:
            linux.close_range(start, fd - 1)
        start = fd + 1
    linux.close_range(start)


def prepare(process, *, seccomp_filter=None):
    """All of the process's settings short of execve; returns the seccomp step still due.

    The filter loads here when no_new_privs is off (loading it then needs CAP_SYS_ADMIN,
    which is about to go); otherwise the caller loads it right before execve.
    """
    set_oom_score_adj(process.oom_score_adj)
    set_rlimits(process.rlimits)
    set_scheduling(process)
    if process.apparmor_profile:
        with open("/proc/self/attr/apparmor/exec", "w") as f:
            f.write(f"exec {process.apparmor_profile}")
    if process.selinux_label:
        with open("/proc/self/attr/exec", "w") as f:
            f.write(process.selinux_label)
    if seccomp_filter is not None and not process.no_new_privileges:
        seccomp_filter.load()
        seccomp_filter = None
    set_identity(process)
    if process.no_new_privileges:
        linux.prctl(C.PR_SET_NO_NEW_PRIVS, 1)
    if process.user.umask is not None:
        os.umask(process.user.umask)
    return seccomp_filter


def default_signals():
    """Every signal back to its default action and none blocked, as a process expects to
    start: CPython ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
    execve (a container's `yes | head` would then see EPIPE instead of dying quietly).
    Done before the seccomp filter is loaded, which may forbid sigaction."""
    import _signal

    for signum in range(1, _signal.NSIG):
        if signum in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        handler = _signal.getsignal(signum)
        if handler == _signal.SIG_DFL:
            continue
        try:
            if handler is None:  # not Python's: the C library's own (32, 33) or unknown
                linux.default_signal(signum)
            else:
                _signal.signal(signum, _signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def execute(process, executable, seccomp_filter=None):
    """execve the process; never returns on success."""
    default_signals()
    if seccomp_filter is not None:
        seccomp_filter.load()
    env = {}
    for item in process.env:
        key, _, value = item.partition("=")
        env[key] = value
    os.execve(executable, list(process.args), env)
