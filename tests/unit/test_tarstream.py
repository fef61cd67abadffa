"""snapshots/tarstream: the layer tar reader, checked against what tarfile writes."""
import io
import os
import random

import pytest

from berth.snapshots import tarstream
from berth.snapshots.unpackworker import Unpack
from berth.errors import InvalidArgument
from berth.sys.inodeflags import mark_topdir
from tests.unit.test_apply import entry, make_tar
import tarfile


class Slow(io.RawIOBase):
    """A stream that answers reads in small, odd pieces (as a pipe does)."""

    def __init__(self, data, step=777):
        self.data, self.pos, self.step = data, 0, step

    def read(self, n=-1):
        k = min(self.step, n if n >= 0 else self.step)
        out = self.data[self.pos:self.pos + k]
        self.pos += len(out)
        return out


def read_all(raw, stream=None):
    r = tarstream.TarReader(stream or io.BytesIO(raw))
    out = []
    while True:
        m = r.next()
        if m is None:
            return out
        chunks = []
        if m.isreg():
            r.copy_to(lambda v: chunks.append(bytes(v)))
        out.append((m, b"".join(chunks)))


def tar_with(fmt, infos):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in infos:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_same_members_as_tarfile(fmt):
    rng = random.Random(7)
    infos = [entry("d", "dir", mode=0o2775, uid=3, gid=4),
             entry("d/" + "n" * 90 + "/" + "m" * 60 + "/file", data=b"deep"),  # ustar prefix
             entry("s", "sym", link="d/target"),
             entry("h", "hard", link="s"),
             entry("c", "chr", dev=(1, 3)), entry("b", "blk", dev=(7, 9)),
             entry("p", "fifo")]
    for i in range(50):
        infos.append(entry(f"f{i}", data=rng.randbytes(rng.randint(0, 3000)),
                           mode=rng.choice([0o644, 0o4755, 0o600]), mtime=1_600_000_000 + i))
    if fmt != tarfile.USTAR_FORMAT:
        infos.append(entry("long/" + "x" * 200, data=b"long name"))
        infos.append(entry("longlink", "sym", link="y" * 300))
        infos.append(entry("biguid", data=b"u", uid=3_000_000, gid=2_500_000))
    raw = tar_with(fmt, infos)
    ref = tarfile.open(fileobj=io.BytesIO(raw))
    for stream in (None, Slow(raw)):
        got = read_all(raw, stream)
        assert len(got) == len(ref.getmembers())
        for (m, data), want in zip(got, ref.getmembers()):
            assert (m.name.rstrip("/"), m.type, m.mode, m.uid, m.gid, m.linkname, m.devmajor, m.devminor) \
                == (want.name, want.type, want.mode, want.uid, want.gid, want.linkname,
                    want.devmajor, want.devminor)
            assert m.mtime_ns == int(want.mtime) * 1_000_000_000
            if want.isreg():
                assert data == ref.extractfile(want).read()


def test_pax_records_and_global_headers():
    info, data = entry("f", data=b"x", pax={"SCHILY.xattr.user.a": "é",
                                             "mtime": "1700000000.123456789"})
    raw = make_tar((info, data))
    (m, got), = read_all(raw)
    assert m.pax_headers["SCHILY.xattr.user.a"] == "é"
    assert m.mtime_ns == 1_700_000_000_123_456_789
    assert got == b"x"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "everyone"}) as t:
        t.addfile(*(lambda i, d: (i, io.BytesIO(d)))(*entry("a", data=b"1")))
        t.addfile(*(lambda i, d: (i, io.BytesIO(d)))(*entry("b", data=b"2")))
    assert [m.pax_headers.get("comment") for m, _ in read_all(buf.getvalue())] == \
        ["everyone", "everyone"]


def test_empty_archive_and_garbage():
    assert read_all(bytes(1024)) == []
    with pytest.raises(tarstream.TarError):
        read_all(b"")
    with pytest.raises(tarstream.TarError, match="not a tar header"):
        read_all(b"x" * 1024)
    raw = make_tar(entry("a", data=b"1" * 2000), entry("b", data=b"2"))
    bad = bytearray(raw)
    bad[1024 + 512 + 512 + 10] ^= 0xff  # the second member's header
    bad_second = bytes(bad[:1024 + 512 * 4])
    with pytest.raises(tarstream.TarError):
        read_all(bad_second)


def test_truncated_data():
    raw = make_tar(entry("a", data=os.urandom(5000)))
    with pytest.raises(tarstream.TarError, match="unexpected end"):
        read_all(raw[:3000])


def test_unpack_in_a_worker_process(tmp_path):
    raw = make_tar(entry("etc", "dir", mode=0o751), entry("etc/motd", data=b"hi\n"))
    u = Unpack(str(tmp_path), "application/vnd.oci.image.layer.v1.tar")
    assert u.write(raw[:700]) and u.write(raw[700:])
    diff_id, size, warnings = u.result()
    assert size == len(raw) and diff_id.startswith("sha256:") and warnings == []
    assert (tmp_path / "etc/motd").read_bytes() == b"hi\n"


def test_worker_errors_come_back_as_berth_errors(tmp_path):
    raw = make_tar(entry("../escape", data=b"x"), entry("big", data=os.urandom(3 << 20)))
    u = Unpack(str(tmp_path), "application/vnd.oci.image.layer.v1.tar")
    u.write(raw)  # the worker stops reading early: False, no exception
    with pytest.raises(InvalidArgument, match="escapes the root"):
        u.result()
    src = tmp_path / "blob"
    src.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 100)
    with open(src, "rb") as f, pytest.raises(InvalidArgument, match="gzip"):
        Unpack(str(tmp_path), None, source=f).result()


def test_mark_topdir_is_best_effort(tmp_path):
    assert mark_topdir(str(tmp_path)) in (True, False)
    assert mark_topdir(str(tmp_path / "missing")) is False
