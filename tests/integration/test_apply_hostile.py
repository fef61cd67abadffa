"""Hostile layer tars: each gets a clear error or a harmless result, and nothing outside the
destination changes (the host paths each trick aims at are checked)."""
import os
import shutil
import tempfile

import pytest

from berth.errors import BerthError, InvalidArgument
from tests.unit.test_apply import apply, entry, make_tar

pytestmark = pytest.mark.root


@pytest.fixture
def outside():
    """A host directory the tricks aim at, with a file in it; checked unchanged afterwards."""
    path = tempfile.mkdtemp(prefix="berth-outside-", dir="/tmp")
    with open(os.path.join(path, "victim"), "w") as f:
        f.write("precious")
    os.chmod(path, 0o700)
    os.utime(path, (1000, 1000))

    def snapshot():
        st = os.stat(path)
        return (sorted(os.listdir(path)), st.st_mode, st.st_mtime, st.st_uid,
                open(os.path.join(path, "victim")).read(),
                os.stat(os.path.join(path, "victim")).st_mode,
                os.stat(os.path.join(path, "victim")).st_nlink)

    before = snapshot()
    yield path
    after = snapshot()
    shutil.rmtree(path)
    assert after == before, f"{path} changed: {before} -> {after}"


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


def check_parent_clean(dest):
    assert sorted(os.listdir(dest.parent)) == ["dest"], "something landed beside dest"


MODES = pytest.mark.parametrize("overlay", [False, True], ids=["copy", "overlay"])


def attempt(dest, raw, overlay, error=True):
    """Apply; when ``error`` the apply must fail with an InvalidArgument naming the entry."""
    if error:
        with pytest.raises(InvalidArgument, match="^layer: "):
            apply(dest, raw, overlay=overlay)
    else:
        try:
            apply(dest, raw, overlay=overlay)
        except BerthError:
            pass  # a refusal is fine too
    check_parent_clean(dest)


@MODES
@pytest.mark.parametrize("name", ["../escape", "/abs/../../escape", "a/../../escape",
                                  "./../escape"])
def test_dotdot_names(dest, overlay, name):
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply(dest, make_tar(entry(name, data=b"x")), overlay=overlay)
    check_parent_clean(dest)
    assert not os.path.exists("/escape")


@MODES
def test_file_through_planted_symlink(dest, overlay, outside):
    raw = make_tar(entry("link", "sym", link=outside), entry("link/pwned", data=b"owned"))
    attempt(dest, raw, overlay, error=False)
    assert not os.path.exists(os.path.join(outside, "pwned"))
    assert os.readlink(dest / "link") == outside  # the link text is kept


@MODES
def test_relative_symlink_climbing_out(dest, overlay, outside):
    up = "../" * 30
    raw = make_tar(entry("a/link", "sym", link=up + outside.lstrip("/")),
                   entry("a/link/pwned", data=b"owned"))
    attempt(dest, raw, overlay, error=False)
    assert not os.path.exists(os.path.join(outside, "pwned"))


@MODES
def test_symlink_chain(dest, overlay, outside):
    raw = make_tar(entry("a", "sym", link="b"), entry("b", "sym", link="c"),
                   entry("c", "sym", link=outside), entry("a/pwned", data=b"owned"),
                   entry("a/victim", data=b"overwritten"))
    attempt(dest, raw, overlay, error=False)
    assert not os.path.exists(os.path.join(outside, "pwned"))


@MODES
def test_symlink_resolves_inside_when_target_exists_in_dest(dest, overlay, outside):
    # The same absolute link, but dest has that path: the write lands in dest's copy.
    raw = make_tar(entry(outside.lstrip("/") + "/", "dir"), entry("link", "sym", link=outside),
                   entry("link/pwned", data=b"inside"))
    apply(dest, raw, overlay=overlay)
    assert (dest / outside.lstrip("/") / "pwned").read_bytes() == b"inside"
    assert not os.path.exists(os.path.join(outside, "pwned"))


@MODES
@pytest.mark.parametrize("target", ["/etc/passwd", "../x", "../../etc/passwd"])
def test_hardlink_outside(dest, overlay, target):
    nlink = os.stat("/etc/passwd").st_nlink
    raw = make_tar(entry("h", "hard", link=target))
    with pytest.raises(InvalidArgument, match="^layer: entry h"):
        apply(dest, raw, overlay=overlay)
    assert os.stat("/etc/passwd").st_nlink == nlink
    assert not os.path.lexists(dest / "h")
    check_parent_clean(dest)


@MODES
def test_hardlink_through_symlink(dest, overlay, outside):
    raw = make_tar(entry("l", "sym", link=outside), entry("h", "hard", link="l/victim"))
    attempt(dest, raw, overlay)
    assert not os.path.lexists(dest / "h")


@MODES
def test_hardlink_to_symlink_links_the_symlink(dest, overlay, outside):
    victim = os.path.join(outside, "victim")
    raw = make_tar(entry("s", "sym", link=victim), entry("h", "hard", link="s"),
                   entry("h", data=b"overwritten"), entry("s", data=b"overwritten"))
    apply(dest, raw, overlay=overlay)
    assert (dest / "s").read_bytes() == b"overwritten"


@MODES
def test_device_where_a_symlink_is(dest, overlay, outside):
    raw = make_tar(entry("dev", "sym", link=outside), entry("dev/evil", "chr", dev=(1, 3)),
                   entry("x", "sym", link=os.path.join(outside, "node")),
                   entry("x", "chr", dev=(1, 3)))
    attempt(dest, raw, overlay, error=False)
    assert not os.path.lexists(os.path.join(outside, "evil"))
    assert not os.path.lexists(os.path.join(outside, "node"))


@MODES
def test_metadata_not_applied_through_symlinks(dest, overlay, outside):
    # A dir entry where a symlink is replaces the link; a later symlink over a dir whose
    # mtime is pending must not carry the mtime (or mode) to the link's target.
    raw = make_tar(entry("d", "sym", link=outside), entry("d", "dir", mode=0o777, uid=4242),
                   entry("e", "dir", mtime=5), entry("e", "sym", link=outside),
                   entry("f", "sym", link=outside, mode=0o777))
    apply(dest, raw, overlay=overlay)
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()
    assert os.readlink(dest / "e") == outside


@MODES
@pytest.mark.parametrize("name", [".wh..", "sub/.wh..", "sub/.wh...", ".wh."])
def test_whiteout_of_dot(dest, overlay, name):
    (dest / "sub").mkdir()
    (dest / "sub/keep").write_text("k")
    with pytest.raises(InvalidArgument, match="invalid whiteout"):
        apply(dest, make_tar(entry(name)), overlay=overlay)
    assert (dest / "sub/keep").read_text() == "k"
    check_parent_clean(dest)


@MODES
def test_whiteout_through_symlink(dest, overlay, outside):
    raw = make_tar(entry("l", "sym", link=outside), entry("l/.wh.victim"),
                   entry("l/.wh..wh..opq"))
    attempt(dest, raw, overlay, error=False)
    assert os.listxattr(outside) == [] or "trusted.overlay.opaque" not in os.listxattr(outside)


@MODES
def test_whiteout_dotdot(dest, overlay, outside):
    rel = os.path.relpath(os.path.join(outside, "victim"), dest)
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply(dest, make_tar(entry(os.path.dirname(rel) + "/.wh.victim")), overlay=overlay)


@MODES
@pytest.mark.parametrize("name", ["a" * 300, "d/" * 2100 + "f", "x/" + "y" * 5000])
def test_very_long_names(dest, overlay, name):
    attempt(dest, make_tar(entry(name, data=b"x")), overlay)


@MODES
def test_root_entries(dest, overlay):
    raw = make_tar(entry("./", "dir", mode=0o711), entry("/", "dir", mode=0o711),
                   entry(".", data=b"not a dir"), entry("ok", data=b"fine"))
    apply(dest, raw, overlay=overlay)
    assert (dest / "ok").read_bytes() == b"fine"
    assert oct(dest.stat().st_mode & 0o777) == oct(0o711)
