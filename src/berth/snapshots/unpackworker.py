"""Unpacking a layer in a process of its own, so layers unpack side by side on every core.

A thread per layer shares one interpreter lock: tar parsing and the Python work around each
file's system calls ran one layer at a time. ``Unpack`` starts a fresh interpreter
(``python -I``, the same executable and site-packages, for isal; berth's directory put first
on sys.path)
with the compressed layer on its stdin, the destination and media type in argv; it answers
one JSON line on stdout: {"diff_id", "size", "warnings"} or {"error", "message", "errno"},
the error re-raised in the caller as the same berth.errors class.
"""

import json
import logging
import os
import subprocess
import sys

import berth.errors as _errors

log = logging.getLogger(__name__)
_SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PIPE_SIZE = 1 << 20
# glibc hands each freed 1 MB buffer back to the kernel and faults a fresh one in for the
# next (7% of a pull's CPU went to page faults): let the worker keep its heap instead.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}
_F_SETPIPE_SZ = 1031


class Unpack:
    """A running worker unpacking into ``dest``; feed it with ``write`` (or give ``source``,
    a readable file, to have it read that instead), then ``result()``."""

    def __init__(self, dest, media_type, *, overlay=True, source=None):
        prog = (f"import sys; sys.path.insert(0, {_SRC!r}); "
                "from berth.snapshots.unpackworker import main; main()")
        stdin = subprocess.PIPE if source is None else source
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", prog, dest, media_type or "",
             "overlay" if overlay else "copy"],
            stdin=stdin, stdout=subprocess.PIPE, close_fds=True, env=dict(os.environ, **_MALLOC))
        self.pipe = None
        if source is None:
            self.pipe = self.proc.stdin.fileno()
            try:
                import fcntl
                fcntl.fcntl(self.pipe, _F_SETPIPE_SZ, _PIPE_SIZE)
            except OSError:
                pass  # a smaller pipe only costs context switches

    def write(self, data):
        """Hand bytes to the worker; False once it stopped reading (its error is in
        ``result``)."""
        if self.pipe is None:
            return False
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.pipe, view):]
        except BrokenPipeError:
            self.close_input()
            return False
        return True

    def close_input(self):
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.pipe = None

    def result(self):
        """(diff_id, size, warnings) once the worker is done; its error re-raised."""
        self.close_input()
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        code = self.proc.wait()
        try:
            answer = json.loads(out)
        except ValueError:
            raise _errors.SystemFailure(f"layer: the unpacking process exited with status "
                                        f"{code} and no answer") from None
        if "error" in answer:
            cls = getattr(_errors, answer["error"], None)
            if not (isinstance(cls, type) and issubclass(cls, _errors.BerthError)):
                cls = _errors.SystemFailure
            if cls is _errors.SystemFailure:
                raise cls(answer["message"], errno=answer.get("errno"))
            raise cls(answer["message"])
        for line in answer["warnings"]:
            log.warning("%s", line)
        return answer["diff_id"], answer["size"], answer["warnings"]

    def kill(self):
        """Stop the worker (the caller failed); waits for it."""
        self.close_input()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def main():
    import signal

    # Ctrl-C on a terminal reaches the whole process group: the parent handles it, and
    # the worker ends when its input does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    dest, media_type, mode = sys.argv[1:4]
    logging.getLogger().addHandler(logging.NullHandler())  # warnings go to the parent
    warnings = []
    try:
        from berth.snapshots.apply import apply_layer

        with os.fdopen(0, "rb", buffering=0, closefd=False) as stream:
            diff_id, size = apply_layer(dest, stream, media_type or None,
                                        overlay=mode == "overlay", warnings=warnings)
        answer = {"diff_id": diff_id, "size": size, "warnings": warnings}
    except _errors.BerthError as err:
        answer = {"error": type(err).__name__, "message": str(err),
                  "errno": getattr(err, "errno", None)}
    except OSError as err:
        answer = {"error": "SystemFailure", "message": f"layer: unpacking into {dest}: {err}",
                  "errno": err.errno}
    except Exception as err:  # noqa: BLE001 - reported to the parent as one line
        answer = {"error": "SystemFailure", "message": f"layer: unpacking failed: {err!r}"}
    try:
        os.write(1, (json.dumps(answer) + "\n").encode())
    except OSError:
        os._exit(1)  # the parent is gone
    os._exit(0)
