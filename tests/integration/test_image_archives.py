"""save, load and import on the real kernel (layers unpack into snapshots), and skopeo reading
what berth writes and berth reading what skopeo writes."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from berth.content import gc
from berth.content.digest import DigestMismatch
from berth.images import archive
from berth.images import manifest as mf
from berth.images.service import ImageService, chain_ids

pytestmark = pytest.mark.root
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
needs_skopeo = pytest.mark.skipif(not os.path.exists(SKOPEO), reason="skopeo not installed")


@pytest.fixture(scope="module")
def rootfs_tar(busybox_rootfs, tmp_path_factory):
    """The busybox rootfs as a plain tar, as `tar -C rootfs -c .` makes it."""
    path = tmp_path_factory.mktemp("rootfs") / "busybox.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    return path


@pytest.fixture
def svc(tmp_path):
    s = ImageService(str(tmp_path / "root"))
    yield s
    s.close()


@pytest.fixture
def other(tmp_path):
    """A second, empty berth root."""
    s = ImageService(str(tmp_path / "other"))
    yield s
    s.close()


class _Pipe:
    """A stream that only reads, as stdin is."""

    def __init__(self, f):
        self._f = f

    def read(self, n=-1):
        return self._f.read(n)


def import_busybox(svc, rootfs_tar, name="busybox:test", changes=('CMD ["sh"]',)):
    with open(rootfs_tar, "rb") as f:
        return archive.import_rootfs(svc, _Pipe(f), name, list(changes), None)


def save(svc, names, path, fmt="docker-archive"):
    with open(path, "wb") as f:
        archive.save(svc, names, f, fmt=fmt)
    return path


def load(svc, path):
    with open(path, "rb") as f:
        return archive.load(svc, _Pipe(f))


def skopeo(*args):
    proc = subprocess.run([SKOPEO, "--insecure-policy", *map(str, args)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def config_digest(transport_ref):
    config = skopeo("inspect", "--config", "--raw", transport_ref)
    return "sha256:" + hashlib.sha256(config.encode()).hexdigest()


def assert_unpacked(svc, image):
    snap = svc.snapshotter()
    assert snap.stat(image.chain_id)["kind"] == "committed"


def assert_clean(svc):
    assert gc.check(svc.content, svc.meta) == []


# ---------------------------------------------------------------- import

def test_import_builds_a_one_layer_image(svc, rootfs_tar):
    changes = ['CMD ["sh"]', "ENV PATH=/usr/bin:/bin FOO=bar", "WORKDIR /srv",
               "EXPOSE 8080", "LABEL org.example=yes", "USER nobody", "VOLUME /data",
               "STOPSIGNAL SIGINT", "ENTRYPOINT /bin/echo"]
    image_id = import_busybox(svc, rootfs_tar, changes=changes)
    image = svc.get("busybox:test")
    assert image.id == image_id
    assert hashlib.sha256(image.config_raw).hexdigest() == image_id[7:]
    cfg = image.config
    host = mf.host_platform()
    assert (cfg["os"], cfg["architecture"]) == (host["os"], host["architecture"])
    assert cfg["created"].endswith("Z") and len(cfg["created"].split(".")[1]) == 10
    assert cfg["history"] == [{"created": cfg["created"], "created_by": "",
                               "comment": "Imported from -"}]
    c = cfg["config"]
    assert c["Cmd"] == ["sh"]
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/bin/echo"]
    assert c["Env"] == ["PATH=/usr/bin:/bin", "FOO=bar"]
    assert c["WorkingDir"] == "/srv"
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    assert c["Labels"] == {"org.example": "yes"}
    assert (c["User"], c["StopSignal"], c["Volumes"]) == ("nobody", "SIGINT", {"/data": {}})

    assert image.manifest.media_type == mf.OCI_MANIFEST
    [layer] = image.manifest.layers
    assert layer["mediaType"] == mf.OCI_LAYER_GZIP
    with svc.content.open(layer["digest"]) as f:
        plain = gzip.decompress(f.read())
    assert "sha256:" + hashlib.sha256(plain).hexdigest() == image.diff_ids[0]
    assert plain == rootfs_tar.read_bytes()
    assert_unpacked(svc, image)
    snap = svc.snapshotter()
    fs = os.path.join(snap.root, snap.stat(image.chain_id)["id"], "fs")
    assert os.path.isfile(os.path.join(fs, "bin", "busybox"))
    assert_clean(svc)
    assert svc.meta.leased() == set()


def test_import_without_a_name_and_compressed(svc, rootfs_tar):
    data = gzip.compress(rootfs_tar.read_bytes())
    image_id = archive.import_rootfs(svc, io.BytesIO(data), None, [], "from a test")
    image = svc.get(image_id)
    assert image.config["history"][0]["comment"] == "from a test"
    [rec] = svc.records()
    assert archive.is_dangling(rec["name"])
    # The same tar imported plain has the same diff id.
    assert image.diff_ids == [
        "sha256:" + hashlib.sha256(rootfs_tar.read_bytes()).hexdigest()]


# ---------------------------------------------------------------- docker-archive

def test_save_load_round_trip(svc, rootfs_tar, tmp_path):
    image_id = import_busybox(svc, rootfs_tar)
    svc.tag("busybox:test", "example.com/team/bb:v1")
    path = save(svc, ["busybox:test", "example.com/team/bb:v1"], tmp_path / "a.tar")
    image = svc.get(image_id)
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        read = lambda n: tar.extractfile(n).read()  # noqa: E731
        manifest = json.loads(read("manifest.json"))
        index = json.loads(read("index.json"))
        repositories = json.loads(read("repositories"))
        assert json.loads(read("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        layer = read(f"blobs/sha256/{image.diff_ids[0][7:]}")
    assert hashlib.sha256(layer).hexdigest() == image.diff_ids[0][7:]
    assert manifest == [{"Config": f"blobs/sha256/{image_id[7:]}",
                         "RepoTags": ["busybox:test", "example.com/team/bb:v1"],
                         "Layers": [f"blobs/sha256/{image.diff_ids[0][7:]}"]}]
    assert repositories == {"busybox": {"test": image.diff_ids[0][7:]},
                            "example.com/team/bb": {"v1": image.diff_ids[0][7:]}}
    assert [m["annotations"] for m in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/busybox:test",
         "org.opencontainers.image.ref.name": "test"},
        {"io.containerd.image.name": "example.com/team/bb:v1",
         "org.opencontainers.image.ref.name": "v1"}]
    assert all(f"blobs/sha256/{m['digest'][7:]}" in names for m in index["manifests"])

    svc.remove(image_id, force=True)
    assert svc.records() == []
    assert load(svc, path) == ["busybox:test", "example.com/team/bb:v1"]
    again = svc.get("busybox:test")
    assert again.id == image_id
    assert svc.get("example.com/team/bb:v1").id == image_id
    assert_unpacked(svc, again)
    assert_clean(svc)
    assert svc.meta.leased() == set()


def test_load_legacy_docker_archive(other, svc, rootfs_tar, tmp_path):
    """manifest.json only, layers as <id>/layer.tar (gzip here), a symlinked duplicate."""
    image_id = import_busybox(svc, rootfs_tar)
    image = svc.get(image_id)
    with svc.content.open(image.manifest.layers[0]["digest"]) as f:
        layer_gz = f.read()
    config = image.config_raw
    path = tmp_path / "legacy.tar"
    with tarfile.open(path, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("aaaa/layer.tar", layer_gz)
        add("aaaa/json", b"{}")
        add("aaaa/VERSION", b"1.0")
        link = tarfile.TarInfo("bbbb/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../aaaa/layer.tar"
        tar.addfile(link)
        add(f"{image_id[7:]}.json", config)
        add("manifest.json", json.dumps([
            {"Config": f"{image_id[7:]}.json", "RepoTags": ["old:one"],
             "Layers": ["aaaa/layer.tar"]},
            {"Config": f"{image_id[7:]}.json", "RepoTags": ["old:two"],
             "Layers": ["bbbb/layer.tar"]}]).encode())
    assert load(other, path) == ["old:one", "old:two"]
    loaded = other.get("old:two")
    assert loaded.id == image_id
    assert loaded.manifest.media_type == mf.DOCKER_MANIFEST
    assert loaded.manifest.layers[0]["mediaType"] == mf.DOCKER_LAYER_GZIP
    assert_unpacked(other, loaded)
    assert_clean(other)


def test_tampered_archive_is_refused(svc, other, rootfs_tar, tmp_path):
    image_id = import_busybox(svc, rootfs_tar)
    good = save(svc, ["busybox:test"], tmp_path / "good.tar")
    layer = "blobs/sha256/" + svc.get(image_id).diff_ids[0][7:]
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for m in src:
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name == layer:
                data = bytearray(data)
                data[1000] ^= 0x01
                data = bytes(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    with pytest.raises(DigestMismatch, match=f"digest mismatch for {layer} in the archive"):
        load(other, bad)
    assert other.records() == []
    assert_clean(other)
    assert other.content.ingests() == []
    assert other.meta.leased() == set()


# ---------------------------------------------------------------- skopeo

@needs_skopeo
def test_skopeo_reads_our_docker_archive(svc, rootfs_tar, tmp_path):
    image_id = import_busybox(svc, rootfs_tar)
    path = save(svc, ["busybox:test"], tmp_path / "a.tar")
    assert config_digest(f"docker-archive:{path}") == image_id
    info = json.loads(skopeo("inspect", f"docker-archive:{path}"))
    assert info["Layers"] == svc.get(image_id).diff_ids
    layout = tmp_path / "layout"
    skopeo("copy", f"docker-archive:{path}", f"oci:{layout}:test")
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "test"


@needs_skopeo
def test_load_what_skopeo_writes(svc, other, rootfs_tar, tmp_path):
    image_id = import_busybox(svc, rootfs_tar)
    ours = save(svc, ["busybox:test"], tmp_path / "a.tar")

    # docker-archive written by skopeo (legacy layout: <hex>.tar layers, <hex>.json config)
    theirs = tmp_path / "b.tar"
    skopeo("copy", f"docker-archive:{ours}", f"docker-archive:{theirs}:busybox:sk")
    assert load(other, theirs) == ["busybox:sk"]
    assert other.get("busybox:sk").id == image_id

    # oci-archive written by skopeo, its ref.name a full reference
    oci_tar = tmp_path / "c.tar"
    skopeo("copy", f"docker-archive:{ours}", f"oci-archive:{oci_tar}:example.com/x/bb:oci")
    assert load(other, oci_tar) == ["example.com/x/bb:oci"]
    # Converting to OCI, skopeo rewrites the config: the id is what skopeo says it is.
    oci_id = config_digest(f"oci-archive:{oci_tar}")
    assert other.get("example.com/x/bb:oci").id == oci_id
    assert other.get("example.com/x/bb:oci").target["digest"] == json.loads(
        skopeo("inspect", f"oci-archive:{oci_tar}"))["Digest"]

    # an oci: layout directory (tarred), ref.name a bare tag: loaded without a name
    layout = tmp_path / "layout"
    skopeo("copy", "--dest-compress", f"docker-archive:{ours}", f"oci:{layout}:test")
    layout_tar = tmp_path / "d.tar"
    with tarfile.open(layout_tar, "w") as tar:
        tar.add(layout, arcname=".")
    fresh = ImageService(str(tmp_path / "fresh"))
    try:
        layout_id = config_digest(f"oci:{layout}:test")
        assert load(fresh, layout_tar) == [layout_id]
        image = fresh.get(layout_id)
        assert image.manifest.layers[0]["mediaType"] == mf.OCI_LAYER_GZIP
        assert_unpacked(fresh, image)
        assert_clean(fresh)
    finally:
        fresh.close()
    assert_clean(other)


@needs_skopeo
def test_oci_archive_keeps_digests(svc, other, rootfs_tar, tmp_path):
    import_busybox(svc, rootfs_tar)
    image = svc.get("busybox:test")
    path = save(svc, ["busybox:test"], tmp_path / "x.tar", fmt="oci-archive")
    info = json.loads(skopeo("inspect", f"oci-archive:{path}"))
    assert info["Digest"] == image.target["digest"]
    assert info["Layers"] == [d["digest"] for d in image.manifest.layers]
    assert load(other, path) == ["busybox:test"]
    loaded = other.get("busybox:test")
    assert loaded.target == image.target
    assert loaded.id == image.id
    assert_clean(other)


# ---------------------------------------------------------------- multi-platform

def _other_platform():
    host = mf.host_platform()
    return ({"os": "linux", "architecture": "arm64"} if host["architecture"] != "arm64"
            else {"os": "linux", "architecture": "amd64"})


def test_load_multi_platform_index(svc, other, rootfs_tar, tmp_path):
    """An OCI layout with an index of two platforms: the index is kept whole, the host's
    image unpacked, the other resolvable by --platform."""
    import_busybox(svc, rootfs_tar)
    base = svc.get("busybox:test")
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    layer = dict(base.manifest.layers[0])
    put(svc.content.read(layer["digest"]))
    entries, ids = [], {}
    for plat in (mf.host_platform(), _other_platform()):
        cfg = dict(base.config, architecture=plat["architecture"])
        cfg.pop("variant", None)
        if plat.get("variant"):
            cfg["variant"] = plat["variant"]
        config = put(json.dumps(cfg).encode())
        ids[plat["architecture"]] = config["digest"]
        manifest = json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
                               "config": dict(config, mediaType=mf.OCI_CONFIG),
                               "layers": [layer]}).encode()
        entries.append(dict(put(manifest), mediaType=mf.OCI_MANIFEST, platform=plat))
    index = json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX,
                        "manifests": entries}).encode()
    index_desc = dict(put(index), mediaType=mf.OCI_INDEX,
                      annotations={"io.containerd.image.name": "example.com/multi:1",
                                   "org.opencontainers.image.ref.name": "1"})
    (layout / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": [index_desc]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    path = tmp_path / "multi.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(layout, arcname=".")

    assert load(other, path) == ["example.com/multi:1"]
    rec = other.meta.get_image("example.com/multi:1")
    assert rec["target"]["digest"] == index_desc["digest"]
    assert rec["target"]["mediaType"] == mf.OCI_INDEX
    host = other.get("example.com/multi:1")
    assert host.id == ids[mf.host_platform()["architecture"]]
    assert_unpacked(other, host)
    foreign = _other_platform()
    assert other.get("example.com/multi:1", platform=foreign).id == \
        ids[foreign["architecture"]]
    assert_clean(other)
    # and it saves back out whole, byte-exact
    again = save(other, ["example.com/multi:1"], tmp_path / "again.tar", fmt="oci-archive")
    with tarfile.open(again) as tar:
        saved = {m.name for m in tar if m.isfile()}
    assert f"blobs/sha256/{index_desc['digest'][7:]}" in saved
    assert all(f"blobs/sha256/{e['digest'][7:]}" in saved for e in entries)


def test_chain_id_snapshot_shared(svc, other, rootfs_tar, tmp_path):
    """Loading an image whose layers are unpacked already reuses the snapshot."""
    image_id = import_busybox(svc, rootfs_tar)
    path = save(svc, ["busybox:test"], tmp_path / "a.tar")
    before = {s["key"] for s in svc.snapshotter().list()}
    assert load(svc, path) == ["busybox:test"]
    assert {s["key"] for s in svc.snapshotter().list()} == before
    assert chain_ids(svc.get(image_id).diff_ids)[-1] in before
