"""Pushing an image: its blobs (skipped when the registry has them, mounted from another
repository of the same registry when an image name says where they are), then the manifest
by tag. The manifest is the stored one, byte-exact, so the digest the registry reports is
the digest berth has. For an index of which only one platform is here, that platform's
manifest is pushed."""

import threading

from berth.errors import InvalidArgument
from berth.images import manifest as mf
from berth.images import reference
from berth.images.pull import _parallel, _short
from berth.images.service import PULLED, now_rfc3339


def push(svc, name, progress=None, client=None):
    from berth.images.progress import Quiet

    progress = progress or Quiet()
    ref = reference.parse(name)
    if ref.digest and not ref.tag:
        raise InvalidArgument("cannot push a digest reference")
    image = svc.get(str(ref))
    if client is None:
        from berth.registry import credentials
        from berth.registry.client import Client
        client = Client(ref.domain, credentials=credentials.lookup(ref.domain))
    progress.message(f"The push refers to repository [{ref.name}]")
    target = image.target
    manifest_raw = svc.content.read(target["digest"])
    media_type = target.get("mediaType")
    if isinstance(mf.parse_manifest(manifest_raw, media_type), mf.Index):
        manifest_raw = image.manifest.raw
        media_type = image.manifest.media_type
    sources = _mount_sources(svc, image, ref)
    blobs = list(reversed(image.manifest.layers)) + [image.manifest.config]
    lock = threading.Lock()
    errors = []

    def send(desc):
        ident = _short(desc["digest"])
        if desc is not image.manifest.config:
            progress.update(ident, "Preparing")
        if client.has_blob(ref.path, desc["digest"]):
            if desc is not image.manifest.config:
                progress.update(ident, "Layer already exists")
            return
        for repo in sources:
            if client.mount_blob(ref.path, desc["digest"], repo):
                if desc is not image.manifest.config:
                    progress.update(ident, f"Mounted from {repo}")
                return
        total = desc.get("size")

        def report(done, _total=None):
            if desc is not image.manifest.config:
                with lock:
                    progress.update(ident, "Pushing", done, total)

        client.push_blob(ref.path, desc, lambda: svc.content.open(desc["digest"]),
                         progress=report)
        if desc is not image.manifest.config:
            progress.update(ident, "Pushed")

    _parallel(range(len(blobs)), lambda i: send(blobs[i]), errors)
    if errors:
        raise errors[0]
    tag = ref.tag or "latest"
    digest = client.put_manifest(ref.path, tag, manifest_raw, media_type)
    record = {"mediaType": media_type, "digest": digest, "size": len(manifest_raw),
              "annotations": {PULLED: "true"}}
    if digest == target["digest"]:
        svc.meta.put_image(str(ref), record, created=now_rfc3339())
    return {"tag": tag, "digest": digest, "size": len(manifest_raw)}


def _mount_sources(svc, image, ref):
    """Other repositories of the same registry this image was pulled from or pushed to."""
    out = []
    for rec in svc.records():
        if rec["target"]["digest"] != image.target["digest"]:
            continue
        if not (rec["target"].get("annotations") or {}).get(PULLED):
            continue
        other = reference.parse_normalized(rec["name"])
        if other.domain == ref.domain and other.path != ref.path and other.path not in out:
            out.append(other.path)
    return out
