"""The container's filesystem: mounts inside the rootfs, /dev, pivot_root, masked paths.

Runs in the container init after it entered its new mount namespace. Every mount target is
opened below the rootfs with openat2(RESOLVE_IN_ROOT) and mounted through /proc/self/fd/N,
so a symlink swapped in by a hostile image can never point a mount outside the rootfs
(the CVE-2021-30465 class). Mounts whose target resolves into /proc are refused, except
proc itself and the few files runc allows (CVE-2019-16884); proc and sysfs may not be
mounted through a symlink.
"""

import errno
from berth.sys import fastos as os
import stat

from berth.errors import InvalidArgument, PermissionDenied
from berth.sys import consts as C
from berth.sys import linux

_FLAGS = {
    # option: (flags to set, flags to clear)
    "defaults": (0, 0),
    "ro": (C.MS_RDONLY, 0), "rw": (0, C.MS_RDONLY),
    "nosuid": (C.MS_NOSUID, 0), "suid": (0, C.MS_NOSUID),
    "nodev": (C.MS_NODEV, 0), "dev": (0, C.MS_NODEV),
    "noexec": (C.MS_NOEXEC, 0), "exec": (0, C.MS_NOEXEC),
    "sync": (C.MS_SYNCHRONOUS, 0), "async": (0, C.MS_SYNCHRONOUS),
    "dirsync": (C.MS_DIRSYNC, 0),
    "remount": (C.MS_REMOUNT, 0),
    "mand": (C.MS_MANDLOCK, 0), "nomand": (0, C.MS_MANDLOCK),
    "noatime": (C.MS_NOATIME, 0), "atime": (0, C.MS_NOATIME),
    "nodiratime": (C.MS_NODIRATIME, 0), "diratime": (0, C.MS_NODIRATIME),
    "relatime": (C.MS_RELATIME, 0), "norelatime": (0, C.MS_RELATIME),
    "strictatime": (C.MS_STRICTATIME, 0), "nostrictatime": (0, C.MS_STRICTATIME),
    "lazytime": (C.MS_LAZYTIME, 0), "nolazytime": (0, C.MS_LAZYTIME),
    "iversion": (1 << 23, 0), "noiversion": (0, 1 << 23),
    "nosymfollow": (C.MS_NOSYMFOLLOW, 0), "symfollow": (0, C.MS_NOSYMFOLLOW),
    "silent": (C.MS_SILENT, 0), "loud": (0, C.MS_SILENT),
    "bind": (C.MS_BIND, 0), "rbind": (C.MS_BIND | C.MS_REC, 0),
}

PROPAGATION = {
    "private": C.MS_PRIVATE, "rprivate": C.MS_PRIVATE | C.MS_REC,
    "shared": C.MS_SHARED, "rshared": C.MS_SHARED | C.MS_REC,
    "slave": C.MS_SLAVE, "rslave": C.MS_SLAVE | C.MS_REC,
    "unbindable": C.MS_UNBINDABLE, "runbindable": C.MS_UNBINDABLE | C.MS_REC,
}

# Extensions berth handles itself rather than passing to the kernel.
_EXTENSIONS = ("tmpcopyup",)

# The files below /proc that runc lets a bind mount cover (lxcfs-style overrides).
_PROC_ALLOWED = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                 "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
                 "/proc/net/dev", "/proc/sys/kernel/ns_last_pid")

_DEFAULT_DEVICES = (
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
    ("tty", 5, 0),
)
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))


def parse_options(options, where="mounts"):
    """(flags, propagation flags, data string, extensions) for a mount's options."""
    flags = 0
    propagation = []
    data = []
    extensions = []
    for opt in options:
        entry = _FLAGS.get(opt)
        if entry is not None:
            flags = (flags | entry[0]) & ~entry[1]
        elif opt in PROPAGATION:
            propagation.append(PROPAGATION[opt])
        elif opt in _EXTENSIONS:
            extensions.append(opt)
        elif opt in ("rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
                     "idmap", "ridmap"):
            raise InvalidArgument(f"{where}: mount option {opt} is not supported")
        else:
            data.append(opt)
    return flags, propagation, ",".join(data), extensions


class Rootfs:
    """Sets up one container's filesystem below ``path`` (the bundle's root, absolute)."""

    def __init__(self, spec, bundle, path, cgroup_ready=None):
        self.spec = spec
        # Called before the first cgroup mount; returns [(host dir, name below the mount)].
        self.cgroup_ready = cgroup_ready or (lambda: [])
        self.bundle = bundle
        self.path = path.rstrip("/") or "/"
        self.rootfd = -1
        self.bind_dev = False

    # ---- the steps, in the order init calls them

    def prepare(self):
        # Cut the whole copy of the host's tree from the host first, recursively whatever
        # rootfsPropagation says: nothing mounted below may reach back to the host. The
        # configured propagation is applied to the new "/" in finish().
        prop = self.spec.linux.rootfs_propagation
        private = prop in ("private", "rprivate")
        linux.mount(None, "/", None, (C.MS_PRIVATE if private else C.MS_SLAVE) | C.MS_REC)
        linux.mount(self.path, self.path, "bind", C.MS_BIND | C.MS_REC)
        self.rootfd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def mount_all(self, in_userns=False):
        """Every mount, then /dev's nodes. The cgroup mounts that can wait come after the
        nodes: they need the runtime to have finished the cgroups, which it does meanwhile.
        (The nodes are made while this process is still in the runtime's cgroup, so the
        container's device rules never stand in the way of mknod.)"""
        entries, deferred = self._mount_order()
        for i, m, dest in entries:
            if m.destination == "/dev" and m.type == "bind":
                self.bind_dev = True
            self._mount_one(m, dest, f"mounts[{i}]")
        self.make_devices(in_userns)
        for i, m, dest in deferred:
            self._mount_one(m, dest, f"mounts[{i}]")

    def _mount_order(self):
        """(mounts in config order, cgroup mounts set aside): a cgroup mount that nothing
        later sits on waits for the runtime to finish the cgroups, so it goes last."""
        entries = []
        for i, m in enumerate(self.spec.mounts):
            dest = m.destination if m.destination.startswith("/") else "/" + m.destination
            entries.append((i, m, dest.rstrip("/") or "/"))
        deferred = []
        for pos, (i, m, dest) in enumerate(entries):
            if m.type in ("cgroup", "cgroup2") and not any(
                    d == dest or d.startswith(dest + "/") or dest.startswith(d + "/")
                    for _, _, d in entries[pos + 1:]):
                deferred.append((i, m, dest))
        return [e for e in entries if e not in deferred], deferred

    def make_devices(self, in_userns):
        self._dirs = {}  # directory -> O_PATH fd, opened once for all the nodes in it
        try:
            self._make_devices(in_userns)
        finally:
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs = {}

    def _parent(self, head, where):
        fd = self._dirs.get(head)
        if fd is None:
            fd = self._target("/" + head, is_dir=True, where=where) if head else os.dup(
                self.rootfd)
            self._dirs[head] = fd
        return fd

    def _make_devices(self, in_userns):
        if not self.bind_dev and self._has_dev_tmpfs():
            for name, major, minor in _DEFAULT_DEVICES:
                self._device(f"/dev/{name}", "c", major, minor, 0o666, 0, 0, in_userns)
            for name, target in _DEV_LINKS:
                self._symlink(target, f"/dev/{name}")
            if os.path.exists("/proc/kcore"):
                self._symlink("/proc/kcore", "/dev/core")
            self._symlink("pts/ptmx", "/dev/ptmx")
        for i, d in enumerate(self.spec.linux.devices):
            mode = d.file_mode if d.file_mode is not None else 0o666
            self._device(d.path, d.type, d.major, d.minor, mode, d.uid or 0, d.gid or 0,
                         in_userns, where=f"linux.devices[{i}]")

    def open_in_root(self, path, flags):
        """Open ``path`` as the container will see it (symlinks resolved inside the root),
        before pivot_root; never a host path an image's link points at."""
        return linux.openat2(self.rootfd, path.lstrip("/") or ".", flags, 0,
                             linux.RESOLVE_IN_ROOT)

    def bind_console(self, slave_path):
        fd = self._target("/dev/console", is_dir=False, where="console")
        try:
            linux.mount(slave_path, f"/proc/self/fd/{fd}", None, C.MS_BIND)
        finally:
            os.close(fd)

    def pivot(self, no_pivot=False):
        os.close(self.rootfd)
        self.rootfd = -1
        os.chdir(self.path)
        if no_pivot:
            linux.mount(self.path, "/", None, C.MS_MOVE)
            os.chroot(".")
        else:
            linux.pivot_root(".", ".")
            # The old root is stacked over "/" now; detach it. It is already a slave or
            # private (prepare), so the unmount cannot reach the host. It must not be made
            # rslave through ".": that path names the new root, and would turn the
            # container's shared mounts private.
            linux.umount(".", C.MNT_DETACH)
        os.chdir("/")

    def finish(self):
        """After pivot_root: readonly and masked paths, a readonly root, propagation."""
        lx = self.spec.linux
        for p in lx.readonly_paths:
            self._readonly(p)
        for p in lx.masked_paths:
            self._mask(p)
        if self.spec.root.readonly:
            _remount_ro("/", recursive=False)
        prop = lx.rootfs_propagation
        if prop and prop not in ("private", "rprivate", "slave", "rslave"):
            linux.mount(None, "/", None, PROPAGATION[prop])

    # ---- one mount

    def _mount_one(self, m, dest, where):
        flags, propagation, data, extensions = parse_options(m.options, f"{where}.options")
        kind = m.type
        is_bind = bool(flags & C.MS_BIND) or kind == "bind"
        existing = self._check_dest(dest, kind, is_bind, where)
        if kind in ("cgroup", "cgroup2"):
            if existing is not None:
                os.close(existing)
            self._mount_cgroup(m, dest, flags, where)
            return
        if is_bind:
            source = m.source if m.source.startswith("/") else os.path.join(self.bundle, m.source)
            try:
                st = os.stat(source)
            except OSError as err:
                if existing is not None:
                    os.close(existing)
                raise InvalidArgument(f"{where}.source: {source}: {err.strerror}") from None
            fd = existing if existing is not None else self._target(
                dest, is_dir=stat.S_ISDIR(st.st_mode), where=where)
            try:
                linux.mount(source, f"/proc/self/fd/{fd}", None,
                            C.MS_BIND | (flags & C.MS_REC))
            finally:
                os.close(fd)
            extra = flags & ~(C.MS_BIND | C.MS_REC | C.MS_REMOUNT)
            if extra:
                self._remount(dest, C.MS_BIND | C.MS_REMOUNT | extra, where)
        else:
            fd = existing if existing is not None else self._target(dest, is_dir=True,
                                                                    where=where)
            try:
                if "tmpcopyup" in extensions:
                    self._tmpcopyup(fd, m, flags, data)
                else:
                    linux.mount(m.source or kind, f"/proc/self/fd/{fd}", kind, flags,
                                data or None)
            finally:
                os.close(fd)
        for prop in propagation:
            fd = self._target(dest, is_dir=None, where=where)
            try:
                linux.mount(None, f"/proc/self/fd/{fd}", None, prop)
            finally:
                os.close(fd)

    def _mount_cgroup(self, m, dest, flags, where):
        """A cgroup filesystem showing the container's own cgroups.

        In its own cgroup namespace the container gets real cgroup mounts, whose root is its
        cgroup (one mount per hierarchy); otherwise its cgroup directories are bound from
        the host's hierarchies and remounted with the mount's flags.
        """
        base = C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC
        ro = flags & C.MS_RDONLY
        hierarchies = [tuple(h) for h in self.cgroup_ready()]
        cgroup_ns = self.spec.linux.namespace("cgroup")
        direct = cgroup_ns is not None and not cgroup_ns.path
        unified = len(hierarchies) == 1 and hierarchies[0][1] == ""
        fd = self._target(dest, is_dir=True, where=where)
        try:
            target = f"/proc/self/fd/{fd}"
            if unified and direct:
                linux.mount("cgroup2", target, "cgroup2", base | ro)
                return
            if unified:
                linux.mount(hierarchies[0][0], target, None, C.MS_BIND | C.MS_REC)
            else:
                linux.mount("tmpfs", target, "tmpfs", base, "mode=755")
        finally:
            os.close(fd)
        if not unified:
            for source, name in hierarchies:
                sub_dest = f"{dest.rstrip('/')}/{name}"
                sfd = self._target(sub_dest, is_dir=True, where=where)
                try:
                    if direct:
                        options = name if not name.startswith("name=") else "none," + name
                        linux.mount("cgroup", f"/proc/self/fd/{sfd}", "cgroup", base | ro,
                                    options)
                        continue
                    linux.mount(source, f"/proc/self/fd/{sfd}", None, C.MS_BIND | C.MS_REC)
                finally:
                    os.close(sfd)
                self._remount(sub_dest, C.MS_BIND | C.MS_REMOUNT | base | ro, where)
        if ro:
            self._remount(dest, C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY | base, where)

    def _tmpcopyup(self, fd, m, flags, data):
        """Mount a tmpfs over a directory, carrying its existing content up into it."""
        import shutil
        import tempfile

        stage = tempfile.mkdtemp(prefix=".berth-tmpcopyup-", dir="/tmp")
        try:
            linux.mount(m.source or "tmpfs", stage, "tmpfs", flags, data or None)
            src = f"/proc/self/fd/{fd}"
            for name in os.listdir(src):
                s = os.path.join(src, name)
                d = os.path.join(stage, name)
                if os.path.isdir(s) and not os.path.islink(s):
                    shutil.copytree(s, d, symlinks=True)
                else:
                    shutil.copy2(s, d, follow_symlinks=False)
            linux.mount(stage, src, None, C.MS_MOVE)
        finally:
            os.rmdir(stage)

    # ---- safe paths inside the rootfs

    def _check_dest(self, dest, kind, is_bind, where):
        rel = dest.lstrip("/")
        if kind in ("proc", "sysfs"):
            try:
                st = os.stat(rel, dir_fd=self.rootfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise PermissionDenied(f"{where}.destination: {dest} is a symlink; "
                                       f"refusing to mount {kind} through it")
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise PermissionDenied(f"{where}.destination: {dest} is not a directory")
        resolved, fd = self._resolve(dest)
        try:
            self._check_resolved(dest, resolved, kind, is_bind, where)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        return fd

    @staticmethod
    def _check_resolved(dest, resolved, kind, is_bind, where):
        if resolved == "/proc" and kind != "proc":
            raise PermissionDenied(f"{where}.destination: mounting {kind or 'a bind'} over "
                                   f"/proc is not allowed")
        if resolved.startswith("/proc/"):
            if not (is_bind and resolved in _PROC_ALLOWED):
                raise PermissionDenied(f"{where}.destination: {dest} resolves to {resolved}, "
                                       f"inside /proc: not allowed")
        if kind == "proc" and resolved != dest.rstrip("/"):
            raise PermissionDenied(f"{where}.destination: {dest} resolves to {resolved}; "
                                   f"proc may only be mounted on a real directory")

    def _resolve(self, dest):
        """(the path ``dest`` reaches inside the rootfs, following its symlinks in the root;
        an O_PATH fd on it when it exists already, else None)."""
        parts = [p for p in dest.split("/") if p and p != "."]
        # Resolve the longest existing prefix; the rest will be created as plain directories.
        for cut in range(len(parts), -1, -1):
            prefix = "/".join(parts[:cut]) or "."
            try:
                fd = linux.openat2(self.rootfd, prefix, os.O_PATH, 0, linux.RESOLVE_IN_ROOT)
            except FileNotFoundError:
                continue
            except OSError:
                continue
            try:
                real = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                os.close(fd)
                raise
            if cut != len(parts):
                os.close(fd)
                fd = None
            inside = real[len(self.path):] if real.startswith(self.path) else real
            tail = "/".join(parts[cut:])
            base = inside.rstrip("/") or ""
            return ((base + "/" + tail).rstrip("/") if tail else (base or "/")), fd
        return dest, None

    def _target(self, dest, is_dir, where):
        """An O_PATH fd on ``dest`` inside the rootfs, creating it (dirs, or a file) if absent.

        Every open is below the root fd with RESOLVE_IN_ROOT, so no symlink, '..' or swap
        made meanwhile leads outside. A dangling symlink is followed as the container would
        follow it, and what it names is created inside the root.
        """
        rel = dest.strip("/")
        try:
            return linux.openat2(self.rootfd, rel or ".", os.O_PATH, 0, linux.RESOLVE_IN_ROOT)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise InvalidArgument(f"{where}.destination: {dest}: {err.strerror}") from None
        if ".." in rel.split("/"):
            raise InvalidArgument(f"{where}.destination: {dest} contains '..'")
        try:
            return self._create_in_root(rel, is_dir)
        except OSError as err:
            raise InvalidArgument(f"{where}.destination: cannot create {dest} in the rootfs: "
                                  f"{err.strerror}") from None

    def _create_in_root(self, rel, is_dir):
        done = []  # the path resolved so far: real directories below the root
        todo = [p for p in reversed(rel.split("/")) if p and p != "."]
        links = 0
        while todo:
            name = todo.pop()
            if name == "..":  # from a symlink's text: clamped at the root, like the kernel
                if done:
                    done.pop()
                continue
            try:
                fd = linux.openat2(self.rootfd, "/".join(done + [name]),
                                   os.O_PATH | os.O_NOFOLLOW, 0, linux.RESOLVE_IN_ROOT)
            except FileNotFoundError:
                parent = linux.openat2(self.rootfd, "/".join(done) or ".",
                                       os.O_PATH | os.O_DIRECTORY, 0, linux.RESOLVE_IN_ROOT)
                try:
                    if not todo and is_dir is False:
                        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                                         | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=parent))
                    else:
                        os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass  # made meanwhile: look again
                finally:
                    os.close(parent)
                todo.append(name)
                continue
            try:
                if stat.S_ISLNK(os.fstat(fd).st_mode):
                    links += 1
                    if links > 40:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                    text = os.readlink("", dir_fd=fd)
                    if text.startswith("/"):
                        done = []
                    todo.extend(p for p in reversed(text.split("/")) if p and p != ".")
                else:
                    done.append(name)
            finally:
                os.close(fd)
        return linux.openat2(self.rootfd, "/".join(done) or ".", os.O_PATH, 0,
                             linux.RESOLVE_IN_ROOT)

    def _remount(self, dest, flags, where):
        fd = self._target(dest, is_dir=None, where=where)
        try:
            target = f"/proc/self/fd/{fd}"
            try:
                linux.mount(None, target, None, flags)
            except PermissionError:
                # In a user namespace, locked flags of the original mount must be kept.
                locked = _statvfs_flags(target)
                linux.mount(None, target, None, flags | locked)
        finally:
            os.close(fd)

    def _has_dev_tmpfs(self):
        return any(m.destination.rstrip("/") == "/dev" and m.type != "bind"
                   for m in self.spec.mounts)

    def _device(self, path, kind, major, minor, mode, uid, gid, in_userns,
                where="devices"):
        head, name = os.path.split(path.lstrip("/"))
        pfd = self._parent(head, where)
        try:
            os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise InvalidArgument(f"{where}.path: {path} is a directory") from None
        if in_userns:
            # mknod is not allowed in a user namespace: bind the host's node instead.
            cfd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC,
                          0o644, dir_fd=pfd)
            os.close(cfd)
            fd = linux.openat2(pfd, name, os.O_PATH, 0, linux.RESOLVE_IN_ROOT)
            try:
                linux.mount(path, f"/proc/self/fd/{fd}", None, C.MS_BIND)
            finally:
                os.close(fd)
            return
        kind_bits = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                     "p": stat.S_IFIFO}[kind]
        os.mknod(name, kind_bits | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
        os.chmod(name, mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)

    def _symlink(self, target, path):
        head, name = os.path.split(path.lstrip("/"))
        try:
            os.symlink(target, name, dir_fd=self._parent(head, "devices"))
        except FileExistsError:
            pass

    # ---- after pivot_root (plain paths are inside the container now)

    def _readonly(self, path):
        try:
            linux.mount(path, path, None, C.MS_BIND | C.MS_REC)
        except FileNotFoundError:
            return
        _remount_ro(path, recursive=True)

    def _mask(self, path):
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", path, "tmpfs", C.MS_RDONLY, None)
        else:
            linux.mount("/dev/null", path, None, C.MS_BIND)


def _statvfs_flags(path):
    f = os.statvfs(path).f_flag
    out = 0
    for bit, ms in ((os.ST_NOSUID, C.MS_NOSUID), (os.ST_NODEV, C.MS_NODEV),
                    (os.ST_NOEXEC, C.MS_NOEXEC), (os.ST_RDONLY, C.MS_RDONLY),
                    (os.ST_NOATIME, C.MS_NOATIME), (os.ST_NODIRATIME, C.MS_NODIRATIME),
                    (os.ST_RELATIME, C.MS_RELATIME)):
        if f & bit:
            out |= ms
    return out


def _remount_ro(path, recursive):
    flags = C.MS_BIND | C.MS_REMOUNT | C.MS_RDONLY | (C.MS_REC if recursive else 0)
    try:
        linux.mount(None, path, None, flags | _statvfs_flags(path))
    except PermissionError:
        linux.mount(None, path, None, flags | _statvfs_flags(path))
