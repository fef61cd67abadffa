"""The one way the network package runs an external program (CNI plugins): arguments,
environment, stdin bytes, a timeout, captured output, and a structured error."""

from berth.errors import SystemFailure


class Completed:
    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr


class ExecFailed(SystemFailure):
    """The program could not be started or did not finish in time (not a non-zero exit:
    callers read ``Completed.returncode`` and the output to word those)."""

    def __init__(self, message, argv):
        super().__init__(message)
        self.argv = list(argv)


def run(argv, *, stdin=b"", env=None, timeout=60.0):
    """Run ``argv`` with ``env`` (exactly that environment) and ``stdin``; return Completed
    with stdout and stderr as bytes. Raises ExecFailed when it cannot start or times out
    (it is killed then). The spawning is berth.sys.execute's (posix_spawn, no inherited
    descriptors)."""
    from berth.sys import execute

    try:
        code, out, err = execute.run(list(argv), stdin=stdin, env=env, timeout=timeout)
    except execute.Timeout:
        raise ExecFailed(f"{argv[0]}: no answer within {timeout:g} s", argv) from None
    except OSError as err:
        raise ExecFailed(f"{argv[0]}: {err.strerror or err}", argv) from None
    return Completed(list(argv), code, out, err)
