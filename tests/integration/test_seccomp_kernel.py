"""Seccomp filters on the real kernel: compile in the parent, fork, load in the child, make the
filtered call there and report the outcome through a pipe (as berth-oci's init does)."""

import errno
import os

import pytest

from berth.runtime.seccomp import compile_filter
from berth.spec.runtime import Seccomp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading a filter without "
                                "no_new_privs needs root (CAP_SYS_ADMIN)")

SIGSYS = 31


def profile(syscalls, **raw):
    raw.setdefault("defaultAction", "SCMP_ACT_ALLOW")
    return Seccomp.from_json(dict(raw, syscalls=syscalls))


def outcome(call):
    """'ok' or the errno name of an OSError, for one call."""
    try:
        call()
    except OSError as err:
        return errno.errorcode.get(err.errno, str(err.errno))
    return "ok"


def run_filtered(seccomp, probe):
    """Load ``seccomp`` in a forked child, run ``probe()`` there -> (wait status, its text)."""
    filt = compile_filter(seccomp)  # before fork, as the runtime does
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            filt.load()
            os.write(w, str(probe()).encode())
            code = 0
        except BaseException as exc:  # report, then leave
            try:
                os.write(w, f"child error: {exc!r}".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    try:
        filt.release()
        os.close(w)
        w = -1
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        pid = 0
        return status, b"".join(chunks).decode()
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def exited_with(status, text):
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, text
    return text


def test_errno_on_mkdir(tmp_path):
    seccomp = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 1}])
    target = tmp_path / "blocked"
    text = exited_with(*run_filtered(seccomp, lambda: outcome(lambda: os.mkdir(target))))
    assert text == "EPERM"
    assert not target.exists()
    # The parent is not filtered.
    os.mkdir(target)


def test_errno_default_is_eperm(tmp_path):
    seccomp = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}])
    target = tmp_path / "blocked"
    assert exited_with(*run_filtered(seccomp, lambda: outcome(lambda: os.mkdir(target)))) \
        == "EPERM"


def test_errno_enosys_on_getcwd():
    seccomp = profile([{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                        "errnoRet": errno.ENOSYS}])
    assert exited_with(*run_filtered(seccomp, lambda: outcome(os.getcwd))) == "ENOSYS"


def test_extra_architectures_and_flags(tmp_path):
    seccomp = profile([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                        "errnoRet": errno.EROFS}],
                      architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                      flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    probe = lambda: outcome(lambda: os.mkdir(tmp_path / "x"))  # noqa: E731
    assert exited_with(*run_filtered(seccomp, probe)) == "EROFS"


def _dup2_probe(pairs):
    """Duplicate a pipe end onto fixed numbers; report each dup2's outcome."""
    def probe():
        r, _w = os.pipe()
        os.dup2(r, 50)  # a known fd number to put in conditions on arg0
        results = []
        for old, new in pairs:
            old = r if old is None else old
            results.append(outcome(lambda: os.dup2(old, new, inheritable=True)))
            results.append(outcome(lambda: os.dup2(old, new, inheritable=False)))
        return " ".join(results)
    return probe


def _dup_rule(args):
    # Python's dup2 uses dup2(2) for inheritable fds and dup3(2) otherwise.
    return [{"names": ["dup2", "dup3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": args}]


def _eq(index, value):
    return {"index": index, "value": value, "op": "SCMP_CMP_EQ"}


def test_argument_condition():
    seccomp = profile(_dup_rule([_eq(1, 100)]))
    text = exited_with(*run_filtered(seccomp, _dup2_probe([(None, 100), (None, 101)])))
    assert text.split() == ["EPERM", "EPERM", "ok", "ok"]


def test_same_index_conditions_match_any():
    seccomp = profile(_dup_rule([_eq(1, 100), _eq(1, 101)]))
    text = exited_with(*run_filtered(seccomp, _dup2_probe([(None, 100), (None, 101),
                                                           (None, 102)])))
    assert text.split() == ["EPERM", "EPERM", "EPERM", "EPERM", "ok", "ok"]


def test_distinct_index_conditions_match_all():
    seccomp = profile(_dup_rule([_eq(0, 50), _eq(1, 100)]))
    text = exited_with(*run_filtered(seccomp, _dup2_probe([(50, 100), (None, 100), (50, 101)])))
    assert text.split() == ["EPERM", "EPERM", "ok", "ok", "ok", "ok"]


def test_masked_eq_condition(tmp_path):
    # Refuse opens that may create a file: value is the mask, valueTwo the datum.
    creating = {"value": os.O_CREAT, "valueTwo": os.O_CREAT, "op": "SCMP_CMP_MASKED_EQ"}
    seccomp = profile([
        {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "args": [dict(creating, index=2)]},
        {"names": ["open"], "action": "SCMP_ACT_ERRNO", "args": [dict(creating, index=1)]}])
    existing = tmp_path / "existing"
    existing.write_text("")

    def probe():
        return " ".join(outcome(lambda: os.close(os.open(path, flags))) for path, flags in (
            (tmp_path / "new", os.O_WRONLY | os.O_CREAT),
            (existing, os.O_RDONLY),
            (existing, os.O_WRONLY | os.O_CREAT | os.O_APPEND)))

    assert exited_with(*run_filtered(seccomp, probe)).split() == ["EPERM", "ok", "EPERM"]
    assert not (tmp_path / "new").exists()


def test_kill_process():
    seccomp = profile([{"names": ["getpgid"], "action": "SCMP_ACT_KILL_PROCESS"}])
    status, text = run_filtered(seccomp, lambda: os.getpgid(0))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGSYS, (status, text)
    assert text == ""


def test_trap():
    seccomp = profile([{"names": ["getpgid"], "action": "SCMP_ACT_TRAP"}])
    status, text = run_filtered(seccomp, lambda: os.getpgid(0))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGSYS, (status, text)


def test_log_allows():
    seccomp = profile([{"names": ["getppid"], "action": "SCMP_ACT_LOG"}])
    assert exited_with(*run_filtered(seccomp, lambda: os.getppid())) == str(os.getpid())


def test_unknown_syscalls_do_not_break_the_filter(tmp_path):
    seccomp = profile([{"names": ["no_such_call", "mkdir", "mkdirat"],
                        "action": "SCMP_ACT_ERRNO"}])
    assert exited_with(*run_filtered(seccomp, lambda: outcome(
        lambda: os.mkdir(tmp_path / "x")))) == "EPERM"
