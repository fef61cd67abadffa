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


def run(argv, *, stdin=b"", env=None, timeout=60.0, cwd="/"):
    """Run ``argv`` with ``env`` (exactly that environment) and ``stdin``; return Completed
    with stdout and stderr as bytes. Raises ExecFailed when it cannot start or times out
    (it is killed then)."""
    import subprocess

    try:
        proc = subprocess.run(list(argv), input=stdin, env=env, cwd=cwd, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              close_fds=True)
    except subprocess.TimeoutExpired:
        raise ExecFailed(f"{argv[0]}: no answer within {timeout:g} s", argv) from None
    except OSError as err:
        raise ExecFailed(f"{argv[0]}: {err.strerror or err}", argv) from None
    return Completed(list(argv), proc.returncode, proc.stdout, proc.stderr)
