"""syncfs(2): write back every dirty page and inode of the filesystem holding an fd."""

from berth.sys import linux


def syncfs(fd):
    """Block until the filesystem of ``fd`` has its data and metadata on disk."""
    linux._retry(lambda: linux.LIBC.syncfs(fd), "syncfs")
