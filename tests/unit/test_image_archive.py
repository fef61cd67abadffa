"""Image archives without root: --change parsing, compression sniffing, and load's refusals
(which all happen before anything is unpacked)."""
import bz2
import gzip
import hashlib
import io
import json
import lzma
import shutil
import subprocess
import tarfile

import pytest

from berth.content import gc
from berth.content.digest import DigestMismatch
from berth.errors import InvalidArgument, NotFound
from berth.images import archive
from berth.images.service import ImageService


# ---------------------------------------------------------------- --change

def test_changes_json_and_shell_forms():
    cfg = archive.apply_changes([
        'CMD ["sh", "-c", "echo hi"]', "ENTRYPOINT /bin/app --flag",
        'cmd [not json', "VOLUME [\"/a\", \"/b\"]", "VOLUME /c /d",
    ])
    assert cfg["Cmd"] == ["/bin/sh", "-c", "[not json"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/app --flag"]
    assert cfg["Volumes"] == {"/a": {}, "/b": {}, "/c": {}, "/d": {}}
    assert archive.apply_changes(['CMD ["sh"]'])["Cmd"] == ["sh"]


def test_changes_env_label_expose_workdir():
    cfg = archive.apply_changes([
        "ENV A=1 B=\"two words\" C=x\\ y", "ENV A replaced value", "LABEL a=b 'c d'=e",
        "EXPOSE 80 53/udp 9000-9002/tcp", "WORKDIR /srv", "WORKDIR app/../web",
        "USER 1000:1000", "STOPSIGNAL SIGQUIT", "ONBUILD RUN true",
    ], {"Env": ["PATH=/bin"]})
    assert cfg["Env"] == ["PATH=/bin", "B=two words", "C=x y", "A=replaced value"]
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000/tcp": {},
                                   "9001/tcp": {}, "9002/tcp": {}}
    assert cfg["WorkingDir"] == "/srv/web"
    assert (cfg["User"], cfg["StopSignal"], cfg["OnBuild"]) == ("1000:1000", "SIGQUIT",
                                                                ["RUN true"])


@pytest.mark.parametrize("line, message", [
    ("RUN true", "RUN is not a valid change command"),
    ("FROM busybox", "FROM is not a valid change command"),
    ("BOGUS x", "unknown instruction: BOGUS"),
    ("CMD", "CMD requires at least one argument"),
    ("ENV A", "ENV must have two arguments"),
    ("ENV A=1 B", "can't find = in \"B\""),
    ("EXPOSE 70000", "invalid containerPort: 70000"),
    ("EXPOSE 80/icmp", "invalid containerPort: 80/icmp"),
])
def test_changes_refused(line, message):
    with pytest.raises(InvalidArgument, match=message):
        archive.apply_changes([line])


# ---------------------------------------------------------------- compression

PLAIN = b"hello tar world" * 1000


def _zstd(data):
    zstd = shutil.which("zstd")
    if not zstd:
        pytest.skip("no zstd program")
    return subprocess.run([zstd, "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


@pytest.mark.parametrize("pack", [lambda d: d, gzip.compress, lzma.compress, bz2.compress,
                                  _zstd], ids=["plain", "gzip", "xz", "bzip2", "zstd"])
def test_uncompressed_sniffs_magic(pack):
    reader = archive.uncompressed(io.BytesIO(pack(PLAIN)))
    out = b""
    while True:
        chunk = reader.read(4096)
        if not chunk:
            break
        out += chunk
    assert out == PLAIN


def test_truncated_xz_is_an_error():
    data = lzma.compress(PLAIN)[:-20]
    with pytest.raises(InvalidArgument, match="ends early|bad compressed"):
        archive.uncompressed(io.BytesIO(data)).read()


# ---------------------------------------------------------------- load refusals

@pytest.fixture
def svc(tmp_path):
    s = ImageService(str(tmp_path / "root"))
    yield s
    s.close()


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _blob(data):
    return f"blobs/sha256/{hashlib.sha256(data).hexdigest()}", data


def test_load_refuses_what_is_not_a_tar(svc):
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        archive.load(svc, io.BytesIO(b"\x00garbage" * 10))


def test_load_needs_a_manifest(svc):
    with pytest.raises(InvalidArgument, match="neither manifest.json"):
        archive.load(svc, _tar([("hello.txt", b"hi")]))


def test_load_refuses_a_blob_that_is_not_its_digest(svc):
    layer_path, _ = _blob(b"the real layer")
    members = [(layer_path, b"the fake layer"),
               ("index.json", b'{"schemaVersion":2,"manifests":[]}')]
    with pytest.raises(DigestMismatch, match=f"{layer_path} in the archive"):
        archive.load(svc, _tar(members))
    assert svc.records() == []
    assert svc.content.ingests() == []
    assert svc.meta.leased() == set()
    assert gc.check(svc.content, svc.meta) == []


def test_load_refuses_a_missing_blob(svc):
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                                      "size": len(config)},
                           "layers": []}).encode()
    mpath, _ = _blob(manifest)
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": "sha256:" + mpath.rsplit("/", 1)[1], "size": len(manifest),
         "annotations": {"io.containerd.image.name": "example.com/x:1"}}]}).encode()
    with pytest.raises(NotFound, match="config .* is missing from the archive"):
        archive.load(svc, _tar([(mpath, manifest), ("index.json", index)]))
    assert svc.records() == []


def test_load_refuses_a_truncated_archive(svc):
    path, data = _blob(b"x" * 5000)
    whole = _tar([(path, data), ("index.json", b"{}")]).getvalue()
    with pytest.raises(InvalidArgument, match="truncated"):
        archive.load(svc, io.BytesIO(whole[:2048]))
    assert svc.content.ingests() == []


def test_save_refuses_unknown_format(svc):
    with pytest.raises(InvalidArgument, match="unsupported archive format"):
        archive.save(svc, ["busybox"], io.BytesIO(), fmt="tarball")


def test_dangling_names():
    name = archive.dangling_name("sha256:" + "a" * 64)
    assert archive.is_dangling(name)
    assert not archive.is_dangling("docker.io/library/busybox:latest")


def test_import_refuses_empty_input_and_digest_names(svc):
    with pytest.raises(InvalidArgument, match="the input is empty"):
        archive.import_rootfs(svc, io.BytesIO(b""), "x:1", [], None)
    with pytest.raises(InvalidArgument, match="digest reference"):
        archive.import_rootfs(svc, io.BytesIO(b""), "x@sha256:" + "a" * 64, [], None)
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        archive.import_rootfs(svc, io.BytesIO(b""), "x:1", ["RUN true"], None)
    assert svc.records() == []
    assert svc.content.ingests() == []
    assert list(svc.content.digests()) == []
