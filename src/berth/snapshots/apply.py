"""Unpacking a layer tar into a directory without letting it reach outside.

Every path is resolved below an fd of the destination: parents through openat2 with
RESOLVE_IN_ROOT (a symlink planted by an earlier entry, or left by a lower layer, resolves
as if the destination were "/"), the last component never followed. '..' in a name is
refused. OCI whiteouts become overlay's form (a 0/0 char device, trusted.overlay.opaque=y)
when ``overlay`` is set, or are carried out in place (deletes) when it is not.
"""

import errno
import logging
import os
import stat

from berth.errors import InvalidArgument, SystemFailure
from berth.snapshots import compression
from berth.snapshots.tarstream import TarError, TarReader
from berth.sys import linux

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_AUFS_META = ".wh..wh."
_MAX_PATH = 4096
_CHUNK = 1 << 20
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_RESOLVE = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
# Errors of the host, not of the layer.
_HOST_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM)


def apply_layer(dest_dir, stream, media_type, *, overlay=True, warnings=None):
    """Untar the (compressed) layer ``stream`` into ``dest_dir``; (diff_id, size).

    diff_id is "sha256:..." of the uncompressed tar and size its length. ``warnings``, when
    a list, receives one line per thing that could not be applied (an xattr the filesystem
    refuses); they are logged as well.
    """
    # The blob's own digest is the content store's business: only the diff id is hashed.
    compressed, plain = compression.open_layer(stream, media_type, hash_compressed=False)
    try:
        root = os.open(dest_dir, _DIR_FLAGS)
    except OSError as err:
        raise SystemFailure(f"layer: opening {dest_dir}: {err.strerror}", errno=err.errno) \
            from None
    unpacker = _Unpacker(root, overlay, warnings)
    try:
        unpacker.run(plain)
        plain.drain()
        compressed.drain()
    finally:
        unpacker.forget_parent()
        os.close(root)
        plain.close()
    return plain.digest, plain.size


def _write_all(fd, view):
    while view:
        view = view[os.write(fd, view):]


def normalize(name):
    """A tar member name as a relative path ('' for the root); InvalidArgument on '..'."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"layer: entry {name} escapes the root")
    path = "/".join(parts)
    if len(path) > _MAX_PATH or "\0" in path:
        raise InvalidArgument(f"layer: entry {name[:100]}...: name too long or invalid")
    return path


class _Unpacker:
    def __init__(self, root, overlay, warnings):
        self.root = root
        self.overlay = overlay
        self.warnings = warnings
        self.is_root = os.geteuid() == 0
        self.written = set()      # paths this layer created (opaque dirs keep them)
        self.dir_times = {}       # path -> mtime_ns, set once the children are in
        self._parent = None       # (path, fd) of the last entry's parent directory

    # -------------------------------------------------------------- paths
    def open_dir(self, path):
        """An O_PATH fd of directory ``path`` below the root (resolved in-root)."""
        if not path:
            return os.dup(self.root)
        return linux.openat2(self.root, path, _DIR_FLAGS, resolve=_RESOLVE)

    def parent_fd(self, path):
        """fd of ``path``'s parent, creating missing parent directories (0755)."""
        parent = path.rpartition("/")[0]
        try:
            return self.open_dir(parent)
        except OSError as err:
            if err.errno != errno.ENOENT or not parent:
                raise
        # Walk down, creating what is missing; every step resolves in-root again.
        fd = os.dup(self.root)
        done = ""
        try:
            for part in parent.split("/"):
                done = f"{done}/{part}" if done else part
                try:
                    nxt = linux.openat2(self.root, done, _DIR_FLAGS, resolve=_RESOLVE)
                except OSError as err:
                    if err.errno != errno.ENOENT:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        # A dangling symlink: its target is not in the destination.
                        raise OSError(errno.ENOTDIR, f"parent {done} is a symlink that leads "
                                      "nowhere inside the layer") from None
                    nxt = linux.openat2(fd, part, _DIR_FLAGS | os.O_NOFOLLOW)
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def lstat(fd, name):
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    @staticmethod
    def remove(fd, name):
        """Remove ``name`` (recursively if a directory) in the directory ``fd``."""
        st = _Unpacker.lstat(fd, name)
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=fd)
            return
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=fd)
        try:
            for entry in os.listdir(sub):
                _Unpacker.remove(sub, entry)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=fd)

    # -------------------------------------------------------------- members
    def run(self, plain):
        tar = TarReader(plain)
        while True:
            try:
                member = tar.next()
            except TarError as err:
                raise InvalidArgument(f"layer: bad tar stream: {err}") from None
            if member is None:
                break
            try:
                self.member(tar, member)
            except TarError as err:
                raise InvalidArgument(f"layer: entry {member.name[:200]}: {err}") from None
            except OSError as err:
                what = f"layer: entry {member.name[:200]}: {err.strerror or err}"
                if err.errno in _HOST_ERRNOS:
                    raise SystemFailure(what, errno=err.errno) from None
                raise InvalidArgument(what) from None
        self.forget_parent()
        self.finish_dirs()

    def cached_parent(self, path):
        """fd of ``path``'s parent, kept open for the entries that follow in the same
        directory. Only removals change what a path resolves to (nothing here renames, and
        a name is created only where nothing is), so every removal drops the cache."""
        parent = path.rpartition("/")[0]
        if self._parent is not None and self._parent[0] == parent:
            return self._parent[1]
        self.forget_parent()
        fd = self.parent_fd(path)
        self._parent = (parent, fd)
        return fd

    def forget_parent(self):
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def member(self, tar, m):
        path = normalize(m.name)
        if not path:
            if m.isdir():
                self.metadata(self.root, ".", m, "")
            tar.skip()
            return
        base = path.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            self.forget_parent()
            self.whiteout(path, base, m.name)
            tar.skip()
            return
        fd = self.cached_parent(path)
        self.create(tar, m, fd, base, path)
        while path and path not in self.written:
            self.written.add(path)
            path = path.rpartition("/")[0]

    def clear(self, fd, name):
        """Make room for a new entry ``name`` where something exists."""
        self.remove(fd, name)
        self.forget_parent()

    def create(self, tar, m, fd, name, path):
        if m.isdir():
            tar.skip()
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:
                existing = self.lstat(fd, name)
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    fd = self.replace(fd, name, path)
                    os.mkdir(name, 0o700, dir_fd=fd)
            self.metadata(fd, name, m, path)
            return
        if m.isreg():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                out = os.open(name, flags, 0o600, dir_fd=fd)
            except FileExistsError:
                fd = self.replace(fd, name, path)
                out = os.open(name, flags, 0o600, dir_fd=fd)
            try:
                tar.copy_to(lambda view: _write_all(out, view))
                self.file_metadata(out, m)
            finally:
                os.close(out)
            return
        tar.skip()
        if m.islnk():
            self.hardlink(m, fd, name, path)
            return  # a hard link shares its target's inode and metadata
        make = self.maker(m)
        try:
            make(name, fd)
        except FileExistsError:
            fd = self.replace(fd, name, path)
            make(name, fd)
        self.metadata(fd, name, m, path)

    def replace(self, fd, name, path):
        """Remove the existing ``name`` (in ``fd``, ``path``'s parent); the parent's fd."""
        self.clear(fd, name)
        return self.cached_parent(path)

    @staticmethod
    def maker(m):
        if m.issym():
            # The link text is kept as written; nothing here ever follows it.
            return lambda name, fd: os.symlink(m.linkname, name, dir_fd=fd)
        if m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
            return lambda name, fd: os.mknod(name, kind | 0o600, dev, dir_fd=fd)
        if m.isfifo():
            return lambda name, fd: os.mkfifo(name, 0o600, dir_fd=fd)
        raise InvalidArgument(f"layer: entry {m.name}: unsupported tar type {m.type!r}")

    def hardlink(self, m, fd, name, path):
        try:
            target = normalize(m.linkname)
        except InvalidArgument:
            raise InvalidArgument(f"layer: entry {m.name}: hard link target {m.linkname} "
                                  "escapes the root") from None
        if not target:
            raise InvalidArgument(f"layer: entry {m.name}: hard link to the root")
        tfd = self.open_dir(target.rpartition("/")[0])
        try:
            tname = target.rpartition("/")[2]
            st = self.lstat(tfd, tname)
            if st is None:
                raise InvalidArgument(f"layer: entry {m.name}: hard link target "
                                      f"{m.linkname} not found in the layer")
            if stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"layer: entry {m.name}: hard link to a directory")
            try:
                os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                if self.lstat(fd, name) == st:
                    return  # linked to itself: nothing to do
                fd = self.replace(fd, name, path)
                os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def whiteout(self, path, base, raw_name):
        parent = path.rpartition("/")[0]
        if base == OPAQUE:
            fd = self.parent_fd(path)
            try:
                if self.overlay:
                    os.setxattr(f"/proc/self/fd/{fd}", "trusted.overlay.opaque", b"y")
                else:
                    self.empty_lower(fd, parent)
            finally:
                os.close(fd)
            return
        if base.startswith(_AUFS_META):
            return  # aufs bookkeeping (.wh..wh.plnk and the like) means nothing here
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise InvalidArgument(f"layer: entry {raw_name}: invalid whiteout")
        vpath = f"{parent}/{victim}" if parent else victim
        fd = self.parent_fd(path)
        try:
            self.remove(fd, victim)
            if self.overlay:
                os.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=fd)
                self.written.add(vpath)
            else:
                self.written.discard(vpath)
        finally:
            os.close(fd)

    def empty_lower(self, fd, dirpath):
        """Copy mode's opaque dir: drop what lower layers put there, keep this layer's."""
        sub = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            for entry in os.listdir(sub):
                child = f"{dirpath}/{entry}" if dirpath else entry
                if child not in self.written:
                    self.remove(sub, entry)
                    continue
                st = self.lstat(sub, entry)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    cfd = os.open(entry, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=sub)
                    try:
                        self.empty_lower(cfd, child)
                    finally:
                        os.close(cfd)
        finally:
            os.close(sub)

    # -------------------------------------------------------------- metadata
    def metadata(self, fd, name, m, path):
        """Owner, mode, xattrs and mtime of ``name`` in ``fd`` (the root when path is '')."""
        if path:
            proc_path = f"/proc/self/fd/{fd}/{name}"
            target, kw = name, {"dir_fd": fd, "follow_symlinks": False}
        else:
            proc_path = target = f"/proc/self/fd/{fd}"
            kw = {}
        try:
            os.chown(target, m.uid, m.gid, **kw)
        except OSError as err:
            if self.is_root or err.errno not in (errno.EPERM, errno.EINVAL):
                raise
        if not m.issym():
            # After chown, which clears set-id bits.
            os.chmod(target, stat.S_IMODE(m.mode), **kw)
        self.xattrs(proc_path, m)
        ns = m.mtime_ns
        if m.isdir():
            self.dir_times[path] = ns
        else:
            os.utime(target, ns=(ns, ns), **kw)

    def file_metadata(self, fd, m):
        """Owner, mode, xattrs and mtime of the regular file open as ``fd``."""
        try:
            os.fchown(fd, m.uid, m.gid)
        except OSError as err:
            if self.is_root or err.errno not in (errno.EPERM, errno.EINVAL):
                raise
        os.fchmod(fd, stat.S_IMODE(m.mode))  # after chown, which clears set-id bits
        if m.pax_headers:
            self.xattrs(fd, m)
        os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))

    def xattrs(self, proc_path, m):
        """Set ``m``'s xattrs on ``proc_path`` (a /proc/self/fd path, or an open fd)."""
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                attr = key[len("SCHILY.xattr."):]
                data = value.encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                import base64
                import urllib.parse

                attr = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
                data = base64.b64decode(value + "=" * (-len(value) % 4))
            else:
                continue
            if attr.startswith("trusted.overlay."):
                # Would change what overlayfs shows (opaque, redirect, metacopy).
                self.warn(f"layer: entry {m.name}: ignoring xattr {attr}")
                continue
            try:
                if isinstance(proc_path, int):
                    os.setxattr(proc_path, attr, data)
                else:
                    os.setxattr(proc_path, attr, data, follow_symlinks=False)
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL,
                                     errno.ERANGE, errno.E2BIG):
                    raise
                self.warn(f"layer: entry {m.name}: cannot set xattr {attr}: {err.strerror}")

    def warn(self, line):
        log.warning("%s", line)
        if self.warnings is not None:
            self.warnings.append(line)

    def finish_dirs(self):
        # Deepest first, so a parent's time is set after its last change.
        for path in sorted(self.dir_times, key=lambda p: -p.count("/") - bool(p)):
            ns = self.dir_times[path]
            parent, _, name = path.rpartition("/")
            try:
                fd = self.open_dir(parent)
            except FileNotFoundError:
                continue  # removed by a later whiteout
            try:
                if path:
                    os.utime(name, ns=(ns, ns), dir_fd=fd, follow_symlinks=False)
                else:
                    os.utime(f"/proc/self/fd/{fd}", ns=(ns, ns))
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
