"""Seccomp policy: turn the OCI ``linux.seccomp`` model into a loaded-later libseccomp filter.

``compile_filter`` runs in the runtime's parent process before it forks, so a bad profile is
reported early as one line naming the field. The child (the container's init) then calls
``Filter.load`` right before execve.

The filter is built with SCMP_FLTATR_CTL_NNP off: libseccomp would otherwise set no_new_privs
itself on load, but whether the container gets no_new_privs is ``process.noNewPrivileges``'s
call, which the runtime applies on its own. Loading a filter without no_new_privs needs
CAP_SYS_ADMIN, which the init still holds at load time.

Unknown syscall names are skipped silently, as runc does: shared profiles list the calls of
kernels newer than the running one.
"""

from berth.errors import (InvalidArgument, PermissionDenied, SystemFailure,
                          Unsupported, from_oserror)
from berth.sys import seccomp as _sc

_EPERM = 1
_EACCES = 13
_EEXIST = 17
_EINVAL = 22
_EDOM = 33
_EOPNOTSUPP = 95

_ARCH_PREFIX = "SCMP_ARCH_"

# OCI action name -> (libseccomp action, whether errnoRet fills its 16 data bits)
_ACTIONS = {
    "SCMP_ACT_KILL": (_sc.ACT_KILL_THREAD, False),
    "SCMP_ACT_KILL_THREAD": (_sc.ACT_KILL_THREAD, False),
    "SCMP_ACT_KILL_PROCESS": (_sc.ACT_KILL_PROCESS, False),
    "SCMP_ACT_TRAP": (_sc.ACT_TRAP, False),
    "SCMP_ACT_ERRNO": (_sc.ACT_ERRNO, True),
    "SCMP_ACT_TRACE": (_sc.ACT_TRACE, True),
    "SCMP_ACT_ALLOW": (_sc.ACT_ALLOW, False),
    "SCMP_ACT_LOG": (_sc.ACT_LOG, False),
    "SCMP_ACT_NOTIFY": (_sc.ACT_NOTIFY, False),
}

_OPERATORS = {
    "SCMP_CMP_NE": _sc.CMP_NE,
    "SCMP_CMP_LT": _sc.CMP_LT,
    "SCMP_CMP_LE": _sc.CMP_LE,
    "SCMP_CMP_EQ": _sc.CMP_EQ,
    "SCMP_CMP_GE": _sc.CMP_GE,
    "SCMP_CMP_GT": _sc.CMP_GT,
    "SCMP_CMP_MASKED_EQ": _sc.CMP_MASKED_EQ,
}

# OCI flag -> libseccomp filter attribute; None: known but never supported here.
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _sc.ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _sc.ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _sc.ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": None,
}

_MAX_DATA = 0xFFFF
_MAX_DATUM = (1 << 64) - 1
_MAX_ARGS = 6

# Above this many syscall entries, ask libseccomp for a binary-tree filter: a linear chain of
# a few hundred comparisons (Docker's default profile) costs every syscall the container makes.
# Small filters stay linear; libseccomp 2.5.4's tree mode also misbehaves with no rules at all.
_TREE_THRESHOLD = 32


class Filter:
    """A compiled libseccomp filter context, owned by this object until ``release``."""

    __slots__ = ("_ctx", "unknown_syscalls")

    def __init__(self, ctx, unknown_syscalls=()):
        self._ctx = ctx
        # Names libseccomp did not know and that were therefore left out, for debugging.
        self.unknown_syscalls = tuple(unknown_syscalls)

    def _context(self):
        if not self._ctx:
            raise SystemFailure("linux.seccomp: the filter was already released")
        return self._ctx

    def load(self):
        """Install the filter on the calling process (after fork, in the container's init)."""
        try:
            _sc.load(self._context())
        except OSError as err:
            if err.errno in (_EACCES, _EPERM):
                raise PermissionDenied(
                    "linux.seccomp: loading the filter needs CAP_SYS_ADMIN or no_new_privs"
                ) from err
            raise from_oserror(err, "linux.seccomp: loading the filter") from err

    def export_bpf(self):
        """The filter's BPF program (struct sock_filter array) as bytes."""
        try:
            return _sc.export_bpf(self._context())
        except OSError as err:
            raise from_oserror(err, "linux.seccomp: exporting the filter") from err

    def release(self):
        if self._ctx:
            _sc.release(self._ctx)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def compile_program(seccomp):
    """Compile ``seccomp`` (a spec Seccomp) into a Program: BPF bytes and kernel flags."""
    from berth.runtime.filter import KERNEL_FLAGS, Program

    flt = compile_filter(seccomp)
    try:
        bpf = flt.export_bpf()
    finally:
        flt.release()
    flags = 0
    for name in seccomp.flags:
        flags |= KERNEL_FLAGS.get(name, 0)
    return Program(bpf, flags)


def compile_filter(seccomp):
    """Build a Filter from a ``berth.spec.runtime.Seccomp``; raises InvalidArgument or
    Unsupported naming the field at fault. The caller owns the result and releases it."""
    if seccomp.listener_path:
        raise Unsupported("linux.seccomp.listenerPath: seccomp notify listeners are not supported")
    default = _action(seccomp.default_action, seccomp.default_errno_ret,
                      "linux.seccomp.defaultAction", "linux.seccomp.defaultErrnoRet")
    flags = [_flag(flag, f"linux.seccomp.flags[{i}]") for i, flag in enumerate(seccomp.flags)]
    rules = [_rule(call, f"linux.seccomp.syscalls[{i}]")
             for i, call in enumerate(seccomp.syscalls)]
    for i, name in enumerate(seccomp.architectures):
        if not name.startswith(_ARCH_PREFIX) or name != name.upper():
            raise InvalidArgument(f"linux.seccomp.architectures[{i}]: unknown architecture {name}")

    try:
        _sc.library()
    except OSError as err:
        raise Unsupported(f"linux.seccomp: cannot load {_sc.LIBRARY_NAME}: {err}") from err
    try:
        ctx = _sc.init(default)
    except OSError as err:
        raise Unsupported(f"linux.seccomp.defaultAction: {seccomp.default_action} is not "
                          "supported by libseccomp or this kernel") from err
    filt = Filter(ctx)
    try:
        unknown = _build(ctx, seccomp, default, flags, rules)
    except BaseException:
        filt.release()
        raise
    filt.unknown_syscalls = tuple(unknown)
    return filt


def _build(ctx, seccomp, default, flags, rules):
    _attr(ctx, _sc.ATTR_CTL_NNP, 0, "linux.seccomp: turning off libseccomp's no_new_privs")
    try:
        # Report the kernel's errno from seccomp_load rather than libseccomp's ECANCELED.
        _sc.attr_set(ctx, _sc.ATTR_API_SYSRAWRC, 1)
    except OSError:
        pass  # libseccomp < 2.5.0: errors stay coarse, nothing else changes
    if len(seccomp.syscalls) > _TREE_THRESHOLD:
        try:
            _sc.attr_set(ctx, _sc.ATTR_CTL_OPTIMIZE, 2)
        except OSError:
            pass  # older libseccomp: a linear filter, slower but the same policy

    for i, name in enumerate(seccomp.architectures):
        token = _sc.arch_resolve_name(name[len(_ARCH_PREFIX):].lower())
        if not token:
            raise InvalidArgument(f"linux.seccomp.architectures[{i}]: unknown architecture {name}")
        try:
            _sc.arch_add(ctx, token)
        except OSError as err:
            if err.errno != _EEXIST:  # the native arch is always there already
                raise SystemFailure(f"linux.seccomp.architectures[{i}]: adding {name}: "
                                    f"{err.strerror}", errno=err.errno) from err

    for field, name, attr in flags:
        try:
            _sc.attr_set(ctx, attr, 1)
        except OSError as err:
            if err.errno in (_EOPNOTSUPP, _EINVAL):
                ver = ".".join(map(str, _sc.version()))
                raise Unsupported(f"{field}: {name} is not supported by libseccomp {ver} "
                                  "or this kernel") from err
            raise SystemFailure(f"{field}: setting {name}: {err.strerror}",
                                errno=err.errno) from err

    unknown = []
    for field, names, action, conditions in rules:
        if action == default:
            continue  # libseccomp refuses rules that repeat the default action
        for name in names:
            nr = _sc.syscall_resolve_name(name)
            if nr == _sc.NR_ERROR:
                unknown.append(name)
                continue
            for group in _condition_groups(conditions):
                _add_rule(ctx, action, nr, group, name, field)
    return unknown


def _condition_groups(conditions):
    """The condition lists to add as separate rules for one syscall.

    libseccomp ANDs the conditions of one rule and rejects (EINVAL) a rule with two conditions
    on the same argument. runc, whose behaviour profiles are written against, handles such an
    entry by adding every condition of the entry as a rule of its own, so the entry matches
    when ANY of its conditions holds; entries whose conditions name distinct arguments stay
    one rule, matching when ALL hold. We do the same, so a profile means the same under berth.
    """
    if not conditions:
        return [()]
    seen = set()
    for cond in conditions:
        if cond[0] in seen:
            return [(cond,) for cond in conditions]
        seen.add(cond[0])
    return [tuple(conditions)]


def _add_rule(ctx, action, nr, conditions, name, field):
    try:
        _sc.rule_add(ctx, action, nr, conditions, name)
    except OSError as err:
        if err.errno == _EACCES:
            return  # "rule action same as default": nothing to add
        if err.errno in (_EINVAL, _EDOM):
            raise InvalidArgument(f"{field}: libseccomp rejected the rule for {name}: "
                                  f"{err.strerror}") from err
        raise SystemFailure(f"{field}: adding the rule for {name}: {err.strerror}",
                            errno=err.errno) from err


def _attr(ctx, attr, value, what):
    try:
        _sc.attr_set(ctx, attr, value)
    except OSError as err:
        raise SystemFailure(f"{what}: {err.strerror}", errno=err.errno) from err


def _action(name, errno_ret, field, errno_field):
    try:
        base, takes_data = _ACTIONS[name]
    except KeyError:
        raise InvalidArgument(f"{field}: unknown action {name}") from None
    if base == _sc.ACT_NOTIFY:
        raise Unsupported(f"{field}: SCMP_ACT_NOTIFY: seccomp notify listeners are not supported")
    if not takes_data:
        return base
    # Without errnoRet, ERRNO and TRACE both carry EPERM, as in runc.
    data = _EPERM if errno_ret is None else errno_ret
    if not 0 <= data <= _MAX_DATA:
        raise InvalidArgument(f"{errno_field}: {data} is out of range 0-{_MAX_DATA}")
    return base | data


def _flag(name, field):
    if name not in _FLAGS:
        raise InvalidArgument(f"{field}: unknown flag {name}")
    if _FLAGS[name] is None:
        raise Unsupported(f"{field}: {name} only applies to seccomp notify listeners, "
                          "which are not supported")
    return (field, name, _FLAGS[name])


def _rule(call, field):
    """(field, names, action, conditions) of one syscalls[] entry, validated."""
    action = _action(call.action, call.errno_ret, f"{field}.action", f"{field}.errnoRet")
    for k, name in enumerate(call.names):
        if not name:
            raise InvalidArgument(f"{field}.names[{k}]: empty syscall name")
    conditions = []
    for j, arg in enumerate(call.args):
        where = f"{field}.args[{j}]"
        op = _OPERATORS.get(arg.op)
        if op is None:
            raise InvalidArgument(f"{where}.op: unknown operator {arg.op}")
        if not 0 <= arg.index < _MAX_ARGS:
            raise InvalidArgument(f"{where}.index: {arg.index} is out of range 0-{_MAX_ARGS - 1}")
        for key, value in (("value", arg.value), ("valueTwo", arg.value_two)):
            if not 0 <= value <= _MAX_DATUM:
                raise InvalidArgument(f"{where}.{key}: {value} does not fit in 64 bits")
        # MASKED_EQ: libseccomp's datum_a is the mask (OCI value), datum_b the datum (valueTwo).
        conditions.append((arg.index, op, arg.value, arg.value_two))
    return (field, tuple(call.names), action, tuple(conditions))
