"""`berth cp`: copies between a container's tree (its snapshot, volumes and binds) and the
host, or a tar stream, with Docker's path rules.

The container's tree is reached through one directory fd (``_in_container``):
- running (or paused): /proc/<pid>/root of its init, the root its processes see, with
  every mount they see;
- stopped: a forked child unshares a private mount namespace, mounts the snapshot and the
  container's bind mounts (volumes included, each target resolved inside the root), and
  does the whole copy there; its mounts vanish with it, whatever happens.
Every path inside is resolved by ``fstree.open_in_root`` and every entry below it is
reached through fds with O_NOFOLLOW (see fstree), so a container that plants or swaps
symlinks cannot make berth read or write outside its tree.
"""

import json
import os
import stat

from berth import errors
from berth.engine import fstree
from berth.errors import Conflict, InvalidArgument, NotFound

_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE, _MS_BIND = 0x4000, 0x40000, 0x1000
_MS_RDONLY, _MS_REMOUNT = 0x1, 0x20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def split_target(arg):
    """("container", "path") of CONTAINER:PATH, or (None, arg) for a local path."""
    if arg == "-" or arg.startswith("/") or arg.startswith("."):
        return None, arg
    name, colon, path = arg.partition(":")
    if not colon or "/" in name:
        return None, arg
    return name, path


def copy_from_container(svc, name, src, dest, *, follow=False, archive=False, out=None):
    """Copy ``src`` of container ``name`` to host path ``dest`` ("-": a tar on ``out``)."""
    record = svc.get(name)

    def work(root):
        parent, base, contents = _source_in_root(root, src, follow, record["name"])
        try:
            if dest == "-":
                _tar_out(out, parent, base, "." if contents else _arcname(src), follow)
                return
            owner = fstree.KEEP if archive else fstree.NONE
            _copy_to(parent, base, contents, follow, owner, _host_dest(dest), src)
        finally:
            os.close(parent)
    _in_container(svc, record, work)


def copy_to_container(svc, name, src, dest, *, follow=False, archive=False, stdin=None):
    """Copy host path ``src`` ("-": a tar from ``stdin``) to ``dest`` in container ``name``."""
    record = svc.get(name)
    owner = fstree.KEEP if archive else (0, 0)
    if src != "-":
        src_parent, base, contents = _host_source(src, follow)
    else:
        src_parent = -1

    def work(root):
        if src == "-":
            import tarfile

            fd = _open_dest_dir(root, dest, record["name"])
            try:
                with tarfile.open(fileobj=stdin, mode="r|*") as tar:
                    fstree.extract(tar, fd, owner=owner)
            except tarfile.TarError as err:
                raise InvalidArgument(f"cp: reading the tar stream: {err}") from None
            finally:
                os.close(fd)
            return
        _copy_to(src_parent, base, contents, follow, owner,
                 _container_dest(root, dest, record["name"]), src)
    try:
        _in_container(svc, record, work)
    finally:
        if src_parent >= 0:
            os.close(src_parent)


# ---------------------------------------------------------------- path rules

def _arcname(path):
    base = os.path.basename(path.rstrip("/")) or "."
    return base


def _split(path):
    """(parent, name, contents) of a source path: ``dir/.`` copies dir's contents."""
    contents = path.endswith("/.") or path in (".", "/")
    trimmed = path[:-2] if path.endswith("/.") else path
    trimmed = trimmed.rstrip("/") or "/"
    if trimmed == "/":
        return "/", ".", True
    parent, _, name = trimmed.rpartition("/")
    return parent or ("/" if trimmed.startswith("/") else "."), name, contents


def _source_in_root(root, src, follow, cname):
    """(parent dir fd, name, contents) of ``src`` inside the container."""
    parent_path, name, contents = _split(src if src.startswith("/") else "/" + src)
    try:
        if follow and name != ".":
            fd = fstree.open_in_root(root, src, os.O_PATH)
            return os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY), str(fd), contents
        parent = fstree.open_in_root(root, parent_path, _DIR)
        st = fstree.lstat_at(parent, name)
    except NotFound:
        raise NotFound(f"Could not find the file {src} in container {cname}") from None
    if st is None:
        os.close(parent)
        raise NotFound(f"Could not find the file {src} in container {cname}")
    if (src.endswith("/") or contents) and not stat.S_ISDIR(st.st_mode):
        os.close(parent)
        raise InvalidArgument(f"{src}: not a directory")
    return parent, name, contents


def _host_source(src, follow):
    parent_path, name, contents = _split(src)
    try:
        st = os.stat(src.rstrip("/") or "/", follow_symlinks=follow)
    except FileNotFoundError:
        raise NotFound(f"stat {src}: no such file or directory") from None
    if (src.endswith("/") or contents) and not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{src}: not a directory")
    return os.open(parent_path, _DIR), name, contents


class _Dest:
    """Where a copy lands: an open directory, and the entry's name in it (None: into the
    directory itself)."""

    def __init__(self, fd, name, existing_dir, existing, shown):
        self.fd, self.name, self.is_dir, self.exists = fd, name, existing_dir, existing
        self.shown = shown


def _host_dest(dest):
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        return _Dest(os.open(dest, _DIR), None, True, True, dest)
    if st is None and dest.endswith("/"):
        raise NotFound(f'destination directory "{dest}" does not exist')
    parent, _, name = dest.rstrip("/").rpartition("/")
    try:
        fd = os.open(parent or ("/" if dest.startswith("/") else "."), _DIR)
    except FileNotFoundError:
        raise NotFound(f'destination directory "{parent}" does not exist') from None
    return _Dest(fd, name, False, st is not None, dest)


def _container_dest(root, dest, cname):
    path = dest if dest.startswith("/") else "/" + dest
    try:
        fd = fstree.open_in_root(root, path, os.O_PATH)
    except NotFound:
        fd = -1
    if fd >= 0:
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                return _Dest(fstree.open_in_root(root, path, _DIR), None, True, True, dest)
        finally:
            os.close(fd)
    elif path.endswith("/"):
        raise NotFound(f'destination directory "{dest}" does not exist')
    parent_path, _, name = path.rstrip("/").rpartition("/")
    try:
        parent = fstree.open_in_root(root, parent_path or "/", _DIR)
    except NotFound:
        raise NotFound(f"Could not find the file {parent_path} in container {cname}") \
            from None
    return _Dest(parent, name, False, fd >= 0, dest)


def _open_dest_dir(root, dest, cname):
    path = dest if dest.startswith("/") else "/" + dest
    try:
        fd = fstree.open_in_root(root, path, os.O_PATH)
    except NotFound:
        raise NotFound(f"Could not find the file {dest} in container {cname}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise InvalidArgument(f'destination "{dest}" must be a directory')
        return os.open(f"/proc/self/fd/{fd}", _DIR)
    finally:
        os.close(fd)


def _copy_to(src_parent, base, contents, follow, owner, dest, src):
    try:
        st = os.stat(base, dir_fd=src_parent, follow_symlinks=follow)
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and dest.exists and not dest.is_dir:
            raise Conflict(f'cannot overwrite non-directory "{dest.shown}" with directory '
                           f'"{src}"')
        if dest.is_dir and (contents or base == "."):
            fstree.copy_entry(src_parent, base, dest.fd, ".", follow=follow, owner=owner,
                              into=True)
        elif dest.is_dir:
            name = os.path.basename(src.rstrip("/")) if base.isdigit() and follow else base
            fstree.copy_entry(src_parent, base, dest.fd, name, follow=follow, owner=owner)
        else:
            fstree.copy_entry(src_parent, base, dest.fd, dest.name, follow=follow,
                              owner=owner)
    finally:
        os.close(dest.fd)


def _tar_out(out, parent, base, arcname, follow):
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        fstree.tar_entry(tar, parent, base, arcname, follow=follow)
    out.flush()


# ---------------------------------------------------------------- the container's tree

def _in_container(svc, record, work):
    """Run ``work(root_fd)`` against the container's tree (see the module's docstring)."""
    state = record["state"]
    if state.get("Running") and state.get("Pid"):
        root = _process_root(record)
        try:
            return work(root)
        finally:
            os.close(root)
    with svc.store.lock(record["id"]):
        record = svc.get(record["id"])
        if record["state"].get("Running"):
            raise Conflict(f"container {record['id'][:12]} started during the copy; retry")
        return _in_private_mounts(svc, record, work)


def _process_root(record):
    pid = record["state"]["Pid"]
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            if record["id"] not in f.read():
                raise Conflict(f"container {record['id'][:12]} is not running")
        return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Conflict(f"container {record['id'][:12]} is not running") from None


def _in_private_mounts(svc, record, work):
    import sys
    import tempfile

    from berth.snapshots import Mount

    cdir = svc.dir(record["id"])
    with open(os.path.join(cdir, "bundle", "config.json")) as f:
        binds = [m for m in json.load(f).get("mounts") or () if m.get("type") == "bind"]
    rootfs = [Mount.from_oci(m) for m in record.get("rootfs_mounts") or ()]
    target = tempfile.mkdtemp(prefix="cp-", dir=cdir)
    r, w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.close(r)
            _private_tree(rootfs, binds, target, work)
        except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
            kind = type(err).__name__ if isinstance(err, errors.BerthError) else "SystemFailure"
            text = str(err) if isinstance(err, errors.BerthError) else \
                f"cp: {type(err).__name__}: {err}"
            os.write(w, json.dumps([kind, text]).encode())
            code = 1
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)
    os.close(w)
    try:
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(pid, 0)
    finally:
        os.close(r)
        os.rmdir(target)
    if chunks:
        kind, text = json.loads(b"".join(chunks))
        raise getattr(errors, kind, errors.SystemFailure)(text)


def _private_tree(rootfs, binds, target, work):
    from berth.snapshots import mount_all
    from berth.sys import linux

    linux.unshare(_CLONE_NEWNS)
    linux.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    mount_all(rootfs, target)
    root = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    for m in binds:
        if not os.path.exists(m["source"]):
            continue
        try:
            fd = fstree.open_in_root(root, m["destination"], os.O_PATH)
        except (NotFound, InvalidArgument):
            continue  # its mount point is made when the container starts
        try:
            flags = _MS_BIND | (_MS_REC if "rbind" in m.get("options", ()) else 0)
            linux.mount(m["source"], f"/proc/self/fd/{fd}", None, flags)
            if "ro" in m.get("options", ()):
                # What the container cannot write, cp does not write either.
                linux.mount(None, f"/proc/self/fd/{fd}", None,
                            _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        finally:
            os.close(fd)
    work(root)
