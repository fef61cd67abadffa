"""berth's exception tree: every error berth raises on purpose is a BerthError.

    BerthError
      NotFound            a container, image, file or record that is not there
      AlreadyExists       an id or name that is taken
      InvalidArgument     bad user input: a flag, a config.json field, a reference
      Conflict            the object is in the wrong state for the operation
      PermissionDenied    the host or the config forbids it
      Unsupported         the host lacks a feature that was asked for
      SystemFailure       a system call or an external program failed

Each carries the words a user reads; callers add the id, path or field. The CLI prints
``str(err)`` on one line and exits non-zero; the API maps classes to HTTP status codes.
This module imports nothing, so the runtime's hot path can use it for free.
"""


class BerthError(Exception):
    """Base of every error berth raises deliberately."""

    exit_code = 1

    def __init__(self, message, *, cleanup_errors=()):
        super().__init__(message)
        self.message = message
        # Errors met while undoing a half-done operation, kept beside the cause.
        self.cleanup_errors = list(cleanup_errors)

    def __str__(self):
        if not self.cleanup_errors:
            return self.message
        extra = "; ".join(str(e) for e in self.cleanup_errors)
        return f"{self.message} (cleanup also failed: {extra})"


class NotFound(BerthError):
    pass


class AlreadyExists(BerthError):
    pass


class InvalidArgument(BerthError):
    pass


class Conflict(BerthError):
    pass


class PermissionDenied(BerthError):
    pass


class Unsupported(BerthError):
    pass


class SystemFailure(BerthError):
    """A system call or helper program failed; ``errno`` is kept when known."""

    def __init__(self, message, *, errno=None, cleanup_errors=()):
        super().__init__(message, cleanup_errors=cleanup_errors)
        self.errno = errno


def from_oserror(err, what):
    """Translate an OSError into the matching BerthError, naming ``what`` was attempted."""
    import errno as _e

    text = f"{what}: {err.strerror or err}"
    code = err.errno
    if code == _e.ENOENT:
        return NotFound(text)
    if code == _e.EEXIST:
        return AlreadyExists(text)
    if code in (_e.EPERM, _e.EACCES):
        return PermissionDenied(text)
    if code == _e.EINVAL:
        return InvalidArgument(text)
    if code in (_e.ENOSYS, _e.EOPNOTSUPP):
        return Unsupported(text)
    return SystemFailure(text, errno=code)
