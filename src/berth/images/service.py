"""The image service: what `berth pull/images/rmi/inspect/...` and the API call.

It ties the pieces together the way containerd's image service does: image records name a
target descriptor (a manifest or an index) in the metadata database; blobs live in the
content store; layers are unpacked into snapshots keyed by their chain ids. The image id is
the digest of the config blob, kept byte-exact, so ids and `inspect` match Docker's.
"""

import _thread
import time

from berth.content.digest import digest_bytes
from berth.content.store import ContentStore
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.images import manifest as mf
from berth.images import reference
from berth.metadata.db import Metadata
from berth.spec import jsonio


# An annotation on an image record's target: the name was pulled from (or pushed to) its
# registry, so the target's digest is a repo digest there (what `inspect` lists).
PULLED = "io.berth.repo-digest"


def chain_ids(diff_ids):
    """OCI ChainIDs: chain[0] = diff[0], chain[n] = sha256(chain[n-1] + " " + diff[n])."""
    out = []
    for d in diff_ids:
        out.append(d if not out else digest_bytes(f"{out[-1]} {d}".encode()))
    return out


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Image:
    """One image as the commands see it: a name (or none) and its resolved manifest."""

    def __init__(self, names, target, manifest, config_desc, config_raw, created=""):
        self.names = names            # full references naming this image
        self.target = target          # the record's descriptor (manifest or index)
        self.manifest = manifest      # the platform's Manifest
        self.config_desc = config_desc
        self.config_raw = config_raw  # bytes, byte-exact
        self.config = jsonio.loads(config_raw, "image config")
        self.created = created

    @property
    def id(self):
        return self.config_desc["digest"]

    @property
    def diff_ids(self):
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain_id(self):
        ids = chain_ids(self.diff_ids)
        return ids[-1] if ids else None

    def size(self):
        """Docker's Size: the sum of the layers' compressed sizes plus the config (close to
        what docker shows for a pulled image)."""
        return sum(layer.get("size", 0) for layer in self.manifest.layers)


class ImageService:
    def __init__(self, root):
        self.root = root
        self.content = ContentStore(root)
        self.meta = Metadata(root)
        self._snapshotter = None
        self._lock = _thread.allocate_lock()

    def close(self):
        close = getattr(self.meta, "close", None)
        if close:
            close()

    def snapshotter(self):
        if self._snapshotter is None:
            from berth.snapshots import default_snapshotter
            self._snapshotter = default_snapshotter(self.root, self.meta)
        return self._snapshotter

    # ------------------------------------------------------------ lookup

    def _load(self, target, platform=None):
        """(manifest, config descriptor, config bytes) for a target descriptor."""
        data = self.content.read(target["digest"])
        parsed = mf.parse_manifest(data, target.get("mediaType"))
        if isinstance(parsed, mf.Index):
            desc = self._platform_manifest(parsed, platform)
            parsed = mf.parse_manifest(self.content.read(desc["digest"]), desc.get("mediaType"))
        config = self.content.read(parsed.config["digest"])
        return parsed, parsed.config, config

    def _platform_manifest(self, index, platform):
        """The index entry to use: the asked-for platform, else the host's, else the one
        platform whose manifest is here (an image pulled with --platform)."""
        if platform:
            return mf.select(index, mf.parse_platform(platform)
                             if isinstance(platform, str) else platform)
        try:
            desc = mf.select(index, mf.host_platform())
            if self.content.has(desc["digest"]):
                return desc
        except NotFound:
            desc = None
        for entry in index.manifests:
            if self.content.has(entry["digest"]) and not mf.is_attestation(entry):
                return entry
        if desc is None:
            raise NotFound(f"no manifest for {mf.format_platform(mf.host_platform())} in "
                           f"the image's index")
        return desc

    def records(self):
        return self.meta.list_images()

    def get(self, name_or_id, platform=None):
        """An Image by name, by id (or a unique id prefix), or by name@digest."""
        rec = self._find(name_or_id)
        if rec is None:
            raise NotFound(f"No such image: {name_or_id}")
        manifest, desc, raw = self._load(rec["target"], platform)
        names = [r["name"] for r in self.records()
                 if r["target"]["digest"] == rec["target"]["digest"]]
        return Image(names, rec["target"], manifest, desc, raw, rec.get("created", ""))

    def _find(self, text):
        try:
            ref = reference.parse(text)
        except InvalidArgument:
            ref = None
        if ref is not None:
            rec = self.meta.get_image(str(ref))
            if rec is not None:
                return rec
            if ref.digest:
                for r in self.records():
                    if r["name"].split("@")[0].rsplit(":", 1)[0] == ref.name and \
                            r["target"]["digest"] == ref.digest:
                        return r
        return self._by_id(text)

    def _by_id(self, text):
        hex_part = text[7:] if text.startswith("sha256:") else text
        if not hex_part or any(c not in "0123456789abcdef" for c in hex_part):
            return None
        found = {}
        for r in self.records():
            try:
                _, desc, _ = self._load(r["target"])
            except (NotFound, InvalidArgument):
                continue
            if desc["digest"][7:].startswith(hex_part):
                found.setdefault(desc["digest"], r)
        if len(found) > 1:
            raise Conflict(f"{text}: image id prefix is ambiguous")
        return next(iter(found.values()), None)

    # ------------------------------------------------------------ names

    def tag(self, source, target):
        image = self.get(source)
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        target = {k: v for k, v in image.target.items() if k != "annotations"}
        self.meta.put_image(str(ref), target, created=now_rfc3339())
        self.event("tag", image.id, name=ref.familiar_string())
        return ref

    def event(self, action, image_id, **attributes):
        """Add an image event to the journal `berth events` reads."""
        from berth import events
        events.append(events.journal_path(self.root), "image", action, image_id, attributes)

    def remove(self, name_or_id, force=False, prune=True, in_use=None):
        """Untag or delete as Docker does; returns ["Untagged: x", "Deleted: sha256:..."]."""
        out = []
        rec = self._find(name_or_id)
        if rec is None:
            raise NotFound(f"No such image: {name_or_id}")
        image = self.get(name_or_id)
        by_id = name_or_id.startswith("sha256:") or self.meta.get_image(
            _maybe_str(name_or_id)) is None and rec["name"] != _maybe_str(name_or_id)
        names = image.names
        if in_use and not force:
            user = in_use(image.id)
            if user:
                raise Conflict(f"conflict: unable to remove repository reference "
                               f'"{name_or_id}" (must force) - container {user[:12]} is '
                               f"using its referenced image {image.id[7:19]}")
        if by_id:
            if len(names) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {image.id[7:19]} (must be forced)"
                               f" - image is referenced in multiple repositories")
            targets = names
        else:
            targets = [rec["name"]]
        for name in targets:
            self.meta.delete_image(name)
            out.append(f"Untagged: {_familiar(name)}")
            self.event("untag", image.id, name=_familiar(name))
        remaining = [r for r in self.records() if r["target"]["digest"] == image.target["digest"]]
        if not remaining:
            out.append(f"Deleted: {image.id}")
            self.event("delete", image.id, name=_familiar(names[0]) if names else image.id)
            if prune:
                self.collect()
        return out

    def check(self):
        """Problems found re-verifying every blob and every link between records."""
        from berth.content import gc
        problems = list(gc.check(self.content, self.meta))
        try:
            snap = self.snapshotter()
        except Exception:  # noqa: BLE001
            snap = None
        if snap is not None:
            for rec in self.records():
                try:
                    image = self.get(rec["name"])
                except Exception as err:  # noqa: BLE001 - reported, not raised
                    problems.append(f"image {rec['name']}: {err}")
                    continue
                for chain in chain_ids(image.diff_ids):
                    try:
                        snap.stat(chain)
                    except NotFound:
                        problems.append(f"image {rec['name']}: layer snapshot {chain} is "
                                        f"missing (pull the image again)")
                        break
        return sorted(set(problems))

    def prune(self, all_images=False, in_use=None):
        """`image prune`: dangling images (no tag), or with ``all_images`` every image no
        container uses; then the blobs and snapshots nothing references any more."""
        lines = []
        by_target = {}
        for rec in self.records():
            by_target.setdefault(rec["target"]["digest"], []).append(rec)
        for recs in by_target.values():
            tagged = [r for r in recs if "@" not in r["name"]]
            if tagged and not all_images:
                continue
            try:
                image = self.get(recs[0]["name"])
            except Exception:  # noqa: BLE001 - a broken record goes too
                image = None
            if image is not None and in_use and in_use(image.id):
                continue
            for r in recs:
                self.meta.delete_image(r["name"])
                lines.append(f"untagged: {_familiar(r['name'])}")
            if image is not None:
                lines.append(f"deleted: {image.id}")
        before = self._usage()
        self.collect()
        freed = max(0, before - self._usage())
        return {"lines": (["Deleted Images:"] + lines + [""]) if lines else [],
                "bytes": freed}

    def _usage(self):
        total = 0
        for digest in self.content.digests():
            try:
                total += self.content.size(digest)
            except NotFound:
                pass
        return total

    def collect(self):
        from berth.content import gc
        try:
            snap = self.snapshotter()
        except Exception:  # noqa: BLE001 - content GC works without snapshots
            snap = None
        from berth.images.pull import reap_dead_pulls

        reap_dead_pulls(self)  # their leases would keep blobs from the collection
        return gc.collect(self.content, self.meta, snap)

    # ------------------------------------------------------------ views

    def inspect(self, name_or_id):
        """Docker's ImageInspect object."""
        image = self.get(name_or_id)
        cfg = image.config
        repo_tags = [_familiar(n) for n in image.names if "@" not in n]
        pulled = {r["name"] for r in self.records()
                  if r["target"]["digest"] == image.target["digest"]
                  and (r["target"].get("annotations") or {}).get(PULLED)}
        repo_digests = sorted({f"{_familiar_name(n)}@{image.target['digest']}"
                               for n in pulled})
        return {
            "Id": image.id,
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Parent": "",
            "Comment": _last_comment(cfg),
            "Created": cfg.get("created", ""),
            "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""),
            "Config": _docker_config(cfg.get("config") or {}),
            "Architecture": cfg.get("architecture", ""),
            "Variant": cfg.get("variant"),
            "Os": cfg.get("os", ""),
            "Size": image.size(),
            "GraphDriver": {"Name": "overlay2", "Data": None},
            "RootFS": {"Type": "layers", "Layers": image.diff_ids},
            "Metadata": {"LastTagTime": image.created or ""},
        }

    def history(self, name_or_id):
        """Rows for `berth history`, newest first."""
        image = self.get(name_or_id)
        history = image.config.get("history") or []
        layers = list(image.manifest.layers)
        rows = []
        li = 0
        for i, h in enumerate(history):
            empty = h.get("empty_layer", False)
            size = 0
            if not empty and li < len(layers):
                size = layers[li].get("size", 0)
                li += 1
            rows.append({"Created": h.get("created", ""), "CreatedBy": h.get("created_by", ""),
                         "Size": size, "Comment": h.get("comment", ""),
                         "Id": image.id if i == len(history) - 1 else "<missing>"})
        return list(reversed(rows))


def _maybe_str(text):
    try:
        return str(reference.parse(text))
    except InvalidArgument:
        return text


def _familiar(full):
    try:
        return reference.parse(full).familiar_string()
    except InvalidArgument:
        return full


def _familiar_name(full):
    try:
        return reference.parse(full).familiar
    except InvalidArgument:
        return full


def _last_comment(cfg):
    history = cfg.get("history") or []
    return history[-1].get("comment", "") if history else ""


def _docker_config(c):
    keys = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
            "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
            "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels",
            "StopSignal", "Shell")
    defaults = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                "AttachStdout": False, "AttachStderr": False, "Tty": False,
                "OpenStdin": False, "StdinOnce": False, "Image": "", "WorkingDir": "",
                "Labels": None, "Env": None, "Cmd": None, "Entrypoint": None, "Volumes": None,
                "OnBuild": None}
    out = {}
    for k in keys:
        if k in c:
            out[k] = c[k]
        elif k in defaults:
            out[k] = defaults[k]
    return out
