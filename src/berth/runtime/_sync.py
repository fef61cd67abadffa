"""Messages between the runtime and the processes it forks: one line each over a pipe pair.

A child reports failure as ``error <Class> <text>`` and exits; the parent raises the same
berth error class, so a bad mount in the init reads exactly as it would in the parent.
"""

from berth.sys import fastos as os

from berth import errors


class Channel:
    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""

    @classmethod
    def pair(cls):
        """(parent end, child end): two pipes, all ends close-on-exec."""
        p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
        c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
        return cls(c2p_r, p2c_w), cls(p2c_r, c2p_w)

    def send(self, message):
        data = (message.replace("\n", " ") + "\n").encode()
        try:
            while data:
                data = data[os.write(self.wfd, data):]
        except BrokenPipeError:
            # The other side is gone; what it said before it left is the error to report.
            msg = self.recv()
            if msg is not None and msg.startswith("error "):
                raise_remote(msg)
            raise errors.SystemFailure("the other process exited unexpectedly") from None

    def recv(self):
        """The next line, or None at end of file (the other side exited)."""
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def expect(self, word, who="container init"):
        """Wait for a message starting with ``word``; a child's error is raised here."""
        msg = self.recv()
        if msg is None:
            raise errors.SystemFailure(f"{who} exited unexpectedly")
        if msg.startswith("error "):
            raise_remote(msg)
        if msg.split(" ", 1)[0] != word:
            raise errors.SystemFailure(f"{who}: unexpected message {msg!r}")
        return msg[len(word) + 1:]

    def await_exec(self):
        """After "ready": the pipe closes when the child's execve succeeds (close-on-exec);
        a message instead means it failed, and is raised here."""
        msg = self.recv()
        if msg is not None and msg.startswith("error "):
            raise_remote(msg)

    def fail(self, err):
        """Send ``err`` to the parent (from a child about to exit)."""
        if isinstance(err, errors.BerthError):
            name, text = type(err).__name__, str(err)
        elif isinstance(err, OSError):
            converted = errors.from_oserror(err, err.strerror and str(err.args[1]) or "error")
            name, text = type(converted).__name__, _os_text(err)
        else:
            name, text = "SystemFailure", f"{type(err).__name__}: {err}"
        if os.getenv("BERTH_OCI_DEBUG"):
            import traceback
            text += " | " + " <- ".join(
                f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_tb(err.__traceback__)))
        try:
            self.send(f"error {name} {text}")
        except OSError:
            pass

    def close(self):
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def _os_text(err):
    text = err.args[1] if len(err.args) > 1 else str(err)
    if err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text


def raise_remote(msg):
    _, name, text = (msg.split(" ", 2) + ["", ""])[:3]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.BerthError)):
        cls = errors.SystemFailure
    raise cls(text)
