"""Image archives: `berth save`, `berth load` and `berth import`.

save writes one of two tar layouts, streamed (never built in memory):

    docker-archive  what Docker 25+ writes: a docker-archive (manifest.json with Config,
                    RepoTags and Layers paths, plus the legacy ``repositories`` file) that is
                    also an OCI layout (oci-layout, index.json, blobs/<alg>/<hex>). Layers
                    are uncompressed tars named by their diff id, so each image gets a new
                    manifest; the config blob, and so the image id, is unchanged.
    oci-archive     a pure OCI layout holding the image's original manifest (or index),
                    config and layer blobs byte for byte, so every digest survives.

load reads either, from Docker, podman, skopeo or berth, compressed or not, as a stream (it
may come from stdin): each member is spooled into the content store as it passes, verified
against its digest when its path names one (blobs/<alg>/<hex>), and manifest.json /
index.json are resolved at the end. Nothing is recorded until every image's blobs are in,
verified, and its layers unpacked.

import_rootfs turns a filesystem tar into a one-layer image, as `docker import` does.

Blobs are leased before they are written, and the lease is dropped at the end: an image
record then holds them, or a later GC collects them.
"""

import bz2
import hashlib
import json
import lzma
import posixpath
import shlex
import tarfile
import uuid

from berth.content.digest import DigestMismatch, digest_bytes, parse_digest
from berth.errors import InvalidArgument, NotFound
from berth.images import manifest as mf
from berth.images import reference
from berth.images.pull import unpack_layers
from berth.images.service import now_rfc3339
from berth.snapshots import compression

FORMATS = ("docker-archive", "oci-archive")
# How a record names an image loaded or imported without a name (Docker's containerd store
# uses the same name); the CLI shows it as <none>.
DANGLING_REPO = "moby-dangling"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

_CHUNK = 1 << 20
_SMALL = 1 << 20          # non-blob members up to this size are kept in memory until resolved
_LEASE_TTL = 24 * 3600.0  # a crashed load's blobs become collectable after this
_MAX_LINKS = 16
_XZ_MAGIC = b"\xfd7zXZ\x00"
_JSON = {"separators": (",", ":")}


# ================================================================ shared helpers

class _Lease:
    """A GC lease for the blobs one operation writes; removed when the operation ends."""

    def __init__(self, svc, kind):
        self.svc = svc
        self.id = f"{kind}-{uuid.uuid4().hex}"
        svc.meta.add_lease(self.id, expires_in=_LEASE_TTL)

    def add(self, digest):
        self.svc.meta.lease_add(self.id, digest)

    def put(self, data):
        """Store ``data`` (leased first); its digest."""
        digest = digest_bytes(data)
        self.add(digest)
        self.svc.content.put(data, digest)
        return digest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.svc.meta.remove_lease(self.id)
        return False


def dangling_name(digest):
    """The record name of an image that has no name."""
    return f"{reference.DEFAULT_DOMAIN}/{reference.OFFICIAL_REPO_PREFIX}{DANGLING_REPO}@{digest}"


def is_dangling(name):
    return name.startswith(dangling_name(""))


def _record(svc, images):
    """Record ``images`` [(target, [full names])] in one transaction."""
    created = now_rfc3339()
    with svc.meta.transaction():
        for target, names in images:
            dangling = dangling_name(target["digest"])
            if names:
                for name in names:
                    svc.meta.put_image(name, target, created=created)
                if svc.meta.get_image(dangling) is not None:
                    svc.meta.delete_image(dangling)
            elif not any(r["target"]["digest"] == target["digest"]
                         for r in svc.meta.list_images()):
                svc.meta.put_image(dangling, target, created=created)


def _descriptor(media_type, digest, size):
    return {"mediaType": media_type, "digest": digest, "size": size}


def _dumps(doc):
    return json.dumps(doc, **_JSON).encode()


class _Prefixed:
    """``head`` (already read from ``raw``), then the rest of ``raw``."""

    def __init__(self, head, raw):
        self._head = head
        self._raw = raw

    def read(self, n=-1):
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._raw.read(), b""
            else:
                data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)


class _Decompressed:
    """xz or bzip2 through the standard library's incremental decompressors."""

    def __init__(self, raw, decompressor, what):
        self._raw = raw
        self._d = decompressor
        self._what = what

    def read(self, n=-1):
        if n is None or n < 0:
            parts = []
            while True:
                part = self.read(_CHUNK)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        while not self._d.eof:
            data = b""
            if self._d.needs_input:
                data = self._raw.read(_CHUNK)
                if not data:
                    raise InvalidArgument(f"{self._what}: compressed data ends early")
            try:
                out = self._d.decompress(data, n)
            except (OSError, lzma.LZMAError, EOFError) as err:
                raise InvalidArgument(f"{self._what}: bad compressed data: {err}") from None
            if out:
                return out
        return b""


def _read_up_to(f, n):
    head = b""
    while len(head) < n:
        more = f.read(n - len(head))
        if not more:
            break
        head += more
    return head


def uncompressed(fileobj, what="archive"):
    """A reader of ``fileobj`` decompressed by its magic bytes: gzip, zstd, xz, bzip2 or
    none (what `docker load` and `docker import` accept)."""
    head = _read_up_to(fileobj, 6)
    src = _Prefixed(head, fileobj)
    kind = compression.detect(head)
    if kind != compression.NONE:
        return compression.decompressor(src, kind)
    if head.startswith(_XZ_MAGIC):
        return _Decompressed(src, lzma.LZMADecompressor(), what)
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0" and head[4:6] == b"1A":
        return _Decompressed(src, bz2.BZ2Decompressor(), what)
    return src


def _chunks(reader):
    while True:
        chunk = reader.read(_CHUNK)
        if not chunk:
            return
        yield chunk


class _Exact:
    """read(n) returns exactly n bytes unless the stream ends (tarfile's copy insists on
    that; a decompressor may hand back fewer or more than asked)."""

    def __init__(self, raw):
        self._raw = raw
        self._rest = b""

    def read(self, n=-1):
        if n is None or n < 0:
            data, self._rest = self._rest + self._raw.read(), b""
            return data
        parts, have = [self._rest], len(self._rest)
        while have < n:
            more = self._raw.read(n - have)
            if not more:
                break
            parts.append(more)
            have += len(more)
        data = b"".join(parts)
        data, self._rest = data[:n], data[n:]
        return data


# ================================================================ import

_CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
                    "USER", "VOLUME", "WORKDIR")
_OTHER_COMMANDS = ("ADD", "ARG", "COPY", "FROM", "HEALTHCHECK", "MAINTAINER", "RUN", "SHELL")


def apply_changes(changes, config=None):
    """Docker's `--change` lines (Dockerfile instructions) applied to a copy of the image
    config's "config" object (Docker's field names: Cmd, Env, ExposedPorts, ...)."""
    cfg = json.loads(json.dumps(config or {}))
    for raw in changes or ():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, *more = line.split(None, 1)
        instr, rest = word.upper(), (more[0].strip() if more else "")
        if instr not in _CHANGE_COMMANDS:
            if instr in _OTHER_COMMANDS:
                raise InvalidArgument(f"{instr} is not a valid change command")
            raise InvalidArgument(f"dockerfile parse error on line 1: unknown instruction: "
                                  f"{word}")
        if not rest:
            raise InvalidArgument(f"{instr} requires at least one argument")
        _CHANGERS[instr](cfg, rest, instr)
    return cfg


def _exec_form(rest):
    """The JSON (exec) form's list, or None for the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _command(cfg, rest, instr):
    argv = _exec_form(rest)
    cfg["Cmd" if instr == "CMD" else "Entrypoint"] = (
        argv if argv is not None else ["/bin/sh", "-c", rest])


def _pairs(rest, instr):
    """KEY=VALUE words (quotes and backslashes as in a Dockerfile), or the legacy
    "KEY VALUE" form; [(key, value)]."""
    first = rest.split(None, 1)[0]
    if "=" not in first:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            raise InvalidArgument(f"{instr} must have two arguments")
        return [(parts[0], parts[1].strip())]
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as err:
        raise InvalidArgument(f"{instr} {rest}: {err}") from None
    out = []
    for w in words:
        key, sep, value = w.partition("=")
        if not sep:
            raise InvalidArgument(f"Syntax error - can't find = in \"{w}\". Must be of the "
                                  "form: name=value")
        if not key:
            raise InvalidArgument(f"{instr} names can not be blank")
        out.append((key, value))
    return out


def _env(cfg, rest, instr):
    env = list(cfg.get("Env") or [])
    for key, value in _pairs(rest, instr):
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
    cfg["Env"] = env


def _label(cfg, rest, instr):
    labels = dict(cfg.get("Labels") or {})
    labels.update(_pairs(rest, instr))
    cfg["Labels"] = labels


def _expose(cfg, rest, instr):
    ports = dict(cfg.get("ExposedPorts") or {})
    for word in rest.split():
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = port.partition("-")
        if (proto not in ("tcp", "udp", "sctp") or not low.isdigit()
                or (high and not high.isdigit())):
            raise InvalidArgument(f"invalid containerPort: {word}")
        first, last = int(low), int(high or low)
        if not 0 < first <= last <= 65535:
            raise InvalidArgument(f"invalid containerPort: {word}")
        for n in range(first, last + 1):
            ports[f"{n}/{proto}"] = {}
    cfg["ExposedPorts"] = ports


def _volume(cfg, rest, instr):
    paths = _exec_form(rest)
    if paths is None:
        paths = rest.split()
    volumes = dict(cfg.get("Volumes") or {})
    for p in paths:
        if not p.strip():
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[p] = {}
    cfg["Volumes"] = volumes


def _workdir(cfg, rest, instr):
    cfg["WorkingDir"] = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", rest))


def _set(field):
    def change(cfg, rest, instr):
        cfg[field] = rest
    return change


def _onbuild(cfg, rest, instr):
    cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest]


_CHANGERS = {"CMD": _command, "ENTRYPOINT": _command, "ENV": _env, "EXPOSE": _expose,
             "LABEL": _label, "ONBUILD": _onbuild, "STOPSIGNAL": _set("StopSignal"),
             "USER": _set("User"), "VOLUME": _volume, "WORKDIR": _workdir}


def _gzip_compressor():
    try:
        from isal import isal_zlib
    except ImportError:
        import zlib
        return zlib.compressobj(6, zlib.DEFLATED, 31)
    return isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)


def _store_gzip_layer(svc, fileobj, lease):
    """Store the tar ``fileobj`` (any compression) gzip-compressed, in one pass;
    (descriptor, diff id)."""
    plain = uncompressed(fileobj, "import")
    gz = _gzip_compressor()
    h_gz, h_tar = hashlib.sha256(), hashlib.sha256()
    n_gz = n_tar = 0
    w = svc.content.writer(f"import-{uuid.uuid4().hex}")
    try:
        for chunk in _chunks(plain):
            h_tar.update(chunk)
            n_tar += len(chunk)
            out = gz.compress(chunk)
            if out:
                h_gz.update(out)
                n_gz += len(out)
                w.write(out)
        if n_tar == 0:
            raise InvalidArgument("import: the input is empty (want a tar archive)")
        out = gz.flush()
        h_gz.update(out)
        n_gz += len(out)
        w.write(out)
        digest = f"sha256:{h_gz.hexdigest()}"
        lease.add(digest)  # before the blob appears: a GC may run meanwhile
        w.commit(digest, n_gz)
    except BaseException:
        w.abort()
        raise
    return _descriptor(mf.OCI_LAYER_GZIP, digest, n_gz), f"sha256:{h_tar.hexdigest()}"


def import_rootfs(svc, fileobj, target=None, changes=(), message=None, platform=None):
    """`docker import`: the tar ``fileobj`` (plain, gzip, zstd, xz or bzip2) becomes a
    one-layer image, named ``target`` (None: no name); returns the image id."""
    ref = None
    if target:
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
    container_config = apply_changes(changes)
    plat = mf.parse_platform(platform) if platform else mf.host_platform()
    with _Lease(svc, "import") as lease:
        layer, diff_id = _store_gzip_layer(svc, fileobj, lease)
        created = now_rfc3339()
        config = {"architecture": plat["architecture"]}
        if plat.get("variant"):
            config["variant"] = plat["variant"]
        config.update({
            "os": plat["os"],
            "created": created,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "",
                         "comment": message or "Imported from -"}],
        })
        image_id = _store_image(svc, lease, config, [layer], ref)
    svc.event("import", image_id, name=ref.familiar_string() if ref else image_id)
    return image_id


def _store_image(svc, lease, config, layers, ref):
    """Store ``config`` and an OCI manifest of ``layers``, unpack them and record the image
    (named ``ref``, or dangling); its id."""
    config_raw = _dumps(config)
    config_digest = lease.put(config_raw)
    manifest = _dumps({
        "schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
        "config": _descriptor(mf.OCI_CONFIG, config_digest, len(config_raw)),
        "layers": layers})
    target_desc = _descriptor(mf.OCI_MANIFEST, lease.put(manifest), len(manifest))
    unpack_layers(svc, layers, config["rootfs"]["diff_ids"], lease.id)
    _record(svc, [(target_desc, [str(ref)] if ref else [])])
    return config_digest


def add_layer(svc, base, fileobj, target=None, config=None, history=None):
    """`berth commit`'s image: ``base`` (an Image) plus the tar ``fileobj`` as a new top
    layer, with ``config`` (Docker's container config object) and one more ``history``
    entry; named ``target`` (None: dangling). Returns the new image id."""
    ref = None
    if target:
        ref = reference.parse(target)
        if ref.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
    with _Lease(svc, "commit") as lease:
        layer, diff_id = _store_gzip_layer(svc, fileobj, lease)
        for old in base.manifest.layers:
            lease.add(old["digest"])
        image_config = json.loads(base.config_raw)
        image_config["created"] = (history or {}).get("created") or now_rfc3339()
        image_config["config"] = config or {}
        image_config["rootfs"] = {"type": "layers",
                                  "diff_ids": list(base.diff_ids) + [diff_id]}
        image_config["history"] = list(image_config.get("history") or []) + \
            ([history] if history else [])
        if history and history.get("author"):
            image_config["author"] = history["author"]
        layers = [dict(x) for x in base.manifest.layers] + [layer]
        return _store_image(svc, lease, image_config, layers, ref)


# ================================================================ save

class _TarOut:
    """Members of the archive being streamed, each blob once."""

    def __init__(self, tar):
        self.tar = tar
        self.dirs = set()
        self.blobs = set()

    def _info(self, name, size, kind=tarfile.REGTYPE):
        info = tarfile.TarInfo(name)
        info.size = size
        info.type = kind
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.mtime = 0  # the same images give the same archive
        return info

    def _dir(self, name):
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(self._info(name, 0, tarfile.DIRTYPE))

    def file(self, name, data):
        self.tar.addfile(self._info(name, len(data)), _Exact(_BytesReader(data)))

    def blob_path(self, digest):
        alg, hexpart = parse_digest(digest)
        return f"blobs/{alg}/{hexpart}"

    def _blob_start(self, digest):
        if digest in self.blobs:
            return None
        self.blobs.add(digest)
        alg = parse_digest(digest)[0]
        self._dir("blobs")
        self._dir(f"blobs/{alg}")
        return self.blob_path(digest)

    def blob(self, data):
        digest = digest_bytes(data)
        path = self._blob_start(digest)
        if path:
            self.file(path, data)
        return digest

    def stream_blob(self, digest, size, open_reader):
        path = self._blob_start(digest)
        if path:
            reader = open_reader()
            try:
                self.tar.addfile(self._info(path, size), _Exact(reader))
            finally:
                close = getattr(reader, "close", None)
                if close:
                    close()


class _BytesReader:
    def __init__(self, data):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n=-1):
        end = len(self._view) if n is None or n < 0 else self._pos + n
        out = bytes(self._view[self._pos:end])
        self._pos += len(out)
        return out


class _ClosingReader:
    """A decompressing reader that also closes the blob file under it."""

    def __init__(self, reader, blob):
        self._reader = reader
        self._blob = blob

    def read(self, n=-1):
        return self._reader.read(n)

    def close(self):
        try:
            close = getattr(self._reader, "close", None)
            if close:
                close()
        finally:
            self._blob.close()


def _open_plain(svc, desc):
    """The layer ``desc``'s uncompressed tar, read from the store."""
    blob = svc.content.open(desc["digest"])
    try:
        kind = compression.compression_of(desc.get("mediaType"))
        if kind is None:
            head = _read_up_to(blob, 4)
            kind = compression.detect(head)
            src = _Prefixed(head, blob)
        else:
            src = blob
        return _ClosingReader(compression.decompressor(src, kind), blob)
    except BaseException:
        blob.close()
        raise


def _plain_size(svc, desc, diff_id):
    """The uncompressed size of a layer, checking on the way that it is ``diff_id``."""
    if desc["digest"] == diff_id and compression.compression_of(
            desc.get("mediaType")) in (compression.NONE, None):
        return svc.content.size(desc["digest"])
    reader = _open_plain(svc, desc)
    h = hashlib.new(parse_digest(diff_id)[0])
    size = 0
    try:
        for chunk in _chunks(reader):
            h.update(chunk)
            size += len(chunk)
    finally:
        reader.close()
    got = f"{parse_digest(diff_id)[0]}:{h.hexdigest()}"
    if got != diff_id:
        raise DigestMismatch(f"layer {desc['digest']} (uncompressed)", diff_id, got)
    return size


def _save_groups(svc, names, platform):
    """[(image, [Reference naming it])], one entry per image, in the order first named."""
    groups = {}
    for name in names:
        image = svc.get(name, platform)
        ref = None
        try:
            parsed = reference.parse(name)
        except InvalidArgument:
            parsed = None
        if parsed is not None and svc.meta.get_image(str(parsed)) is not None \
                and not is_dangling(str(parsed)):
            ref = parsed
        key = image.target["digest"]
        if key not in groups:
            groups[key] = (image, [])
        if ref is not None and ref not in groups[key][1]:
            groups[key][1].append(ref)
    return list(groups.values())


def save(svc, names, fileobj, fmt="docker-archive", platform=None):
    """Write the images ``names`` (names or ids) to ``fileobj`` as a tar archive of format
    ``fmt`` ("docker-archive" or "oci-archive"), streaming."""
    if fmt not in FORMATS:
        raise InvalidArgument(f'unsupported archive format "{fmt}": want one of '
                              + ", ".join(FORMATS))
    if not names:
        raise InvalidArgument("save: no images given")
    groups = _save_groups(svc, names, platform)
    try:
        tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
    except (OSError, tarfile.TarError) as err:
        raise InvalidArgument(f"save: cannot write the archive: {err}") from err
    with tar:
        out = _TarOut(tar)
        if fmt == "oci-archive":
            _save_oci(svc, out, groups)
        else:
            _save_docker(svc, out, groups)


def _index_entry(desc, ref):
    entry = {k: desc[k] for k in ("mediaType", "digest", "size")}
    if ref is not None:
        annotations = {NAME_ANNOTATION: str(ref)}
        if ref.tag:
            annotations[REF_ANNOTATION] = ref.tag
        entry["annotations"] = annotations
    return entry


def _write_layout(out, index_entries):
    out.file("index.json", _dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX,
                                   "manifests": index_entries}))


def _save_docker(svc, out, groups):
    index, manifests, repositories = [], [], {}
    for image, refs in groups:
        diff_ids = image.diff_ids
        if len(diff_ids) != len(image.manifest.layers):
            raise InvalidArgument(f"image {image.id}: its config lists {len(diff_ids)} layers, "
                                  f"its manifest {len(image.manifest.layers)}")
        layers = []
        for desc, diff_id in zip(image.manifest.layers, diff_ids):
            size = _plain_size(svc, desc, diff_id)
            out.stream_blob(diff_id, size, lambda desc=desc: _open_plain(svc, desc))
            layers.append(_descriptor(mf.OCI_LAYER, diff_id, size))
        out.blob(image.config_raw)
        manifest = _dumps({
            "schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
            "config": _descriptor(mf.OCI_CONFIG, image.id, len(image.config_raw)),
            "layers": layers})
        desc = _descriptor(mf.OCI_MANIFEST, out.blob(manifest), len(manifest))
        index.extend(_index_entry(desc, ref) for ref in refs or [None])
        tags = [ref for ref in refs if ref.tag]
        manifests.append({"Config": out.blob_path(image.id),
                          "RepoTags": [ref.familiar_string() for ref in tags],
                          "Layers": [out.blob_path(d["digest"]) for d in layers]})
        for ref in tags:
            if layers:
                top = parse_digest(layers[-1]["digest"])[1]
                repositories.setdefault(ref.familiar, {})[ref.tag] = top
    _write_layout(out, index)
    out.file("manifest.json", _dumps(manifests))
    out.file("oci-layout", _dumps({"imageLayoutVersion": "1.0.0"}))
    if repositories:
        out.file("repositories", _dumps(repositories))


def _save_oci(svc, out, groups):
    index = []
    for image, refs in groups:
        _write_tree(svc, out, image.target, required=True)
        index.extend(_index_entry(image.target, ref) for ref in refs or [None])
    out.file("oci-layout", _dumps({"imageLayoutVersion": "1.0.0"}))
    _write_layout(out, index)


def _write_tree(svc, out, desc, required):
    """Write blob ``desc`` and what it references: an index's manifests that are in the
    store (a pull keeps one platform's), a manifest's config and layers (all required)."""
    digest = desc["digest"]
    if not svc.content.has(digest):
        if required and not desc.get("urls"):
            raise NotFound(f"image content {digest} ({desc.get('mediaType', 'blob')}) is "
                           "missing from the store")
        return
    media_type = desc.get("mediaType")
    if mf.is_index(media_type) or mf.is_manifest(media_type):
        data = svc.content.read(digest)
        parsed = mf.parse_manifest(data, media_type)
        out.blob(data)
        if isinstance(parsed, mf.Index):
            for child in parsed.manifests:
                _write_tree(svc, out, child, required=False)
        else:
            _write_tree(svc, out, parsed.config, required=True)
            for layer in parsed.layers:
                _write_tree(svc, out, layer, required=True)
        return
    out.stream_blob(digest, svc.content.size(digest), lambda: svc.content.open(digest))


# ================================================================ load

def _blob_digest(path):
    """"sha256:<hex>" for a path blobs/sha256/<hex>, else None."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            parse_digest(f"{parts[1]}:{parts[2]}")
        except InvalidArgument:
            return None
        return f"{parts[1]}:{parts[2]}"
    return None


def _clean(name):
    path = posixpath.normpath("/" + name).lstrip("/")
    return path


class _Spool:
    """The archive's members: blobs spooled into the content store as they pass (under the
    lease), small other files kept in memory until something refers to them."""

    def __init__(self, svc, lease):
        self.svc = svc
        self.lease = lease
        self.stored = {}   # path -> digest in the store
        self.small = {}    # path -> bytes
        self.links = {}    # path -> path it stands for

    def read(self, fileobj):
        try:
            tar = tarfile.open(fileobj=uncompressed(fileobj), mode="r|")
        except tarfile.ReadError as err:
            raise InvalidArgument(f"archive: not a tar archive ({err})") from None
        try:
            with tar:
                for m in tar:
                    self._member(tar, m)
        except (tarfile.TarError, EOFError) as err:
            raise InvalidArgument(f"archive: truncated or corrupt ({err})") from None

    def _member(self, tar, m):
        path = _clean(m.name)
        if m.issym():
            self.links[path] = _clean(posixpath.join(posixpath.dirname(path), m.linkname))
            return
        if m.islnk():
            self.links[path] = _clean(m.linkname)
            return
        if not m.isfile():
            return
        f = tar.extractfile(m)
        digest = _blob_digest(path)
        if digest is not None:
            self.stored[path] = self._store_known(f, digest, m.size, path)
        elif m.size <= _SMALL:
            data = f.read()
            if len(data) != m.size:
                raise InvalidArgument(f"archive: {path} is truncated")
            self.small[path] = data
        else:
            self.stored[path] = self._store_unknown(f, m.size, path)

    def _store_known(self, f, digest, size, path):
        self.lease.add(digest)
        w = self.svc.content.writer(f"load-{digest.replace(':', '-')}", digest, size,
                                    wait=True)
        try:
            if w.committed:
                return digest
            if w.offset:  # a crashed load's partial data: resume after it
                skip = _read_up_to(f, w.offset)
                if len(skip) != w.offset:
                    raise InvalidArgument(f"archive: {path} is truncated")
            _copy(f, w, size - w.offset, path)
            try:
                w.commit(digest, size)
            except DigestMismatch as err:
                raise DigestMismatch(f"{path} in the archive", digest, err.got) from None
        except BaseException:
            w.abort()
            raise
        return digest

    def _store_unknown(self, f, size, path):
        h = hashlib.sha256()
        w = self.svc.content.writer(f"load-{uuid.uuid4().hex}", None, size)
        try:
            _copy(f, w, size, path, h)
            digest = f"sha256:{h.hexdigest()}"
            self.lease.add(digest)
            w.commit(digest, size)
        except BaseException:
            w.abort()
            raise
        return digest

    def _resolve(self, path):
        path = _clean(path)
        for _ in range(_MAX_LINKS):
            if path not in self.links:
                return path
            path = self.links[path]
        raise InvalidArgument(f"archive: too many links at {path}")

    def has(self, path):
        path = self._resolve(path)
        return path in self.stored or path in self.small

    def digest(self, path):
        """The digest of the member at ``path``, storing it first if it is held in memory."""
        real = self._resolve(path)
        if real in self.stored:
            return self.stored[real]
        if real in self.small:
            self.stored[real] = self.lease.put(self.small.pop(real))
            return self.stored[real]
        raise NotFound(f"archive: {path} is missing from the archive")

    def bytes(self, path):
        real = self._resolve(path)
        if real in self.small:
            return self.small[real]
        return self.svc.content.read(self.digest(path))


def _copy(f, w, size, path, h=None):
    left = size
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            raise InvalidArgument(f"archive: {path} is truncated")
        if h is not None:
            h.update(chunk)
        w.write(chunk)
        left -= len(chunk)


class _Loaded:
    """One image found in the archive: its record target, names and what to unpack."""

    def __init__(self, target, names, manifest=None, config_digest=None, diff_ids=()):
        self.target = target
        self.names = names
        self.manifest = manifest
        self.config_digest = config_digest
        self.diff_ids = list(diff_ids)


def load(svc, fileobj, platform=None):
    """Load a docker-archive or OCI layout archive; the names loaded ("busybox:latest"),
    or the ids ("sha256:...") of images that came without a name."""
    want = mf.parse_platform(platform) if platform else mf.host_platform()
    with _Lease(svc, "load") as lease:
        spool = _Spool(svc, lease)
        spool.read(fileobj)
        if spool.has("index.json"):
            images = _from_oci(svc, spool, want)
        elif spool.has("manifest.json"):
            images = _from_docker(svc, spool, lease)
        else:
            raise InvalidArgument("archive: neither manifest.json (docker-archive) nor "
                                  "index.json (OCI layout) found")
        images = _merge(images)
        for image in images:
            if image.manifest is not None:
                unpack_layers(svc, image.manifest.layers, image.diff_ids, lease.id)
        _record(svc, [(image.target, image.names) for image in images])
    out = []
    for image in images:
        if image.names:
            out.extend(reference.parse(n).familiar_string() for n in image.names)
        else:
            out.append(image.config_digest or image.target["digest"])
        image_id = image.config_digest or image.target["digest"]
        svc.event("load", image_id, name=out[-1])
    return out


def _merge(images):
    """One entry per target; names merged, in order."""
    by_target = {}
    for image in images:
        have = by_target.get(image.target["digest"])
        if have is None:
            by_target[image.target["digest"]] = image
        else:
            have.names.extend(n for n in image.names if n not in have.names)
    return list(by_target.values())


def _json(data, what):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"archive: {what} is not valid JSON: {err}") from None


def _layer_type(svc, digest):
    with svc.content.open(digest) as f:
        kind = compression.detect(_read_up_to(f, 4))
    return {compression.NONE: mf.DOCKER_LAYER, compression.GZIP: mf.DOCKER_LAYER_GZIP,
            compression.ZSTD: mf.DOCKER_LAYER_ZSTD}[kind]


def _from_docker(svc, spool, lease):
    """Images of a docker-archive's manifest.json, each given a Docker schema 2 manifest."""
    entries = _json(spool.bytes("manifest.json"), "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("archive: manifest.json must be a list")
    images = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or \
                not isinstance(entry.get("Layers"), list):
            raise InvalidArgument(f"archive: manifest.json entry {i} needs Config and Layers")
        config_raw = spool.bytes(entry["Config"])
        config_digest = spool.digest(entry["Config"])
        config = _json(config_raw, entry["Config"])
        diff_ids = list(((config.get("rootfs") or {}).get("diff_ids")) or []) \
            if isinstance(config, dict) else []
        if len(diff_ids) != len(entry["Layers"]):
            raise InvalidArgument(f"archive: image {config_digest}: its config lists "
                                  f"{len(diff_ids)} layers, manifest.json "
                                  f"{len(entry['Layers'])}")
        layers = []
        for path, diff_id in zip(entry["Layers"], diff_ids):
            digest = spool.digest(path)
            media_type = _layer_type(svc, digest)
            if media_type == mf.DOCKER_LAYER and digest != diff_id:
                raise DigestMismatch(f"layer {path} in the archive", diff_id, digest)
            layers.append(_descriptor(media_type, digest, svc.content.size(digest)))
        raw = _dumps({"schemaVersion": 2, "mediaType": mf.DOCKER_MANIFEST,
                      "config": _descriptor(mf.DOCKER_CONFIG, config_digest, len(config_raw)),
                      "layers": layers})
        target = _descriptor(mf.DOCKER_MANIFEST, lease.put(raw), len(raw))
        names = []
        for tag in entry.get("RepoTags") or []:
            name = str(reference.parse(tag))
            if name not in names:
                names.append(name)
        images.append(_Loaded(target, names, mf.parse_manifest(raw, mf.DOCKER_MANIFEST),
                              config_digest, diff_ids))
    return images


def _names_of(desc):
    annotations = desc.get("annotations") or {}
    name = annotations.get(NAME_ANNOTATION)
    if not name:
        ref_name = annotations.get(REF_ANNOTATION) or ""
        # A bare tag ("latest") names no repository: such an image loads without a name.
        if any(c in ref_name for c in "/:@"):
            name = ref_name
    return [str(reference.parse(name))] if name else []


def _read_blob(svc, desc, what):
    digest = desc.get("digest")
    parse_digest(digest)
    if not svc.content.has(digest):
        raise NotFound(f"archive: {what} {digest} is missing from the archive")
    if isinstance(desc.get("size"), int) and svc.content.size(digest) != desc["size"]:
        raise InvalidArgument(f"archive: {what} {digest} has {svc.content.size(digest)} "
                              f"bytes, its descriptor says {desc['size']}")
    return svc.content.read(digest)


def _from_oci(svc, spool, want):
    """Images of an OCI layout's index.json; an index is kept whole, the platform ``want``
    picked from it for unpacking."""
    index = mf.parse_manifest(spool.bytes("index.json"), None)
    if not isinstance(index, mf.Index):
        raise InvalidArgument("archive: index.json is not an image index")
    images = []
    for entry in index.manifests:
        data = _read_blob(svc, entry, "manifest")
        parsed = mf.parse_manifest(data, entry.get("mediaType"))
        target = _descriptor(parsed.media_type, entry["digest"], len(data))
        names = _names_of(entry)
        manifest = parsed
        depth = 0
        while isinstance(manifest, mf.Index):
            depth += 1
            if depth > 8:
                raise InvalidArgument(f"archive: index {entry['digest']} nests too deep")
            try:
                child = mf.select(manifest, want)
            except NotFound:
                manifest = None  # recorded, but nothing here runs on this platform
                break
            manifest = mf.parse_manifest(_read_blob(svc, child, "manifest"),
                                         child.get("mediaType"))
        if manifest is None:
            images.append(_Loaded(target, names))
            continue
        config = _json(_read_blob(svc, manifest.config, "config"), manifest.config["digest"])
        diff_ids = list(((config.get("rootfs") or {}).get("diff_ids")) or []) \
            if isinstance(config, dict) else []
        if len(diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"archive: image {manifest.config['digest']}: its config "
                                  f"lists {len(diff_ids)} layers, its manifest "
                                  f"{len(manifest.layers)}")
        for layer in manifest.layers:
            if not svc.content.has(layer["digest"]):
                raise NotFound(f"archive: layer {layer['digest']} is missing from the "
                               "archive")
        images.append(_Loaded(target, names, manifest, manifest.config["digest"], diff_ids))
    return images
