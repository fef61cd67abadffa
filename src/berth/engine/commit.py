"""`berth diff` and `berth commit`: a container's writable layer read from its overlay
upper directory.

In the upper directory a 0:0 character device is a whiteout (the path was deleted) and a
directory with trusted.overlay.opaque=y hides everything below it in the image. diff
prints D for a whiteout, and A or C for anything else by whether the image has the path
(looked up in a read-only view of the image's layers, resolved inside that view). commit
streams the upper directory as a tar with OCI whiteouts (``.wh.<name>``, ``.wh..wh..opq``)
into a new layer on top of the image's, and writes a new config: the container's config
with `--change` lines applied, one more history entry. A running container is paused for
the commit unless told otherwise. Both read through fds only (fstree), since a running
container may change its upper directory meanwhile.
"""

import contextlib
import os
import stat
import tempfile

from berth.engine import fstree
from berth.errors import Conflict, InvalidArgument, NotFound, Unsupported

# The container config fields an image keeps (Docker's commit keeps the same).
_IMAGE_FIELDS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "ArgsEscaped",
                 "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal",
                 "Shell")


def _upper(svc, record):
    snap = svc.images.snapshotter()
    if not getattr(snap, "independent_layers", False):
        raise Unsupported("diff and commit need the overlay snapshotter")
    return snap.upper_dir(record["snapshot_key"])


@contextlib.contextmanager
def _image_view(svc, record):
    """A directory fd of the container's image, read-only (None for an empty image)."""
    from berth.snapshots import mount_all, unmount

    image = svc.images.get(record["image_id"])
    if not image.chain_id:
        yield None
        return
    snap = svc.images.snapshotter()
    key = f"diff-{record['id']}-{os.getpid()}"
    target = tempfile.mkdtemp(prefix="view-", dir=svc.dir(record["id"]))
    mounted = False
    try:
        mount_all(snap.view(key, image.chain_id), target)
        mounted = True
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
    finally:
        if mounted:
            unmount(target)
        try:
            snap.remove(key)
        except NotFound:
            pass
        os.rmdir(target)


def diff(svc, id_or_name):
    """[(kind, path)] with kind A, C or D, sorted by path, as `docker diff` prints them."""
    record = svc.get(id_or_name)
    upper = _upper(svc, record)
    out = []
    with _image_view(svc, record) as lower:
        top = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _walk(top, "", lower, out)
        finally:
            os.close(top)
    return sorted(out, key=lambda item: item[1])


def _in_lower(lower, path):
    if lower is None:
        return None
    parent, _, name = path.rpartition("/")
    try:
        fd = fstree.open_in_root(lower, parent or "/", os.O_PATH | os.O_DIRECTORY)
    except Exception:  # noqa: BLE001 - missing, or a file where a directory was
        return None
    try:
        return fstree.lstat_at(fd, name)
    finally:
        os.close(fd)


def _walk(dir_fd, prefix, lower, out):
    for name in sorted(os.listdir(dir_fd)):
        path = f"{prefix}/{name}"
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            out.append(("D", path))
            continue
        before = _in_lower(lower, path)
        out.append(("C" if before is not None else "A", path))
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)
        except OSError:
            continue
        try:
            _walk(sub, path, lower, out)
            if before is not None and stat.S_ISDIR(before.st_mode) and _opaque(sub):
                _hidden(lower, path, set(os.listdir(sub)), out)
        finally:
            os.close(sub)


def _opaque(fd):
    try:
        return os.getxattr(fd, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def _hidden(lower, path, present, out):
    """D lines for what an opaque directory hides of the image's."""
    try:
        fd = fstree.open_in_root(lower, path, os.O_RDONLY | os.O_DIRECTORY)
    except Exception:  # noqa: BLE001 - nothing there to hide
        return
    try:
        out.extend(("D", f"{path}/{n}") for n in os.listdir(fd) if n not in present)
    finally:
        os.close(fd)


def commit(svc, id_or_name, target=None, *, changes=(), message="", author="",
           pause=True):
    """A new image from the container's changes; its id (sha256:...)."""
    from berth.engine.containers import now_rfc3339
    from berth.images.archive import add_layer, apply_changes

    record = svc.get(id_or_name)
    if target:
        from berth.images import reference
        try:
            reference.parse(target)
        except InvalidArgument as err:
            raise InvalidArgument(f"invalid reference format: {err}") from None
    conf = record.get("config") or {}
    config = {k: conf[k] for k in _IMAGE_FIELDS if conf.get(k) is not None}
    config = apply_changes(changes, config)
    base = svc.images.get(record["image_id"])
    upper = _upper(svc, record)
    paused = False
    if pause and record["state"].get("Running") and not record["state"].get("Paused"):
        svc.pause(record["id"])
        paused = True
    try:
        with tempfile.TemporaryFile(dir=svc.dir(record["id"])) as spool:
            _layer_tar(upper, spool)
            spool.seek(0)
            command = list(conf.get("Entrypoint") or []) + list(conf.get("Cmd") or [])
            history = {"created": now_rfc3339(), "created_by": " ".join(command)}
            if author:
                history["author"] = author
            if message:
                history["comment"] = message
            image_id = add_layer(svc.images, base, spool, target, config, history)
        svc.event(record, "commit", comment=message, imageID=image_id, imageRef=target or "")
        return image_id
    finally:
        if paused:
            try:
                svc.unpause(record["id"])
            except Conflict:
                pass  # it stopped meanwhile


def _layer_tar(upper, out):
    import tarfile

    top = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            links = {}
            for name in sorted(os.listdir(top)):
                fstree.tar_entry(tar, top, name, name, overlay=True, links=links)
    finally:
        os.close(top)
