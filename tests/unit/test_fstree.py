"""engine/fstree: fd-walked copies, tar streams and extraction, without root."""

import io
import os
import tarfile

import pytest

from berth.engine import fstree
from berth.errors import Conflict, InvalidArgument, NotFound


def _tree(base):
    (base / "d" / "e").mkdir(parents=True)
    (base / "d" / "f").write_text("f\n")
    os.chmod(base / "d" / "f", 0o751)
    os.link(base / "d" / "f", base / "d" / "hard")
    os.symlink("/", base / "d" / "up")
    os.mkfifo(base / "d" / "fifo")
    os.utime(base / "d" / "f", ns=(10**18, 10**18))


def _fd(path, flags=os.O_RDONLY | os.O_DIRECTORY):
    return os.open(path, flags)


def test_copy_keeps_modes_links_and_symlinks(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    _tree(src)
    s, d = _fd(src), _fd(dst)
    try:
        fstree.copy_entry(s, "d", d, "copy", owner=fstree.NONE)
        fstree.copy_entry(s, "d", d, ".", owner=fstree.NONE, into=True)
    finally:
        os.close(s)
        os.close(d)
    for top in (dst / "copy", dst):
        assert sorted(os.listdir(top / "e")) == []
        assert (top / "f").read_text() == "f\n"
        assert oct((top / "f").stat().st_mode & 0o777) == "0o751"
        assert (top / "f").stat().st_mtime_ns == 10**18
        assert (top / "f").stat().st_ino == (top / "hard").stat().st_ino
        assert os.readlink(top / "up") == "/"
        assert os.path.exists(top / "fifo")


def test_open_in_root_stays_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("inside\n")
    os.symlink("/", root / "escape")
    os.symlink("../../../..", root / "up")
    fd = _fd(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("/escape/etc/hostname", "/up/etc/hostname", "../../etc/hostname"):
            got = fstree.open_in_root(fd, path, os.O_RDONLY)
            with os.fdopen(got) as f:
                assert f.read() == "inside\n"
        with pytest.raises(NotFound):
            fstree.open_in_root(fd, f"/escape{tmp_path}/root/etc/hostname")
    finally:
        os.close(fd)


def test_tar_roundtrip_and_extract_rules(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    buf = io.BytesIO()
    s = _fd(src)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fstree.tar_entry(tar, s, "d", "d")
    os.close(s)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        kinds = {m.name: m for m in t.getmembers()}
    assert kinds["d/hard"].islnk() or kinds["d/f"].islnk()
    assert kinds["d/up"].issym() and kinds["d/up"].linkname == "/"
    out = tmp_path / "out"
    out.mkdir()
    buf.seek(0)
    o = _fd(out)
    try:
        with tarfile.open(fileobj=buf, mode="r|") as tar:
            fstree.extract(tar, o, owner=fstree.NONE)
        assert (out / "d" / "f").read_text() == "f\n"
        assert os.readlink(out / "d" / "up") == "/"
        # A member below a symlink is refused, not written through it.
        with pytest.raises(Conflict):
            fstree.extract(_one("d/up/tmp/evil"), o, owner=fstree.NONE)
        with pytest.raises(InvalidArgument):
            fstree.extract(_one("../evil"), o, owner=fstree.NONE)
        with pytest.raises(Conflict):
            fstree.extract(_one("d/e"), o, owner=fstree.NONE)  # a file over a directory
    finally:
        os.close(o)
    assert not os.path.exists("/tmp/evil")


def _one(name):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = 2
        t.addfile(info, io.BytesIO(b"x\n"))
    buf.seek(0)
    return tarfile.open(fileobj=buf)
