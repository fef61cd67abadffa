"""Manifests, indexes and platforms: the media types, parsing by media type, and picking the
manifest for a platform out of an index the way Docker (through containerd's platforms
package) does.

``parse_manifest`` checks every descriptor (digest, size, mediaType) through the typed models
in ``berth.spec.image`` and keeps the raw bytes; the descriptors it hands out are plain dicts
with the OCI field names, as the rest of the image code passes them around.
"""

import os

from berth.content.digest import digest_bytes
from berth.errors import InvalidArgument, NotFound, Unsupported
from berth.spec import jsonio
from berth.spec._record import Record
from berth.spec.image import ImageIndex, ImageManifest

# ---------------------------------------------------------------- media types

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IN_TOTO = "application/vnd.in-toto+json"

MEDIA = {
    "oci-index": OCI_INDEX,
    "oci-manifest": OCI_MANIFEST,
    "oci-config": OCI_CONFIG,
    "oci-empty": OCI_EMPTY,
    "oci-layer": OCI_LAYER,
    "oci-layer-gzip": OCI_LAYER_GZIP,
    "oci-layer-zstd": OCI_LAYER_ZSTD,
    "oci-layer-nondist": OCI_LAYER_NONDIST,
    "oci-layer-nondist-gzip": OCI_LAYER_NONDIST_GZIP,
    "oci-layer-nondist-zstd": OCI_LAYER_NONDIST_ZSTD,
    "docker-manifest-list": DOCKER_MANIFEST_LIST,
    "docker-manifest": DOCKER_MANIFEST,
    "docker-config": DOCKER_CONFIG,
    "docker-layer": DOCKER_LAYER,
    "docker-layer-gzip": DOCKER_LAYER_GZIP,
    "docker-layer-zstd": DOCKER_LAYER_ZSTD,
    "docker-foreign-layer": DOCKER_FOREIGN_LAYER,
    "docker-foreign-layer-gzip": DOCKER_FOREIGN_LAYER_GZIP,
    "docker-plugin-config": DOCKER_PLUGIN_CONFIG,
    "docker-schema1": DOCKER_SCHEMA1,
    "docker-schema1-signed": DOCKER_SCHEMA1_SIGNED,
    "in-toto": IN_TOTO,
}

INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
# What a pull asks a registry for, in order of preference (an Accept header's list).
ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

_LAYER_COMPRESSION = {
    OCI_LAYER: "", OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: "", OCI_LAYER_NONDIST_GZIP: "gzip", OCI_LAYER_NONDIST_ZSTD: "zstd",
    DOCKER_LAYER: "", DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_ZSTD: "zstd",
    DOCKER_FOREIGN_LAYER: "", DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}
_NONDISTRIBUTABLE = frozenset((OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP, OCI_LAYER_NONDIST_ZSTD,
                               DOCKER_FOREIGN_LAYER, DOCKER_FOREIGN_LAYER_GZIP))
# Content-Types that say nothing: look at the document itself.
_VAGUE_TYPES = ("", "application/json", "text/plain", "application/octet-stream")

ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_VALUE = "attestation-manifest"

SCHEMA1_MESSAGE = (
    "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been "
    "removed. Suggest the author of {ref} to upgrade the image to the OCI Format or Docker "
    "Image manifest v2, schema 2. More information at "
    "https://docs.docker.com/go/deprecated-image-specs/"
)


def is_index(media_type):
    return media_type in INDEX_TYPES


def is_manifest(media_type):
    return media_type in MANIFEST_TYPES


def is_layer(media_type):
    return media_type in _LAYER_COMPRESSION


def is_nondistributable(media_type):
    """Foreign (Docker) and non-distributable (OCI) layers: not pushed to other registries."""
    return media_type in _NONDISTRIBUTABLE


def layer_compression(media_type):
    """"gzip", "zstd" or "" (plain tar) for a layer media type; Unsupported for others."""
    try:
        return _LAYER_COMPRESSION[media_type]
    except KeyError:
        raise Unsupported(f"unsupported layer media type: {media_type}") from None


# ---------------------------------------------------------------- documents

class _Document(Record):
    @property
    def digest(self):
        """sha256 digest of the raw bytes (what a registry names the document by)."""
        return digest_bytes(self.raw)


class Manifest(_Document):
    """An image manifest (OCI or Docker schema 2); descriptors are dicts."""

    media_type: str = OCI_MANIFEST
    config: dict = {}
    layers: list = []
    annotations: dict = {}
    subject: "dict | None" = None
    artifact_type: str = ""
    raw: bytes = b""
    model: "ImageManifest | None" = None

    def __repr__(self):
        return f"Manifest({self.media_type}, {len(self.layers)} layers, {len(self.raw)} bytes)"


class Index(_Document):
    """An image index or Docker manifest list; descriptors are dicts."""

    media_type: str = OCI_INDEX
    manifests: list = []
    annotations: dict = {}
    subject: "dict | None" = None
    artifact_type: str = ""
    raw: bytes = b""
    model: "ImageIndex | None" = None

    def __repr__(self):
        return f"Index({self.media_type}, {len(self.manifests)} manifests, {len(self.raw)} bytes)"


def parse_manifest(data, media_type=None, ref=None):
    """Parse a manifest or index; ``media_type`` is the registry's Content-Type or the
    descriptor's mediaType (parameters such as "; charset=utf-8" are ignored).

    Without a telling media type, the document's own "mediaType" decides; without that, a
    document with "manifests" is an OCI index and one with "config" an OCI manifest.
    Schema 1 is refused with Docker's message naming ``ref`` (a Reference or a string).
    """
    if isinstance(data, str):
        data = data.encode()
    try:
        doc = jsonio.loads(data, "manifest")
    except InvalidArgument as err:  # "manifest: not valid JSON: why" or "...: not UTF-8: why"
        why = str(err).split(": ", 2)[-1]
        raise InvalidArgument(f"manifest: invalid JSON: {why}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("manifest: must be a JSON object")
    given = (media_type or "").partition(";")[0].strip().lower()
    inner = doc.get("mediaType")
    if inner is not None and not isinstance(inner, str):
        raise InvalidArgument("manifest.mediaType: must be a string")

    if (given in SCHEMA1_TYPES or inner in SCHEMA1_TYPES or doc.get("schemaVersion") == 1
            or "fsLayers" in doc):
        name = ref.familiar_string() if hasattr(ref, "familiar_string") else (ref or "the image")
        raise Unsupported(SCHEMA1_MESSAGE.format(ref=name))

    if given in INDEX_TYPES or given in MANIFEST_TYPES:
        kind = given
    elif given in _VAGUE_TYPES:
        kind = _detect(doc, inner)
    else:
        raise Unsupported(f"unsupported manifest media type and no default available: {given}")

    # containerd's check: a document that is the other kind is an error, whatever it claims.
    if kind in MANIFEST_TYPES and ("manifests" in doc or inner in INDEX_TYPES):
        raise InvalidArgument(f"media-type: expected manifest but found index ({kind})")
    if kind in INDEX_TYPES and ("config" in doc or "layers" in doc or inner in MANIFEST_TYPES):
        raise InvalidArgument(f"media-type: expected index but found manifest ({kind})")

    if kind in MANIFEST_TYPES:
        model = ImageManifest.from_json(doc)
        return Manifest(config=dict(doc["config"]), layers=[dict(d) for d in doc["layers"]],
                        **_common(kind, doc, model, data))
    model = ImageIndex.from_json(doc)
    return Index(manifests=[dict(d) for d in doc["manifests"]], **_common(kind, doc, model, data))


def _common(kind, doc, model, data):
    subject = doc.get("subject")
    return {"media_type": kind, "annotations": dict(model.annotations),
            "subject": dict(subject) if subject is not None else None,
            "artifact_type": model.artifact_type, "raw": bytes(data), "model": model}


def _detect(doc, inner):
    if inner in INDEX_TYPES or inner in MANIFEST_TYPES:
        return inner
    if inner:
        raise Unsupported(f"unsupported manifest media type and no default available: {inner}")
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc:
        return OCI_MANIFEST
    raise InvalidArgument('manifest: neither a manifest (no "config") nor an index '
                          '(no "manifests")')


# ---------------------------------------------------------------- platforms

KNOWN_OS = frozenset((
    "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
    "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos",
))
KNOWN_ARCH = frozenset((
    "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc",
    "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
))

# uname -m -> (GOARCH, variant)
_MACHINES = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"), "armv7l": ("arm", "v7"), "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"), "armv5tejl": ("arm", "v5"),
    "i386": ("386", ""), "i486": ("386", ""), "i586": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "ppc64": ("ppc64", ""), "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""), "loongarch64": ("loong64", ""), "mips64": ("mips64", ""),
    "mips": ("mips", ""),
}


def host_platform():
    """This machine's platform in OCI terms: {"os": "linux", "architecture": "amd64"}, with a
    "variant" for arm ("v8" for arm64, as Docker reports it)."""
    machine = os.uname().machine
    arch, variant = _MACHINES.get(machine, (machine, ""))
    if arch == machine and machine.startswith("arm"):
        arch, variant = "arm", "v7"
    out = {"os": "linux", "architecture": arch}
    if variant:
        out["variant"] = variant
    return out


def parse_platform(s):
    """Parse a --platform value: "linux/arm64/v8", "linux/amd64", "linux", "arm64".

    Aliases are normalised (x86_64 -> amd64, aarch64 -> arm64); a missing os or architecture
    comes from the host. InvalidArgument in containerd's words for the rest.
    """
    if not isinstance(s, str) or not s:
        raise InvalidArgument('"": unknown operating system or architecture: invalid argument')
    parts = s.lower().split("/")
    if len(parts) > 3:
        raise InvalidArgument(f'"{s}": cannot parse platform specifier: invalid argument')
    os_name, os_version = parts[0], ""
    if "(" in os_name and os_name.endswith(")"):
        os_name, _, os_version = os_name[:-1].partition("(")
        parts[0] = os_name
    for part in parts:
        if not part or not all(c.isascii() and (c.isalnum() or c in "_-") for c in part):
            raise InvalidArgument(
                f'"{part}": is an invalid component of "{s}": platform specifier component '
                'must match "^[A-Za-z0-9_-]+$": invalid argument')
    if len(parts) == 1:
        host = host_platform()
        if _normal_os(os_name) in KNOWN_OS:
            out = dict(host, os=_normal_os(os_name))
            if out["architecture"] == "arm" and out.get("variant") == "v7":
                del out["variant"]
            return out
        arch, variant = _normal_arch(parts[0], "")
        if arch not in KNOWN_ARCH:
            raise InvalidArgument(
                f'"{s}": unknown operating system or architecture: invalid argument')
        out = {"os": host["os"], "architecture": arch}
        if variant and not (arch == "arm" and variant == "v7"):
            out["variant"] = variant
        return out
    arch, variant = _normal_arch(parts[1], parts[2] if len(parts) == 3 else "")
    if len(parts) == 3 and arch == "arm64" and not variant:
        variant = "v8"
    if len(parts) == 2 and arch == "arm" and variant == "v7":
        variant = ""
    out = {"os": _normal_os(os_name), "architecture": arch}
    if variant:
        out["variant"] = variant
    if os_version:
        out["os.version"] = os_version
    return out


def format_platform(platform):
    """"os/architecture[/variant]" for a platform dict (or a parsed string, unchanged)."""
    if isinstance(platform, str):
        return platform
    parts = [platform.get("os") or "unknown", platform.get("architecture") or "unknown"]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def normalize_platform(platform):
    """containerd's Normalize: lower case, aliases resolved, default variants dropped
    (arm64's "v8", amd64's "v1") or filled in (arm's "v7")."""
    arch, variant = _normal_arch(platform.get("architecture") or "", platform.get("variant") or "")
    return (_normal_os(platform.get("os") or ""), arch, variant)


def matches(want, have):
    """True if an image for ``have`` runs where ``want`` is asked for (containerd's
    platforms.Only: an arm64 host takes arm/v8..v5, arm/v7 takes v6 and v5, amd64/v3 takes
    v2 and v1, amd64 takes 386)."""
    return _rank(_vector(_as_platform(want)), have) is not None


def select(index, platform=None):
    """The descriptor of ``index`` (an Index, its JSON dict, or a list of descriptors) that
    best matches ``platform`` (a dict or "os/arch[/variant]"; default: the host).

    Entries without a platform and attestation manifests are skipped. The best match is
    the first entry matching the most preferred platform. NotFound in Docker's words.
    """
    if platform is None:
        platform = host_platform()
    want = _as_platform(platform)
    if isinstance(index, Index):
        entries = index.manifests
    elif isinstance(index, dict):
        entries = index.get("manifests") or []
    else:
        entries = list(index)
    vector = _vector(want)
    best, best_rank = None, None
    for desc in entries:
        have = desc.get("platform")
        if not isinstance(have, dict) or is_attestation(desc):
            continue
        rank = _rank(vector, have)
        if rank is not None and (best_rank is None or rank < best_rank):
            best, best_rank = desc, rank
    if best is None:
        raise NotFound(f"no matching manifest for {format_platform(want)} "
                       "in the manifest list entries")
    return best


def is_attestation(desc):
    """BuildKit's provenance/SBOM manifests: listed in indexes as platform unknown/unknown."""
    annotations = desc.get("annotations") or {}
    return annotations.get(ATTESTATION_ANNOTATION) == ATTESTATION_VALUE


def _as_platform(platform):
    if isinstance(platform, str):
        return parse_platform(platform)
    if not isinstance(platform, dict):
        raise InvalidArgument(f"platform: must be a string or an object, not {platform!r}")
    return platform


def _rank(vector, have):
    key = normalize_platform(have)
    try:
        return vector.index(key)
    except ValueError:
        return None


def _vector(platform):
    # The platforms an image may have for ``platform`` to run it, most preferred first.
    os_name, arch, variant = normalize_platform(platform)
    out = [(os_name, arch, variant)]
    if arch == "amd64":
        level = _variant_level(variant)
        if level is not None and level > 1:
            for n in range(level - 1, 0, -1):
                out.append(_normal_key(os_name, "amd64", f"v{n}"))
        out.append((os_name, "386", ""))
    elif arch == "arm":
        level = _variant_level(variant)
        if level is not None and level > 5:
            for n in range(level - 1, 4, -1):
                out.append((os_name, "arm", f"v{n}"))
    elif arch == "arm64":
        out.extend(_vector({"os": os_name, "architecture": "arm", "variant": variant or "v8"}))
    return out


def _normal_key(os_name, arch, variant):
    return (os_name,) + _normal_arch(arch, variant)


def _variant_level(variant):
    digits = variant[1:] if variant.startswith("v") else variant
    return int(digits) if digits.isdigit() else None


def _normal_os(name):
    name = name.lower()
    return "darwin" if name == "macos" else name


def _normal_arch(arch, variant):
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
        return "arm", variant
    return arch, variant
