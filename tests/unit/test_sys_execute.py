"""berth.sys.execute: programs run through posix_spawn with captured output."""

import os

import pytest

from berth.sys import execute


def test_output_exit_code_and_stdin():
    code, out, err = execute.run(["sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"hello")
    assert (code, out, err) == (3, b"hello", b"oops\n")


def test_large_output_and_input_do_not_deadlock():
    data = os.urandom(1 << 20)
    code, out, _ = execute.run(["cat"], stdin=data)
    assert code == 0 and out == data


def test_signal_and_missing_program_and_timeout():
    assert execute.run(["sh", "-c", "kill -9 $$"])[0] == -9
    with pytest.raises(FileNotFoundError):
        execute.run(["/no/such/program"])
    with pytest.raises(execute.Timeout):
        execute.run(["sleep", "30"], timeout=0.2)


def test_no_descriptor_of_ours_leaks():
    r, w = os.pipe()
    os.set_inheritable(w, True)  # as a descriptor the process was given would be
    try:
        code, out, _ = execute.run(["sh", "-c", "ls /proc/self/fd"])
        assert code == 0
        assert sorted(int(n) for n in out.split()) == [0, 1, 2, 3]  # 3: ls's own dir fd
    finally:
        os.close(r)
        os.close(w)
