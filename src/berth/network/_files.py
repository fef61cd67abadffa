"""Files the network package keeps, written whole: temp, fsync, rename."""

import os


def write_atomic(path, data, mode=0o644, sync=True):
    """Replace ``path`` with ``data`` (bytes); a crash leaves the old file or the new one.
    ``sync`` False skips the fsync, for files derived from the database (rebuilt from it)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
