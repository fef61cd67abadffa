"""Manifest and index parsing by media type, descriptor checks, and platform selection with
Docker's (containerd's) matching rules."""

import json

import pytest

from berth.errors import InvalidArgument, NotFound, Unsupported
from berth.images import manifest as mf
from berth.images.reference import parse
from tests.unit.test_spec_image import image_schema_errors, needs_schemas

D = "sha256:" + "a" * 64


def digest(n):
    return "sha256:" + f"{n:x}".rjust(64, "0")


def desc(media_type, n=1, size=100, **extra):
    return dict({"mediaType": media_type, "digest": digest(n), "size": size}, **extra)


def oci_manifest(**extra):
    doc = {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
           "config": desc(mf.OCI_CONFIG, 1, 500),
           "layers": [desc(mf.OCI_LAYER_GZIP, 2, 1000), desc(mf.OCI_LAYER_ZSTD, 3, 2000)]}
    doc.update(extra)
    return doc


def docker_manifest():
    return {"schemaVersion": 2, "mediaType": mf.DOCKER_MANIFEST,
            "config": desc(mf.DOCKER_CONFIG, 1, 1457),
            "layers": [desc(mf.DOCKER_LAYER_GZIP, 2, 2220094)]}


def entry(n, os_name, arch, variant=None, media_type=mf.OCI_MANIFEST, **extra):
    platform = {"architecture": arch, "os": os_name}
    if variant:
        platform["variant"] = variant
    return desc(media_type, n, 500, platform=platform, **extra)


def attestation(n, of):
    return desc(mf.OCI_MANIFEST, n, 800, platform={"architecture": "unknown", "os": "unknown"},
                annotations={"vnd.docker.reference.digest": digest(of),
                             "vnd.docker.reference.type": "attestation-manifest"})


# Shaped like docker.io/library/busybox's index today: many platforms plus attestations.
BUSYBOX = {
    "schemaVersion": 2, "mediaType": mf.OCI_INDEX,
    "manifests": [
        entry(10, "linux", "amd64"), entry(11, "linux", "arm", "v5"),
        entry(12, "linux", "arm", "v6"), entry(13, "linux", "arm", "v7"),
        entry(14, "linux", "arm64", "v8"), entry(15, "linux", "386"),
        entry(16, "linux", "mips64le"), entry(17, "linux", "ppc64le"),
        entry(18, "linux", "riscv64"), entry(19, "linux", "s390x"),
        attestation(20, 10), attestation(21, 11), attestation(22, 14),
        entry(23, "windows", "amd64"),
    ],
}


def encode(doc):
    return json.dumps(doc, indent=3).encode()


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("doc,given,kind,cls", [
    (oci_manifest(), mf.OCI_MANIFEST, mf.OCI_MANIFEST, mf.Manifest),
    (oci_manifest(), None, mf.OCI_MANIFEST, mf.Manifest),
    (oci_manifest(), "application/json", mf.OCI_MANIFEST, mf.Manifest),
    (oci_manifest(), mf.OCI_MANIFEST + "; charset=utf-8", mf.OCI_MANIFEST, mf.Manifest),
    ({k: v for k, v in oci_manifest().items() if k != "mediaType"}, None, mf.OCI_MANIFEST,
     mf.Manifest),
    (docker_manifest(), mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST, mf.Manifest),
    (docker_manifest(), "", mf.DOCKER_MANIFEST, mf.Manifest),
    (BUSYBOX, mf.OCI_INDEX, mf.OCI_INDEX, mf.Index),
    (BUSYBOX, None, mf.OCI_INDEX, mf.Index),
    ({"schemaVersion": 2, "manifests": []}, None, mf.OCI_INDEX, mf.Index),
    (dict(BUSYBOX, mediaType=mf.DOCKER_MANIFEST_LIST), "text/plain", mf.DOCKER_MANIFEST_LIST,
     mf.Index),
])
def test_parse_kinds(doc, given, kind, cls):
    data = encode(doc)
    parsed = mf.parse_manifest(data, given)
    assert type(parsed) is cls
    assert parsed.media_type == kind
    assert parsed.raw == data
    assert parsed.digest.startswith("sha256:") and len(parsed.digest) == 71


def test_manifest_fields():
    doc = oci_manifest(annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
                       artifactType="application/vnd.example+json",
                       subject=desc(mf.OCI_MANIFEST, 9, 10))
    m = mf.parse_manifest(encode(doc), None)
    assert m.config == doc["config"]
    assert m.layers == doc["layers"]
    assert isinstance(m.layers, list) and isinstance(m.config, dict)
    assert m.annotations == doc["annotations"]
    assert m.subject == doc["subject"]
    assert m.artifact_type == "application/vnd.example+json"
    assert m.model.layers[1].media_type == mf.OCI_LAYER_ZSTD
    assert m.model.config.size == 500
    assert "2 layers" in repr(m)


def test_index_fields_and_raw_digest():
    data = encode(BUSYBOX)
    idx = mf.parse_manifest(data, mf.OCI_INDEX)
    assert idx.manifests == BUSYBOX["manifests"]
    assert idx.model.manifests[4].platform.variant == "v8"
    import hashlib
    assert idx.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_empty_layers_are_read():
    # Images built FROM scratch with only metadata are pushed with no layers.
    m = mf.parse_manifest(encode(oci_manifest(layers=[])), None)
    assert m.layers == []


@pytest.mark.parametrize("given,doc", [
    (mf.DOCKER_SCHEMA1_SIGNED, {"schemaVersion": 1, "name": "x", "fsLayers": []}),
    (mf.DOCKER_SCHEMA1, {"schemaVersion": 1, "name": "x", "fsLayers": []}),
    (None, {"schemaVersion": 1, "name": "x", "fsLayers": [], "signatures": []}),
    ("application/json", {"schemaVersion": 1, "name": "x"}),
    (None, {"mediaType": mf.DOCKER_SCHEMA1, "schemaVersion": 1}),
])
def test_schema1_refused(given, doc):
    with pytest.raises(Unsupported) as info:
        mf.parse_manifest(encode(doc), given, ref=parse("busybox:1.0"))
    assert str(info.value) == (
        "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been "
        "removed. Suggest the author of busybox:1.0 to upgrade the image to the OCI Format or "
        "Docker Image manifest v2, schema 2. More information at "
        "https://docs.docker.com/go/deprecated-image-specs/")


def test_schema1_names_a_string_ref():
    with pytest.raises(Unsupported, match="author of example.com/x:1 to upgrade"):
        mf.parse_manifest(b'{"schemaVersion": 1}', None, ref="example.com/x:1")


@pytest.mark.parametrize("data,given,cls,message", [
    (b"{not json", None, InvalidArgument, "manifest: invalid JSON"),
    (b"[1, 2]", None, InvalidArgument, "manifest: must be a JSON object"),
    (b'{"schemaVersion": 2}', None, InvalidArgument, 'neither a manifest (no "config")'),
    (encode(oci_manifest()), mf.OCI_CONFIG, Unsupported,
     "unsupported manifest media type and no default available: " + mf.OCI_CONFIG),
    (encode(oci_manifest(mediaType="application/vnd.example+json")), None, Unsupported,
     "unsupported manifest media type and no default available: application/vnd.example+json"),
    (encode(oci_manifest(mediaType=7)), None, InvalidArgument, "manifest.mediaType: must be"),
    (encode(BUSYBOX), mf.OCI_MANIFEST, InvalidArgument,
     "media-type: expected manifest but found index (" + mf.OCI_MANIFEST + ")"),
    (encode(oci_manifest()), mf.DOCKER_MANIFEST_LIST, InvalidArgument,
     "media-type: expected index but found manifest (" + mf.DOCKER_MANIFEST_LIST + ")"),
    (encode(dict(BUSYBOX, mediaType=mf.OCI_MANIFEST)), None, InvalidArgument,
     "media-type: expected manifest but found index"),
    (encode(oci_manifest(schemaVersion=3)), None, InvalidArgument,
     "manifest.schemaVersion: must be 2, not 3"),
    (encode({k: v for k, v in oci_manifest().items() if k != "schemaVersion"}), None,
     InvalidArgument, "manifest.schemaVersion: is required"),
    (encode(oci_manifest(layers=None)), None, InvalidArgument, "manifest.layers: is required"),
    (encode(oci_manifest(layers={})), None, InvalidArgument, "manifest.layers: must be an array"),
    (encode(oci_manifest(config="x")), None, InvalidArgument, "manifest.config: must be an obj"),
    (encode({"schemaVersion": 2, "manifests": {}}), None, InvalidArgument,
     "index.manifests: must be an array"),
    (encode(oci_manifest(annotations={"a": 1})), None, InvalidArgument,
     "manifest.annotations.a: must be a string"),
])
def test_parse_errors(data, given, cls, message):
    with pytest.raises(cls) as info:
        mf.parse_manifest(data, given)
    assert message in str(info.value)


def _with_config(**changes):
    doc = oci_manifest()
    doc["config"] = dict(doc["config"], **changes)
    return doc


@pytest.mark.parametrize("doc,message", [
    (_with_config(digest="sha256:abc"), "manifest.config.digest: invalid checksum digest length"),
    (_with_config(digest="sha256:" + "A" * 64),
     "manifest.config.digest: invalid checksum digest format"),
    (_with_config(digest="md5:" + "a" * 32), "manifest.config.digest: unsupported digest algo"),
    (_with_config(digest="nocolon"), "manifest.config.digest: invalid checksum digest format"),
    (_with_config(digest="sha256:../../etc/passwd"),
     "manifest.config.digest: invalid checksum digest"),
    (_with_config(digest=None), "manifest.config.digest: is required"),
    (_with_config(size=-1), "manifest.config.size: must be at least 0"),
    (_with_config(size=1.5), "manifest.config.size: must be an integer"),
    (_with_config(size=True), "manifest.config.size: must be an integer"),
    (_with_config(size="100"), "manifest.config.size: must be an integer"),
    (_with_config(size=None), "manifest.config.size: is required"),
    (_with_config(mediaType=None), "manifest.config.mediaType: is required"),
    (_with_config(mediaType=5), "manifest.config.mediaType: must be a string"),
    (_with_config(mediaType=""), "manifest.config.mediaType: must not be empty"),
    (_with_config(urls="http://x"), "manifest.config.urls: must be an array of strings"),
    (_with_config(platform={"os": "linux"}), "manifest.config.platform.architecture: is requ"),
    (oci_manifest(layers=[desc(mf.OCI_LAYER, 2), dict(desc(mf.OCI_LAYER, 3), size=-5)]),
     "manifest.layers[1].size: must be at least 0"),
    (oci_manifest(layers=["sha256:x"]), "manifest.layers[0]: must be an object"),
    (oci_manifest(subject={"mediaType": mf.OCI_MANIFEST}), "manifest.subject.digest: is requ"),
    ({"schemaVersion": 2, "manifests": [dict(desc(mf.OCI_MANIFEST), digest="x:y")]},
     "index.manifests[0].digest: unsupported digest algorithm"),
    ({"schemaVersion": 2, "manifests": [desc(mf.OCI_MANIFEST, platform="linux/amd64")]},
     "index.manifests[0].platform: must be an object"),
])
def test_descriptor_errors(doc, message):
    with pytest.raises(InvalidArgument) as info:
        mf.parse_manifest(encode(doc), None)
    assert message in str(info.value)


def test_media_type_helpers():
    assert mf.MEDIA["oci-index"] == "application/vnd.oci.image.index.v1+json"
    assert mf.MEDIA["docker-manifest"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert mf.is_index(mf.DOCKER_MANIFEST_LIST) and not mf.is_index(mf.OCI_MANIFEST)
    assert mf.is_manifest(mf.DOCKER_MANIFEST) and not mf.is_manifest(mf.OCI_CONFIG)
    assert mf.layer_compression(mf.OCI_LAYER) == ""
    assert mf.layer_compression(mf.DOCKER_LAYER_GZIP) == "gzip"
    assert mf.layer_compression(mf.OCI_LAYER_NONDIST_ZSTD) == "zstd"
    assert mf.layer_compression(mf.DOCKER_FOREIGN_LAYER_GZIP) == "gzip"
    with pytest.raises(Unsupported, match="unsupported layer media type"):
        mf.layer_compression(mf.OCI_CONFIG)
    assert mf.is_layer(mf.OCI_LAYER_GZIP) and not mf.is_layer(mf.OCI_EMPTY)
    assert mf.is_nondistributable(mf.DOCKER_FOREIGN_LAYER_GZIP)
    assert mf.is_nondistributable(mf.OCI_LAYER_NONDIST)
    assert not mf.is_nondistributable(mf.OCI_LAYER_GZIP)
    assert set(mf.ACCEPT) == set(mf.INDEX_TYPES + mf.MANIFEST_TYPES)


# ---------------------------------------------------------------- platforms

@pytest.mark.parametrize("platform,expected", [
    ("linux/amd64", 10),
    ({"os": "linux", "architecture": "amd64"}, 10),
    ("linux/x86_64", 10),
    ("linux/amd64/v1", 10),
    ("linux/arm64", 14),
    ("linux/arm64/v8", 14),
    ({"os": "linux", "architecture": "aarch64"}, 14),
    ("linux/arm", 13),
    ("linux/arm/v7", 13),
    ("linux/arm/v6", 12),
    ("linux/arm/v5", 11),
    ("linux/386", 15),
    ("linux/s390x", 19),
    ("linux/ppc64le", 17),
    ("windows/amd64", 23),
])
def test_select_busybox(platform, expected):
    for index in (BUSYBOX, mf.parse_manifest(encode(BUSYBOX), None), BUSYBOX["manifests"]):
        assert mf.select(index, platform)["digest"] == digest(expected)


@pytest.mark.parametrize("entries,platform,expected", [
    # arm falls back v7 -> v6 -> v5
    ([entry(1, "linux", "arm", "v5"), entry(2, "linux", "arm", "v6")], "linux/arm/v7", 2),
    ([entry(1, "linux", "arm", "v5")], "linux/arm/v7", 1),
    ([entry(1, "linux", "arm", "v5"), entry(2, "linux", "arm", "v7")], "linux/arm/v6", 1),
    # an entry for arm without variant is arm/v7
    ([entry(1, "linux", "arm")], "linux/arm/v7", 1),
    # arm64 runs 32-bit arm images when there is nothing better
    ([entry(1, "linux", "arm", "v6"), entry(2, "linux", "arm", "v7")], "linux/arm64", 2),
    ([entry(1, "linux", "arm", "v7"), entry(2, "linux", "arm64")], "linux/arm64/v8", 2),
    # amd64 takes 386; amd64/v3 takes v2 before v1
    ([entry(1, "linux", "386")], "linux/amd64", 1),
    ([entry(1, "linux", "amd64"), entry(2, "linux", "amd64", "v2"),
      entry(3, "linux", "amd64", "v4")], "linux/amd64/v3", 2),
    ([entry(1, "linux", "386"), entry(2, "linux", "amd64")], "linux/amd64/v3", 2),
    ([entry(1, "linux", "amd64", "v1")], "linux/amd64", 1),
    # equal matches: the first wins
    ([entry(1, "linux", "amd64"), entry(2, "linux", "amd64")], "linux/amd64", 1),
    # entries without a platform are skipped, so are attestations even if they claim one
    ([desc(mf.OCI_MANIFEST, 1), entry(2, "linux", "amd64")], "linux/amd64", 2),
    ([dict(entry(1, "linux", "amd64"), annotations={
        "vnd.docker.reference.type": "attestation-manifest"}), entry(2, "linux", "amd64")],
     "linux/amd64", 2),
    # case and aliases in the index
    ([entry(1, "Linux", "X86_64")], "linux/amd64", 1),
    ([entry(1, "linux", "aarch64", "8")], "linux/arm64", 1),
    ([entry(1, "linux", "armhf")], "linux/arm/v7", 1),
])
def test_select_rules(entries, platform, expected):
    assert mf.select({"manifests": entries}, platform)["digest"] == digest(expected)


@pytest.mark.parametrize("entries,platform,words", [
    ([entry(1, "linux", "amd64")], "linux/arm64/v8", "linux/arm64/v8"),
    ([entry(1, "linux", "amd64")], "linux/arm64", "linux/arm64"),
    ([entry(1, "linux", "amd64")], {"os": "linux", "architecture": "mips64"}, "linux/mips64"),
    ([entry(1, "linux", "amd64", "v2")], "linux/amd64", "linux/amd64"),
    ([entry(1, "linux", "arm", "v7")], "linux/arm/v6", "linux/arm/v6"),
    ([entry(1, "linux", "arm64", "v9")], "linux/arm64/v8", "linux/arm64/v8"),
    ([entry(1, "windows", "amd64")], "linux/amd64", "linux/amd64"),
    ([attestation(1, 2)], "unknown/unknown", "unknown/unknown"),
    ([desc(mf.OCI_MANIFEST, 1)], "linux/amd64", "linux/amd64"),
    ([], "linux/amd64", "linux/amd64"),
])
def test_select_not_found(entries, platform, words):
    with pytest.raises(NotFound) as info:
        mf.select({"manifests": entries}, platform)
    assert str(info.value) == f"no matching manifest for {words} in the manifest list entries"


@pytest.mark.parametrize("machine,expected", [
    ("x86_64", {"os": "linux", "architecture": "amd64"}),
    ("aarch64", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ("armv7l", {"os": "linux", "architecture": "arm", "variant": "v7"}),
    ("armv6l", {"os": "linux", "architecture": "arm", "variant": "v6"}),
    ("armv5tel", {"os": "linux", "architecture": "arm", "variant": "v5"}),
    ("armv8l", {"os": "linux", "architecture": "arm", "variant": "v8"}),
    ("i686", {"os": "linux", "architecture": "386"}),
    ("ppc64le", {"os": "linux", "architecture": "ppc64le"}),
    ("s390x", {"os": "linux", "architecture": "s390x"}),
    ("riscv64", {"os": "linux", "architecture": "riscv64"}),
    ("loongarch64", {"os": "linux", "architecture": "loong64"}),
])
def test_host_platform(monkeypatch, machine, expected):
    real = mf.os.uname()
    fake = type(real)((real.sysname, real.nodename, real.release, real.version, machine))
    monkeypatch.setattr(mf.os, "uname", lambda: fake)
    assert mf.host_platform() == expected


def test_select_defaults_to_host(monkeypatch):
    real = mf.os.uname()
    fake = type(real)((real.sysname, real.nodename, real.release, real.version, "aarch64"))
    monkeypatch.setattr(mf.os, "uname", lambda: fake)
    assert mf.select(BUSYBOX)["digest"] == digest(14)
    with pytest.raises(NotFound, match="^no matching manifest for linux/arm64/v8 in the"):
        mf.select({"manifests": [entry(1, "linux", "amd64")]})


def test_host_platform_here():
    here = mf.host_platform()
    assert here["os"] == "linux"
    assert here["architecture"] in mf.KNOWN_ARCH


@pytest.mark.parametrize("text,expected", [
    ("linux/arm64/v8", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ("linux/arm64", {"os": "linux", "architecture": "arm64"}),
    ("linux/aarch64/8", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ("linux/amd64", {"os": "linux", "architecture": "amd64"}),
    ("Linux/X86_64", {"os": "linux", "architecture": "amd64"}),
    ("linux/amd64/v3", {"os": "linux", "architecture": "amd64", "variant": "v3"}),
    ("linux/arm", {"os": "linux", "architecture": "arm"}),
    ("linux/arm/v7", {"os": "linux", "architecture": "arm", "variant": "v7"}),
    ("linux/arm/6", {"os": "linux", "architecture": "arm", "variant": "v6"}),
    ("linux/armhf", {"os": "linux", "architecture": "arm"}),
    ("linux/i386", {"os": "linux", "architecture": "386"}),
    ("macos/arm64", {"os": "darwin", "architecture": "arm64"}),
    ("windows(10.0.17763)/amd64",
     {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763"}),
    ("s390x", {"os": "linux", "architecture": "s390x"}),
    ("arm", {"os": "linux", "architecture": "arm"}),
])
def test_parse_platform(text, expected):
    assert mf.parse_platform(text) == expected


def test_parse_platform_os_only(monkeypatch):
    real = mf.os.uname()
    fake = type(real)((real.sysname, real.nodename, real.release, real.version, "aarch64"))
    monkeypatch.setattr(mf.os, "uname", lambda: fake)
    assert mf.parse_platform("linux") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert mf.parse_platform("windows")["os"] == "windows"


@pytest.mark.parametrize("text,message", [
    ("", '"": unknown operating system or architecture: invalid argument'),
    ("nosuch", '"nosuch": unknown operating system or architecture: invalid argument'),
    ("linux/arm/v7/x", '"linux/arm/v7/x": cannot parse platform specifier'),
    ("linux//v7", '"": is an invalid component of "linux//v7"'),
    ("linux/am d64", '"am d64": is an invalid component of "linux/am d64"'),
    ("linux/amd64/", '"": is an invalid component'),
])
def test_parse_platform_errors(text, message):
    with pytest.raises(InvalidArgument) as info:
        mf.parse_platform(text)
    assert message in str(info.value)


@pytest.mark.parametrize("platform,text", [
    ({"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux/arm64/v8"),
    ({"os": "linux", "architecture": "amd64"}, "linux/amd64"),
    ({"architecture": "amd64"}, "unknown/amd64"),
    ({}, "unknown/unknown"),
    ("linux/arm", "linux/arm"),
])
def test_format_platform(platform, text):
    assert mf.format_platform(platform) == text


def test_parse_and_format_round_trip():
    for text in ("linux/arm64/v8", "linux/amd64", "linux/arm/v6", "linux/ppc64le"):
        assert mf.format_platform(mf.parse_platform(text)) == text


@pytest.mark.parametrize("want,have,ok", [
    ("linux/arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"}, True),
    ("linux/arm64/v8", {"os": "linux", "architecture": "arm64"}, True),
    ("linux/arm64", {"os": "linux", "architecture": "arm", "variant": "v7"}, True),
    ("linux/arm/v7", {"os": "linux", "architecture": "arm64"}, False),
    ("linux/amd64", {"os": "linux", "architecture": "386"}, True),
    ("linux/386", {"os": "linux", "architecture": "amd64"}, False),
    ("linux/amd64", {"os": "linux", "architecture": "amd64", "variant": "v2"}, False),
    ("linux/amd64", {"os": "windows", "architecture": "amd64"}, False),
    ({"os": "linux", "architecture": "amd64", "variant": "v4"},
     {"os": "linux", "architecture": "amd64", "variant": "v1"}, True),
])
def test_matches(want, have, ok):
    assert mf.matches(want, have) is ok


def test_select_rejects_a_bad_platform():
    with pytest.raises(InvalidArgument, match="platform: must be a string or an object"):
        mf.select(BUSYBOX, 42)


@needs_schemas
def test_generated_documents_match_the_schemas():
    assert image_schema_errors("image-manifest-schema.json", oci_manifest()) == []
    assert image_schema_errors("image-manifest-schema.json", docker_manifest()) == []
    assert image_schema_errors("image-index-schema.json", BUSYBOX) == []
