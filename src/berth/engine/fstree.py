"""File trees walked and written through directory fds, never through path strings.

A container's processes may change its tree while berth reads or writes it (swap a
directory for a symlink to /, the CVE-2018-15664 class). So a path inside a container is
resolved once, with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) below an fd of its
root (``open_in_root``), and everything after works relative to directory fds with
O_NOFOLLOW: a symlink met below that point is copied as a symlink, never followed.

Three walkers share one writer (``_Writer``): ``copy_entry`` copies a tree fd to fd (volume
fill, `berth cp` to and from a path), ``tar_entry`` streams one as tar members (`berth cp
... -`, commit's layer, with overlay whiteouts turned into OCI ones), ``extract`` writes tar
members below a directory fd (`berth cp - ...`). Owners, modes, times, xattrs and hard
links are kept; ``owner`` chooses whose files they become.
"""

import errno
import os
import stat

from berth.errors import Conflict, InvalidArgument, NotFound, from_oserror

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"

# owner: KEEP copies the source's ids, NONE leaves what the creating process gets,
# a (uid, gid) tuple sets those.
KEEP = "keep"
NONE = "none"


def open_in_root(root_fd, path, flags=os.O_PATH, *, what="path"):
    """An fd of ``path`` resolved inside the tree of ``root_fd`` (symlinks, .. and absolute
    links stay inside it; magic links refused). NotFound when it is not there."""
    from berth.sys.linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    rel = path.lstrip("/") or "."
    try:
        return openat2(root_fd, rel, flags | os.O_CLOEXEC,
                       resolve=RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"Could not find the file {path} in container") from None
        if err.errno == errno.ELOOP:
            raise InvalidArgument(f"{what} {path}: too many levels of symbolic links") \
                from None
        raise from_oserror(err, f"open {path}") from None


def lstat_at(dir_fd, name, follow=False):
    """stat of ``name`` in ``dir_fd``; None when absent."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=follow)
    except FileNotFoundError:
        return None


def _xattrs(fd_path):
    """{name: bytes} of a file given as /proc/self/fd/N[/name] (symlinks not followed)."""
    try:
        names = os.listxattr(fd_path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = os.getxattr(fd_path, n, follow_symlinks=False)
        except OSError:
            continue
    return out


class Meta:
    """What a writer needs of one entry: kind, mode, ids, times, xattrs, link target."""

    __slots__ = ("mode", "uid", "gid", "mtime_ns", "xattrs", "linkname", "rdev", "size")

    def __init__(self, mode, uid, gid, mtime_ns, xattrs=None, linkname="", rdev=0, size=0):
        self.mode, self.uid, self.gid, self.mtime_ns = mode, uid, gid, mtime_ns
        self.xattrs = xattrs or {}
        self.linkname, self.rdev, self.size = linkname, rdev, size

    @classmethod
    def of(cls, st, xattrs=None, linkname=""):
        return cls(st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, xattrs, linkname,
                   st.st_rdev, st.st_size)


class _Writer:
    """Creates entries below directory fds: replaces files, keeps directories, refuses to
    put a directory over a file or the reverse (Docker's words)."""

    def __init__(self, owner=KEEP):
        self.owner = owner
        self.fds = []        # fds this writer keeps open until close()
        self.dir_times = []  # (dir fd, ns): set once the directory's children are written

    def _ids(self, meta):
        if self.owner == KEEP:
            return meta.uid, meta.gid
        if self.owner == NONE:
            return None
        return self.owner

    def _clear(self, parent, name, want_dir):
        st = lstat_at(parent, name)
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return True
            raise Conflict(f"cannot overwrite directory \"{name}\" with non-directory")
        if want_dir:
            raise Conflict(f"cannot overwrite non-directory \"{name}\" with directory")
        os.unlink(name, dir_fd=parent)
        return False

    def keep(self, fd):
        self.fds.append(fd)
        return fd

    def mkdir(self, parent, name, meta, *, later=True):
        """The fd (O_RDONLY) of directory ``name``, made when missing. With ``later`` its
        times are set and the fd closed by close(); else the caller calls finish_dir."""
        if not self._clear(parent, name, True):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            self._finish(fd, meta)
        except BaseException:
            os.close(fd)
            raise
        if later:
            self.keep(fd)
            self.dir_times.append((fd, meta.mtime_ns))
        return fd

    @staticmethod
    def finish_dir(fd, meta):
        os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))

    def file(self, parent, name, meta, read):
        """A regular file ``name`` filled by ``read(n) -> bytes``."""
        self._clear(parent, name, False)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            self._finish(fd, meta)
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        finally:
            os.close(fd)

    def symlink(self, parent, name, meta):
        self._clear(parent, name, False)
        os.symlink(meta.linkname, name, dir_fd=parent)
        ids = self._ids(meta)
        if ids:
            os.chown(name, *ids, dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent,
                 follow_symlinks=False)

    def node(self, parent, name, meta):
        """A device or fifo (sockets are skipped, as tar does)."""
        if stat.S_ISSOCK(meta.mode):
            return
        self._clear(parent, name, False)
        if stat.S_ISFIFO(meta.mode):
            os.mkfifo(name, 0o600, dir_fd=parent)
        else:
            os.mknod(name, stat.S_IFMT(meta.mode) | 0o600, meta.rdev, dir_fd=parent)
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            ids = self._ids(meta)
            if ids:
                os.chown(name, *ids, dir_fd=parent, follow_symlinks=False)
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(meta.mode))
            os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent,
                     follow_symlinks=False)
        finally:
            os.close(fd)

    def hardlink(self, parent, name, src_parent, src_name):
        self._clear(parent, name, False)
        os.link(src_name, name, src_dir_fd=src_parent, dst_dir_fd=parent,
                follow_symlinks=False)

    def _finish(self, fd, meta):
        ids = self._ids(meta)
        if ids:
            os.fchown(fd, *ids)
        os.fchmod(fd, stat.S_IMODE(meta.mode))  # after chown, which clears set-id bits
        for key, value in meta.xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.E2BIG,
                                     errno.ERANGE):
                    raise

    def close(self):
        """Set the directories' times (children first) and close the fds kept."""
        for fd, ns in reversed(self.dir_times):
            try:
                os.utime(fd, ns=(ns, ns))
            except OSError:
                pass
        for fd in self.fds:
            os.close(fd)
        self.fds, self.dir_times = [], []


def _read_meta(parent, name, follow):
    st = os.stat(name, dir_fd=parent, follow_symlinks=follow)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(name, dir_fd=parent)
        xattrs = {}
    else:
        xattrs = _xattrs(f"/proc/self/fd/{parent}/{name}")
    return st, Meta.of(st, {k: v for k, v in xattrs.items()
                            if not k.startswith("trusted.overlay.")}, link)


def _open_file(parent, name, follow):
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC |
                 (0 if follow else os.O_NOFOLLOW), dir_fd=parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Conflict(f"{name}: changed while being copied")
    return fd


def _open_dir(parent, name, follow):
    return os.open(name, _DIR_FLAGS & ~(os.O_NOFOLLOW if follow else 0), dir_fd=parent)


def copy_entry(src_parent, name, dst_parent, dst_name, *, follow=False, owner=KEEP,
               into=False):
    """Copy ``name`` (below fd ``src_parent``) to ``dst_name`` below ``dst_parent``; with
    ``into`` a directory's contents go straight into ``dst_parent`` (whose own owner and
    mode become the source's). ``follow`` follows ``name`` itself when it is a symlink
    (never anything below it)."""
    w = _Writer(owner)
    try:
        if into:
            st, meta = _read_meta(src_parent, name, follow)
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{name}: not a directory")
            w._finish(dst_parent, meta)
            sfd = _open_dir(src_parent, name, follow)
            links = {}
            try:
                for entry in sorted(os.listdir(sfd)):
                    _copy(w, links, sfd, entry, dst_parent, entry, False)
            finally:
                os.close(sfd)
            w.finish_dir(dst_parent, meta)
        else:
            _copy(w, {}, src_parent, name, dst_parent, dst_name, follow)
    except OSError as err:
        raise from_oserror(err, f"copy {name}") from None
    finally:
        w.close()


def _copy(w, links, src_parent, name, dst_parent, dst_name, follow):
    st, meta = _read_meta(src_parent, name, follow)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        sfd = _open_dir(src_parent, name, follow)
        try:
            dfd = w.mkdir(dst_parent, dst_name, meta, later=False)
            try:
                for entry in sorted(os.listdir(sfd)):
                    _copy(w, links, sfd, entry, dfd, entry, False)
                w.finish_dir(dfd, meta)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            w.hardlink(dst_parent, dst_name, *links[key])
            return
        fd = _open_file(src_parent, name, follow)
        try:
            w.file(dst_parent, dst_name, meta, lambda n: os.read(fd, n))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            links[key] = (w.keep(os.dup(dst_parent)), dst_name)
    elif stat.S_ISLNK(mode):
        w.symlink(dst_parent, dst_name, meta)
    else:
        w.node(dst_parent, dst_name, meta)


# ---------------------------------------------------------------- tar

def _tarinfo(arcname, st, meta):
    import tarfile

    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = st.st_mtime_ns / 1e9
    info.uname = info.gname = ""
    for key, value in meta.xattrs.items():
        info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return info


def tar_entry(tar, src_parent, name, arcname, *, follow=False, overlay=False, links=None):
    """Add ``name`` below fd ``src_parent`` to ``tar`` (a tarfile open for writing) as
    ``arcname``, recursively. ``overlay``: the tree is an overlayfs upper directory, whose
    whiteouts (0:0 character devices) and opaque directories become OCI whiteout files."""
    import tarfile

    links = {} if links is None else links
    st, meta = _read_meta(src_parent, name, follow)
    mode = st.st_mode
    info = _tarinfo(arcname, st, meta)
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        sfd = _open_dir(src_parent, name, follow)
        try:
            prefix = arcname.rstrip("/") + "/" if arcname not in ("", ".") else ""
            if overlay and _opaque(sfd):
                tar.addfile(_plain(prefix + OPAQUE, tarfile))
            for entry in sorted(os.listdir(sfd)):
                tar_entry(tar, sfd, entry, prefix + entry, overlay=overlay, links=links)
        finally:
            os.close(sfd)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[key]
            tar.addfile(info)
            return
        fd = _open_file(src_parent, name, follow)
        try:
            info.size = os.fstat(fd).st_size
            with os.fdopen(os.dup(fd), "rb") as f:
                tar.addfile(info, _Exactly(f, info.size))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            links[key] = arcname
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, meta.linkname
        tar.addfile(info)
    elif stat.S_ISCHR(mode) and overlay and st.st_rdev == 0:
        head, _, base = arcname.rpartition("/")
        tar.addfile(_plain((head + "/" if head else "") + WHITEOUT_PREFIX + base, tarfile))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        info.type = (tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                     if stat.S_ISBLK(mode) else tarfile.FIFOTYPE)
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)


def _plain(name, tarfile):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def _opaque(fd):
    try:
        return os.getxattr(fd, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


class _Exactly:
    """A file that yields exactly ``size`` bytes: zeros if it shrank while being read."""

    def __init__(self, f, size):
        self.f, self.left = f, size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def extract(tar, dst_fd, *, owner=KEEP):
    """Write the members of ``tar`` (a tarfile open for reading, a stream is fine) below
    directory fd ``dst_fd``. A member's parents must be directories below it: a symlink
    on the way is refused, not followed."""
    _more_fds()
    w = _Writer(owner)
    opened = {}  # relative dir path -> fd (kept by the writer)
    try:
        for m in tar:
            parts = _member_parts(m.name)
            if not parts:
                continue
            parent = _dir_fd(w, opened, dst_fd, parts[:-1])
            name = parts[-1]
            meta = Meta(m.mode | _kind_bits(m), m.uid, m.gid, int(m.mtime * 1e9),
                        _pax_xattrs(m), m.linkname,
                        os.makedev(m.devmajor, m.devminor) if m.ischr() or m.isblk() else 0)
            if m.isdir():
                opened["/".join(parts)] = w.mkdir(parent, name, meta)
            elif m.isreg():
                f = tar.extractfile(m)
                w.file(parent, name, meta, f.read)
            elif m.issym():
                w.symlink(parent, name, meta)
            elif m.islnk():
                target = _member_parts(m.linkname)
                if not target:
                    raise InvalidArgument(f"invalid hard link {m.name} -> {m.linkname}")
                w.hardlink(parent, name, _dir_fd(w, opened, dst_fd, target[:-1]), target[-1])
            elif m.ischr() or m.isblk() or m.isfifo():
                w.node(parent, name, meta)
    except OSError as err:
        raise from_oserror(err, "extract") from None
    finally:
        w.close()


def _more_fds():
    """A tar stream's directories are kept open until its end: raise the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _member_parts(name):
    parts = [p for p in name.split("/") if p and p != "."]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"invalid tar member {name!r}: it leaves the destination")
    return parts


def _kind_bits(m):
    return (stat.S_IFDIR if m.isdir() else stat.S_IFLNK if m.issym() else
            stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else
            stat.S_IFIFO if m.isfifo() else stat.S_IFREG)


def _pax_xattrs(m):
    return {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
            for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")
            and not k.startswith("SCHILY.xattr.trusted.overlay.")}


def _dir_fd(w, opened, top, parts):
    """The fd of directory ``parts`` below ``top``, made (0755, root) where missing."""
    if not parts:
        return top
    key = "/".join(parts)
    if key in opened:
        return opened[key]
    parent = _dir_fd(w, opened, top, parts[:-1])
    try:
        fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        os.mkdir(parts[-1], 0o755, dir_fd=parent)
        fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Conflict(f"cannot extract below {key}: not a directory") from None
        raise
    opened[key] = w.keep(fd)
    return fd
