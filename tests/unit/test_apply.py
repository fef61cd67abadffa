"""apply_layer on plain directories (copy mode), and the decompressing readers."""
import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile

import pytest

from berth.errors import InvalidArgument
from berth.snapshots import compression
from berth.snapshots.apply import apply_layer, normalize

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="owners and devices need root")


def entry(name, kind="file", data=b"", mode=None, uid=0, gid=0, mtime=1_600_000_000,
          link="", dev=(0, 0), pax=None):
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
                 "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    info.linkname = link
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == "file" else 0
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def make_tar(*entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def apply(dest, raw, media_type="application/vnd.oci.image.layer.v1.tar", **kw):
    return apply_layer(str(dest), io.BytesIO(raw), media_type, **kw)


def sha(raw):
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_every_entry_type(tmp_path):
    raw = make_tar(
        entry("etc", "dir", mode=0o751, mtime=1000),
        entry("etc/motd", data=b"hello\n", mode=0o640, mtime=2000),
        entry("etc/motd.link", "sym", link="motd"),
        entry("etc/abs", "sym", link="/etc/passwd"),
        entry("etc/motd.hard", "hard", link="etc/motd"),
        entry("deep/er/file", data=b"x"),           # parents not in the tar
        entry("run/fifo", "fifo", mode=0o620),
        entry("./bin/exe", data=b"#!", mode=0o4755),
    )
    diff_id, size = apply(tmp_path, raw)
    assert (diff_id, size) == (sha(raw), len(raw))
    etc = tmp_path / "etc"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o751
    assert etc.stat().st_mtime == 1000  # set after its children were written
    motd = etc / "motd"
    assert motd.read_bytes() == b"hello\n"
    assert stat.S_IMODE(motd.stat().st_mode) == 0o640
    assert motd.stat().st_mtime == 2000
    assert os.readlink(etc / "motd.link") == "motd"
    assert os.readlink(etc / "abs") == "/etc/passwd"
    assert (etc / "motd.hard").stat().st_ino == motd.stat().st_ino
    assert (tmp_path / "deep/er/file").read_bytes() == b"x"
    assert stat.S_ISFIFO((tmp_path / "run/fifo").lstat().st_mode)
    assert stat.S_IMODE((tmp_path / "run/fifo").lstat().st_mode) == 0o620
    assert stat.S_IMODE((tmp_path / "bin/exe").stat().st_mode) == 0o4755


@needs_root
def test_owners_devices_xattrs(tmp_path):
    raw = make_tar(
        entry("f", data=b"1", uid=1234, gid=5678, mode=0o2755,
              pax={"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
        entry("d", "dir", uid=42, gid=43),
        entry("l", "sym", link="nowhere", uid=7, gid=8),
        entry("dev/null", "chr", dev=(1, 3), mode=0o666),
        entry("dev/loop9", "blk", dev=(7, 9), mode=0o660),
    )
    warnings = []
    apply(tmp_path, raw, warnings=warnings)
    st = (tmp_path / "f").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o2755)
    assert os.getxattr(tmp_path / "f", "user.note") == b"hi"
    # A layer may not make overlayfs hide or redirect things.
    assert "trusted.overlay.opaque" not in os.listxattr(tmp_path / "f")
    assert any("trusted.overlay.opaque" in w for w in warnings)
    assert (tmp_path / "d").stat().st_uid == 42
    assert (tmp_path / "l").lstat().st_uid == 7
    null = (tmp_path / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 \
        and os.minor(null.st_rdev) == 3
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (tmp_path / "dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode) and os.minor(loop.st_rdev) == 9


def test_whiteouts_copy_mode(tmp_path):
    apply(tmp_path, make_tar(
        entry("keep", data=b"k"),
        entry("gone", data=b"g"),
        entry("tree/a/b", data=b"b"),
        entry("opq/old1", data=b"1"),
        entry("opq/sub/old2", data=b"2"),
    ))
    apply(tmp_path, make_tar(
        entry(".wh.gone"),
        entry("tree/.wh.a"),
        entry("opq", "dir"),
        entry("opq/new", data=b"n"),     # before the marker: still kept
        entry("opq/.wh..wh..opq"),
        entry("opq/sub/newer", data=b"m"),
        entry(".wh.never-existed"),
        entry(".wh..wh.plnk"),           # aufs bookkeeping: ignored
    ), overlay=False)
    assert (tmp_path / "keep").exists()
    assert not (tmp_path / "gone").exists()
    assert os.listdir(tmp_path / "tree") == []
    assert sorted(os.listdir(tmp_path / "opq")) == ["new", "sub"]
    assert os.listdir(tmp_path / "opq/sub") == ["newer"]
    assert not (tmp_path / ".wh.never-existed").exists()


@needs_root
def test_whiteouts_overlay_form(tmp_path):
    apply(tmp_path, make_tar(entry("d/.wh.x"), entry("o", "dir"), entry("o/.wh..wh..opq")),
          overlay=True)
    x = (tmp_path / "d/x").lstat()
    assert stat.S_ISCHR(x.st_mode) and x.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tmp_path / "o", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "o/.wh..wh..opq").exists()


def test_replacing_entries(tmp_path):
    apply(tmp_path, make_tar(entry("x", "dir"), entry("x/inner", data=b"1"),
                             entry("y", data=b"old"), entry("z", "sym", link="y")))
    apply(tmp_path, make_tar(entry("x", data=b"now a file"), entry("y", "dir"),
                             entry("z", data=b"not a link")))
    assert (tmp_path / "x").read_bytes() == b"now a file"
    assert (tmp_path / "y").is_dir()
    assert not (tmp_path / "z").is_symlink()
    assert (tmp_path / "z").read_bytes() == b"not a link"


@pytest.mark.parametrize("codec", ["gzip", "zstd", "zstd-cli", "none", "sniffed-gzip",
                                   "sniffed-zstd", "sniffed-none", "multi-gzip"])
def test_compressions(tmp_path, codec, monkeypatch):
    raw = make_tar(entry("a", data=b"A" * 300_000), entry("b", data=os.urandom(70_000)))
    if codec == "multi-gzip":
        # Two gzip members back to back decompress to the concatenation.
        blob = gzip.compress(raw[:5000]) + gzip.compress(raw[5000:])
    elif codec.endswith("gzip"):
        blob = gzip.compress(raw)
    elif "zstd" in codec:
        blob = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                              check=True).stdout
    else:
        blob = raw
    if codec == "zstd-cli":
        monkeypatch.setenv("BERTH_ZSTD_CLI", "1")
    media = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "multi-gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             "zstd-cli": "application/vnd.oci.image.layer.v1.tar+zstd",
             "none": "application/vnd.oci.image.layer.v1.tar"}.get(codec)
    diff_id, size = apply(tmp_path, blob, media)
    assert (diff_id, size) == (sha(raw), len(raw))
    assert (tmp_path / "a").read_bytes() == b"A" * 300_000


def test_both_digests_in_one_pass():
    raw = make_tar(entry("a", data=b"abc"))
    blob = gzip.compress(raw)
    compressed, plain = compression.open_layer(io.BytesIO(blob), None)
    assert plain.read() == raw
    plain.drain()
    compressed.drain()
    assert (compressed.digest, compressed.size) == (sha(blob), len(blob))
    assert (plain.digest, plain.size) == (sha(raw), len(raw))


@pytest.mark.parametrize("media", ["application/vnd.oci.image.layer.v1.tar+gzip",
                                   "application/vnd.oci.image.layer.v1.tar+zstd"])
def test_corrupt_compressed_data(tmp_path, media):
    with pytest.raises(InvalidArgument, match="bad (gzip|zstd) data|ends early"):
        apply(tmp_path, b"\x1f\x8b\x08\x00" + b"garbage" * 100, media)


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(make_tar(entry("a", data=os.urandom(50_000))))
    with pytest.raises(InvalidArgument):
        apply(tmp_path, blob[: len(blob) // 2], "application/vnd.oci.image.layer.v1.tar+gzip")


def test_not_a_tar(tmp_path):
    with pytest.raises(InvalidArgument, match="tar"):
        apply(tmp_path, b"x" * 1024)


def test_normalize():
    assert normalize("./a//b/./c/") == "a/b/c"
    assert normalize("/abs/path") == "abs/path"
    assert normalize("./") == ""
    for bad in ("../x", "a/../../x", "/abs/../../escape", "a/.."):
        with pytest.raises(InvalidArgument, match="escapes the root"):
            normalize(bad)


def test_compression_of():
    assert compression.compression_of("application/vnd.oci.image.layer.v1.tar+gzip") == "gzip"
    assert compression.compression_of(
        "application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert compression.compression_of(
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd") == "zstd"
    assert compression.compression_of("application/vnd.oci.image.layer.v1.tar") == "none"
    assert compression.compression_of(None) is None
    assert compression.detect(b"\x28\xb5\x2f\xfd...") == "zstd"


@pytest.mark.parametrize("media", [None, "application/vnd.oci.image.layer.v1.tar+zstd"])
def test_callers_stream_left_open(tmp_path, media):
    raw = make_tar(entry("a", data=b"a"))
    if media:
        raw = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                             check=True).stdout
    stream = io.BytesIO(raw)
    apply_layer(str(tmp_path), stream, media)
    assert not stream.closed


def test_bad_entry_inside_zstd_stops_the_decompressor(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTH_ZSTD_CLI", "1")
    raw = make_tar(entry("../x", data=b"x"), entry("big", data=os.urandom(3 << 20)))
    blob = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                          check=True).stdout
    with pytest.raises(InvalidArgument, match="escapes"):
        apply(tmp_path, blob, "application/vnd.oci.image.layer.v1.tar+zstd")
