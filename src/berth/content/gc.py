"""Garbage collection and consistency checks of the content store.

The roots are the images' targets (metadata's images table) and the leased digests. From an
image target the walk follows, by the descriptor's mediaType:

    OCI index / Docker manifest list     -> the child manifests
    OCI manifest / Docker schema2        -> the config and the layers

Any other media type is a leaf: the blob is kept and not opened. A missing child of an index is
normal (a pull of one platform fetches only that platform's manifest); a manifest that is
present but misses its config or a layer is a problem check() reports.
"""

import json
import os
import time

from berth.content.digest import DigestMismatch, digest_bytes, parse_digest
from berth.errors import InvalidArgument, NotFound

INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
MANIFEST_TYPES = frozenset({
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
})
# An ingest or temporary file untouched this long belongs to no live writer.
STRAY_AGE = 3600.0


class _Walk:
    """What the images reach: digests, the configs of present manifests, and problems."""

    def __init__(self, store, metadata):
        self.store = store
        self.seen = set()
        self.configs = set()
        self.problems = []
        stack = [(img["target"], f"image {img['name']}", True)
                 for img in reversed(metadata.list_images())]
        while stack:
            self._visit(stack, *stack.pop())

    def _visit(self, stack, desc, owner, required):
        digest = desc.get("digest") if isinstance(desc, dict) else None
        try:
            parse_digest(digest)
        except InvalidArgument as err:
            self.problems.append(f"{owner}: bad descriptor: {err}")
            return
        if digest in self.seen:
            return
        self.seen.add(digest)
        media_type = desc.get("mediaType")
        try:
            size = self.store.size(digest)
        except NotFound:
            if required and not desc.get("urls"):  # foreign layers live elsewhere
                self.problems.append(f"{owner}: {media_type or 'blob'} {digest} is missing")
            return
        if isinstance(desc.get("size"), int) and desc["size"] != size:
            self.problems.append(f"{owner}: {digest} has {size} bytes, the descriptor says "
                                 f"{desc['size']}")
        if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
            return
        try:
            doc = json.loads(self.store.read(digest))
        except DigestMismatch:
            return  # check() reports the blob's bad hash on its own
        except ValueError as err:
            self.problems.append(f"{owner}: {media_type} {digest} is not valid JSON: {err}")
            return
        if not isinstance(doc, dict):
            self.problems.append(f"{owner}: {media_type} {digest} is not a JSON object")
            return
        if media_type in INDEX_TYPES:
            children = [(d, f"index {digest}", False) for d in _list(doc, "manifests")]
        else:
            here = f"manifest {digest}"
            children = [(d, here, True) for d in _list(doc, "layers")]
            config = doc.get("config")
            if isinstance(config, dict):
                children.append((config, here, True))
                self.configs.add(config.get("digest"))
            else:
                self.problems.append(f"{here}: no config descriptor")
        stack.extend(reversed(children))


def _list(doc, field):
    value = doc.get(field)
    return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []


def referenced(store, metadata):
    """Digests GC must keep: everything the images reach, plus the leased digests."""
    return _Walk(store, metadata).seen | metadata.leased()


def chain_ids(store, metadata):
    """The OCI ChainIDs of every prefix of the layers of the images' present configs.

    These are the snapshot keys of image layers, so the snapshots the images need.
    """
    out = set()
    for config in _Walk(store, metadata).configs:
        try:
            diff_ids = json.loads(store.read(config)).get("rootfs", {}).get("diff_ids") or []
        except (NotFound, InvalidArgument, ValueError, AttributeError):
            continue
        chain = None
        for diff_id in diff_ids:
            chain = diff_id if chain is None else digest_bytes(f"{chain} {diff_id}".encode())
            out.add(chain)
    return out


def collect(store, metadata, snapshotter=None, keep_snapshots=()):
    """Delete the blobs nothing references; return {"blobs": n, "bytes": n}.

    With a snapshotter, also prune the snapshots no image needs: snapshotter.prune() gets the
    images' chain ids plus ``keep_snapshots`` (containers' snapshots, say), and its result is
    returned under "snapshots". Expired leases and stale temporary files go too.
    """
    # List the blobs before reading the roots: a blob committed after this listing is never
    # a candidate, and one committed before it was leased before it was written.
    candidates = list(store.digests())
    deleted = freed = 0
    with metadata.transaction():
        metadata.remove_expired_leases()
        keep = referenced(store, metadata)
        for digest in candidates:
            if digest in keep:
                continue
            try:
                size = store.size(digest)
                store.delete(digest)
            except NotFound:
                continue
            deleted += 1
            freed += size
    cutoff = time.time() - STRAY_AGE
    for path, mtime in store._temps():
        if mtime < cutoff:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    result = {"blobs": deleted, "bytes": freed}
    if snapshotter is not None:
        removed = snapshotter.prune(chain_ids(store, metadata) | set(keep_snapshots))
        result["snapshots"] = removed if isinstance(removed, int) else len(removed or ())
    return result


def check(store, metadata):
    """Problems, one line each: blobs whose bytes do not match their digest, images and
    manifests naming missing blobs, size mismatches, ingests and temp files left to rot."""
    problems = [f"blob {d}: content does not match its digest"
                for d in store.digests() if not store.verify(d)]
    problems.extend(_Walk(store, metadata).problems)
    now = time.time()
    for key in store.ingests():
        try:
            st = store.ingest_status(key)
        except NotFound:
            continue
        if now - st["updated"] > STRAY_AGE:
            problems.append(f"stray ingest {key}: {st['offset']} bytes, untouched for "
                            f"{(now - st['updated']) / 3600:.1f} h")
    for path, mtime in store._temps():
        if now - mtime > STRAY_AGE:
            problems.append(f"stray temporary file {path}: untouched for "
                            f"{(now - mtime) / 3600:.1f} h")
    return problems
