"""berth.runtime.seccomp without root: compile filters with the real libseccomp and read the
BPF back; load is faked where the kernel would be needed."""

import os
import struct
import subprocess
import sys

import pytest

from berth.errors import InvalidArgument, PermissionDenied, SystemFailure, Unsupported
from berth.runtime.seccomp import compile_filter
from berth.spec.runtime import Seccomp, SeccompArg, SeccompSyscall
from berth.sys import seccomp as sc

BPF_RET_K = 0x06  # BPF_RET | BPF_K


def profile(**raw):
    raw.setdefault("defaultAction", "SCMP_ACT_ALLOW")
    return Seccomp.from_json(raw)


def bpf(seccomp):
    with compile_filter(seccomp) as filt:
        return filt.export_bpf()


def returns(program):
    """The constant return values of a BPF program (the actions it can take)."""
    assert program and len(program) % 8 == 0
    out = set()
    for off in range(0, len(program), 8):
        code, _jt, _jf, k = struct.unpack_from("=HBBI", program, off)
        if code == BPF_RET_K:
            out.add(k)
    return out


class _Proxy:
    """Delegates to the real libseccomp, overriding some functions."""

    def __init__(self, real, **overrides):
        self._real = real
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def fake_lib():
    real = sc.library()

    def install(**overrides):
        sc.set_library(_Proxy(real, **overrides))

    yield install
    sc.set_library(real)


# ---------------------------------------------------------------- compiling

def test_compile_and_export():
    program = bpf(profile(
        defaultAction="SCMP_ACT_ERRNO",
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        syscalls=[{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"}]))
    assert {sc.ACT_ALLOW, sc.ACT_ERRNO | 1, sc.ACT_KILL_PROCESS} <= returns(program)


def test_every_action_value():
    cases = {
        "SCMP_ACT_KILL": sc.ACT_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": sc.ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": sc.ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": sc.ACT_TRAP,
        "SCMP_ACT_ERRNO": sc.ACT_ERRNO | 1,
        "SCMP_ACT_TRACE": sc.ACT_TRACE | 1,
        "SCMP_ACT_LOG": sc.ACT_LOG,
    }
    for name, value in cases.items():
        program = bpf(profile(syscalls=[{"names": ["mkdir"], "action": name}]))
        assert value in returns(program), name


def test_errno_ret_values():
    program = bpf(profile(
        defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=6,
        syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                  {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["mkdir"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}]))
    assert {sc.ACT_ERRNO | 6, sc.ACT_ERRNO | 38, sc.ACT_TRACE | 7} <= returns(program)


def test_default_trace_uses_default_errno_ret():
    program = bpf(profile(defaultAction="SCMP_ACT_TRACE", defaultErrnoRet=9,
                          syscalls=[{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]))
    assert sc.ACT_TRACE | 9 in returns(program)


def test_unknown_syscall_names_are_skipped():
    empty = bpf(profile(defaultAction="SCMP_ACT_ERRNO"))
    seccomp = profile(defaultAction="SCMP_ACT_ERRNO",
                      syscalls=[{"names": ["no_such_call", "nor_this"],
                                 "action": "SCMP_ACT_ALLOW"}])
    with compile_filter(seccomp) as filt:
        assert filt.export_bpf() == empty
        assert filt.unknown_syscalls == ("no_such_call", "nor_this")


def test_rule_with_default_action_is_skipped():
    empty = bpf(profile())
    assert bpf(profile(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}])) == empty
    # The same action with another errno is a different action.
    errno_default = profile(defaultAction="SCMP_ACT_ERRNO")
    assert bpf(errno_default.replace(syscalls=(
        SeccompSyscall(names=("mkdir",), action="SCMP_ACT_ERRNO"),))) == bpf(errno_default)
    assert bpf(errno_default.replace(syscalls=(
        SeccompSyscall(names=("mkdir",), action="SCMP_ACT_ERRNO", errno_ret=2),))) \
        != bpf(errno_default)


def test_syscall_only_on_other_architectures():
    # socketcall does not exist on x86_64: libseccomp resolves it to a pseudo number.
    program = bpf(profile(architectures=["SCMP_ARCH_X86"],
                          syscalls=[{"names": ["socketcall"], "action": "SCMP_ACT_KILL"}]))
    assert sc.ACT_KILL_THREAD in returns(program)


def _arg(index, value, op="SCMP_CMP_EQ", value_two=0):
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def test_same_index_conditions_become_separate_rules():
    both = bpf(profile(syscalls=[{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                  "args": [_arg(0, 0), _arg(0, 8)]}]))
    split = bpf(profile(syscalls=[
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [_arg(0, 0)]},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [_arg(0, 8)]}]))
    assert both == split


def test_mixed_indexes_with_a_repeat_split_every_condition():
    # runc's rule: one repeated index turns EVERY condition of the entry into its own rule.
    mixed = bpf(profile(syscalls=[{"names": ["dup3"], "action": "SCMP_ACT_ERRNO",
                                   "args": [_arg(1, 100), _arg(1, 101), _arg(2, 0)]}]))
    split = bpf(profile(syscalls=[
        {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "args": [a]}
        for a in (_arg(1, 100), _arg(1, 101), _arg(2, 0))]))
    assert mixed == split


def test_distinct_index_conditions_stay_one_rule():
    anded = bpf(profile(syscalls=[{"names": ["dup3"], "action": "SCMP_ACT_ERRNO",
                                   "args": [_arg(0, 50), _arg(1, 100)]}]))
    split = bpf(profile(syscalls=[
        {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "args": [a]}
        for a in (_arg(0, 50), _arg(1, 100))]))
    assert anded != split


def test_every_operator_compiles():
    ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
           "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
    for op in ops:
        assert bpf(profile(syscalls=[{"names": ["umask"], "action": "SCMP_ACT_ERRNO",
                                      "args": [_arg(0, 0o7, op, 0o2)]}]))


def test_flags_compile():
    assert bpf(profile(flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                              "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                       syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))


def test_large_profile_uses_a_tree():
    names = ["read", "write", "openat", "close", "mmap", "munmap", "brk", "futex", "getpid",
             "getppid", "getuid", "getgid", "geteuid", "getegid", "dup", "dup2", "dup3", "pipe2",
             "fcntl", "ioctl", "lseek", "pread64", "pwrite64", "readv", "writev", "fstat",
             "newfstatat", "statx", "getdents64", "chdir", "fchdir", "rename", "unlink",
             "rmdir", "mkdirat", "symlink", "exit_group"]
    seccomp = profile(defaultAction="SCMP_ACT_ERRNO",
                      syscalls=[{"names": [n], "action": "SCMP_ACT_ALLOW"} for n in names])
    assert len(seccomp.syscalls) > 32
    assert sc.ACT_ALLOW in returns(bpf(seccomp))


def test_release_is_idempotent_and_final():
    filt = compile_filter(profile())
    filt.release()
    filt.release()
    with pytest.raises(SystemFailure, match="already released"):
        filt.export_bpf()


# ---------------------------------------------------------------- errors

def _error(exc, seccomp):
    with pytest.raises(exc) as info:
        compile_filter(seccomp)
    return str(info.value)


def test_unknown_default_action():
    assert _error(InvalidArgument, profile(defaultAction="SCMP_ACT_FOO")) == \
        "linux.seccomp.defaultAction: unknown action SCMP_ACT_FOO"


def test_unknown_rule_action():
    seccomp = profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ALLOW"}] * 3
                      + [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}])
    assert _error(InvalidArgument, seccomp) == \
        "linux.seccomp.syscalls[3].action: unknown action SCMP_ACT_FOO"


def test_unknown_architecture():
    for name in ("SCMP_ARCH_FOO", "x86_64", "SCMP_ARCH_x86_64", "SCMP_ARCH_NATIVE"):
        assert _error(InvalidArgument, profile(architectures=[name])) == \
            f"linux.seccomp.architectures[0]: unknown architecture {name}"


def test_unknown_operator():
    seccomp = profile(syscalls=[
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [_arg(0, 1, "SCMP_CMP_FOO")]}])
    assert _error(InvalidArgument, seccomp) == \
        "linux.seccomp.syscalls[1].args[0].op: unknown operator SCMP_CMP_FOO"


def test_bad_argument_index_and_value():
    base = profile()

    def with_arg(arg):
        return base.replace(syscalls=(SeccompSyscall(names=("read",), action="SCMP_ACT_ERRNO",
                                                     args=(arg,)),))

    assert _error(InvalidArgument, with_arg(SeccompArg(index=6, value=1, op="SCMP_CMP_EQ"))) \
        == "linux.seccomp.syscalls[0].args[0].index: 6 is out of range 0-5"
    assert _error(InvalidArgument, with_arg(SeccompArg(index=0, value=1 << 64,
                                                       op="SCMP_CMP_EQ"))) \
        == f"linux.seccomp.syscalls[0].args[0].value: {1 << 64} does not fit in 64 bits"


def test_errno_ret_out_of_range():
    assert _error(InvalidArgument, profile(defaultAction="SCMP_ACT_ERRNO",
                                           defaultErrnoRet=70000)) == \
        "linux.seccomp.defaultErrnoRet: 70000 is out of range 0-65535"
    seccomp = profile(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": 1 << 16}])
    assert "linux.seccomp.syscalls[0].errnoRet: 65536" in _error(InvalidArgument, seccomp)


def test_empty_syscall_name():
    seccomp = profile(syscalls=[{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}])
    assert _error(InvalidArgument, seccomp) == \
        "linux.seccomp.syscalls[0].names[1]: empty syscall name"


def test_unknown_flag():
    seccomp = profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_FOO"])
    assert _error(InvalidArgument, seccomp) == \
        "linux.seccomp.flags[1]: unknown flag SECCOMP_FILTER_FLAG_FOO"


def test_wait_killable_recv_is_unsupported():
    seccomp = profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    assert _error(Unsupported, seccomp).startswith(
        "linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")


def test_listener_path_is_unsupported():
    seccomp = profile(listenerPath="/run/agent.sock")
    assert _error(Unsupported, seccomp) == \
        "linux.seccomp.listenerPath: seccomp notify listeners are not supported"


def test_notify_action_is_unsupported():
    seccomp = profile(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    assert _error(Unsupported, seccomp).startswith("linux.seccomp.syscalls[0].action: ")
    assert _error(Unsupported, profile(defaultAction="SCMP_ACT_NOTIFY")).startswith(
        "linux.seccomp.defaultAction: ")


def test_flag_unsupported_by_library_or_kernel(fake_lib):
    real = sc.library()

    def attr_set(ctx, attr, value):
        if attr == sc.ATTR_CTL_SSB:
            return -95  # EOPNOTSUPP, as libseccomp says when the kernel lacks the flag
        return real.seccomp_attr_set(ctx, attr, value)

    fake_lib(seccomp_attr_set=attr_set)
    message = _error(Unsupported, profile(flags=["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    assert message.startswith("linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_SPEC_ALLOW is not "
                              "supported by libseccomp ")


def test_compile_failure_releases_the_context(fake_lib):
    real = sc.library()
    released = []

    def release(ctx):
        released.append(ctx)
        real.seccomp_release(ctx)

    fake_lib(seccomp_release=release)
    _error(InvalidArgument, profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]))
    assert len(released) == 1


def test_missing_library(monkeypatch):
    old = sc.set_library(None)
    monkeypatch.setattr(sc, "LIBRARY_NAME", "libseccomp-missing.so.9")
    try:
        assert _error(Unsupported, profile()).startswith(
            "linux.seccomp: cannot load libseccomp-missing.so.9")
    finally:
        sc.set_library(old)


def test_load_without_privilege(fake_lib):
    fake_lib(seccomp_load=lambda ctx: -13)  # EACCES: no CAP_SYS_ADMIN and no no_new_privs
    with compile_filter(profile()) as filt, pytest.raises(PermissionDenied) as info:
        filt.load()
    assert str(info.value) == \
        "linux.seccomp: loading the filter needs CAP_SYS_ADMIN or no_new_privs"


def test_load_other_failure(fake_lib):
    fake_lib(seccomp_load=lambda ctx: -12)  # ENOMEM
    with compile_filter(profile()) as filt, pytest.raises(SystemFailure) as info:
        filt.load()
    assert str(info.value).startswith("linux.seccomp: loading the filter: ")


# ---------------------------------------------------------------- start-up cost

def test_import_is_light():
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import berth.runtime.seccomp; "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, src], check=True,
                         capture_output=True, text=True).stdout.split()
    heavy = {"re", "enum", "json", "signal", "socket", "dataclasses", "typing", "argparse",
             "subprocess", "logging", "pathlib", "inspect", "collections"}
    assert heavy.isdisjoint(out)


def test_program_round_trips_as_text():
    from berth.runtime.filter import Program
    from berth.runtime.seccomp import compile_program
    from berth.spec.runtime import Seccomp

    seccomp = Seccomp.from_json({
        "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]})
    program = compile_program(seccomp)
    assert program.flags == 2 and len(program.bpf) % 8 == 0 and program.bpf
    again = Program.from_text(program.to_text())
    assert (again.bpf, again.flags) == (program.bpf, program.flags)
