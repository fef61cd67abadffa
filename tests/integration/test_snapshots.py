"""Overlay and copy snapshotters on the real kernel: layer chains applied, mounted, checked.

The snapshotters only return mounts; these tests mount them (and unmount in teardown).
"""
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from berth.metadata.db import Metadata
from berth.snapshots import Mount, default_snapshotter, mount_all, unmount
from berth.snapshots.apply import apply_layer
from berth.snapshots.copy import CopySnapshotter
from berth.snapshots.overlay import OverlaySnapshotter
from tests.unit.test_apply import apply, entry, make_tar

pytestmark = pytest.mark.root
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAYERS = [
    make_tar(
        entry("etc", "dir"), entry("etc/a", data=b"a1", uid=100, gid=200, mode=0o640),
        entry("etc/b", data=b"b1"), entry("opq", "dir"), entry("opq/x", data=b"x"),
        entry("opq/sub/y", data=b"y"), entry("del/me", data=b"me"),
        entry("bin/sh", data=b"#!", mode=0o755), entry("lnk", "sym", link="/etc/b"),
    ),
    make_tar(
        entry("etc/.wh.a"), entry("opq", "dir", mode=0o700), entry("opq/.wh..wh..opq"),
        entry("opq/z", data=b"z"), entry("two", data=b"2"),
    ),
    make_tar(
        entry(".wh.del"), entry("etc/c", data=b"c3"),
        entry("two", data=b"22", uid=7, gid=8, mode=0o600),
        entry("dev/null", "chr", dev=(1, 3), mode=0o666),
    ),
]

EXPECTED = {
    "bin": ("d", 0o755, 0, 0, None), "bin/sh": ("f", 0o755, 0, 0, b"#!"),
    "dev": ("d", 0o755, 0, 0, None), "dev/null": ("c", 0o666, 0, 0, (1, 3)),
    "etc": ("d", 0o755, 0, 0, None), "etc/b": ("f", 0o644, 0, 0, b"b1"),
    "etc/c": ("f", 0o644, 0, 0, b"c3"), "lnk": ("l", 0o777, 0, 0, "/etc/b"),
    "opq": ("d", 0o700, 0, 0, None), "opq/z": ("f", 0o644, 0, 0, b"z"),
    "two": ("f", 0o600, 7, 8, b"22"),
}


def tree(top):
    """relpath -> (kind, mode, uid, gid, content) of everything under ``top``."""
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                kind, content = "d", None
            elif stat.S_ISLNK(mode):
                kind, content = "l", os.readlink(path)
            elif stat.S_ISCHR(mode):
                kind, content = "c", (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                kind = "f"
                with open(path, "rb") as f:
                    content = f.read()
            out[rel] = (kind, stat.S_IMODE(mode), st.st_uid, st.st_gid, content)
    return out


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "root")


@pytest.fixture
def metadata(root):
    os.makedirs(root, exist_ok=True)
    md = Metadata(root)
    yield md
    md.close()


@pytest.fixture
def mounter(tmp_path):
    """mount(mounts) -> target directory; everything is unmounted at teardown."""
    targets = []

    def mount(mounts):
        target = str(tmp_path / f"mnt{len(targets)}")
        os.mkdir(target)
        targets.append(target)
        mount_all(mounts, target)
        return target

    yield mount
    for target in reversed(targets):
        while is_mounted(target):
            unmount(target)


def is_mounted(target):
    # os.path.ismount misses a bind mount from the same filesystem.
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def build_chain(snap, overlay):
    chain = []
    for i, raw in enumerate(LAYERS):
        key = f"extract-{i}"
        snap.prepare(key, chain[-1] if chain else None)
        apply(snap.upper_dir(key), raw, overlay=overlay)
        name = f"layer-{i}"
        snap.commit(name, key)
        chain.append(name)
    return chain


DRIVERS = pytest.mark.parametrize("cls,overlay", [(OverlaySnapshotter, True),
                                                  (CopySnapshotter, False)],
                                  ids=["overlay", "copy"])


@DRIVERS
def test_three_layer_chain_merged_view(root, metadata, mounter, cls, overlay):
    snap = cls(root, metadata)
    chain = build_chain(snap, overlay)
    mounts = snap.prepare("container", chain[-1])
    if overlay:
        (m,) = mounts
        assert m.type == "overlay"
        lower = [o for o in m.options if o.startswith("lowerdir=")][0]
        assert lower.count(":") == 2 and "upperdir=" in str(m.options)
    else:
        assert mounts == [Mount("bind", snap.upper_dir("container"), ["rbind", "rw"])]
    target = mounter(mounts)
    assert tree(target) == EXPECTED
    # The container's writes land in its own snapshot, not in the layers.
    with open(os.path.join(target, "etc/b"), "w") as f:
        f.write("changed")
    os.unlink(os.path.join(target, "two"))
    unmount(target)
    assert not is_mounted(target)
    again = mounter(snap.view("check", chain[-1]))
    assert tree(again) == EXPECTED
    assert snap.usage("container") > 0


@DRIVERS
def test_views(root, metadata, mounter, cls, overlay):
    snap = cls(root, metadata)
    chain = build_chain(snap, overlay)
    one = snap.view("v1", chain[0])
    assert one[0].type == "bind" and "ro" in one[0].options
    target = mounter(one)
    assert sorted(os.listdir(target)) == ["bin", "del", "etc", "lnk", "opq"]
    with pytest.raises(OSError):
        open(os.path.join(target, "new"), "w")
    top = mounter(snap.view("v3", chain[-1]))
    assert tree(top) == EXPECTED
    with pytest.raises(OSError):
        open(os.path.join(top, "new"), "w")
    assert snap.stat("v3")["kind"] == "view"


@DRIVERS
def test_remove_and_prune_leave_nothing(root, metadata, cls, overlay):
    snap = cls(root, metadata)
    chain = build_chain(snap, overlay)
    snap.prepare("c1", chain[-1])
    with pytest.raises(Conflict):
        snap.remove(chain[-1])
    # c1 (active) keeps its whole chain; with include_active everything not kept goes.
    assert snap.prune({chain[0]}) == []
    assert {s["key"] for s in snap.list()} == {"c1", *chain}
    removed = snap.prune({chain[0]}, include_active=True)
    assert removed == ["c1", chain[2], chain[1]]
    assert [s["key"] for s in snap.list()] == [chain[0]]
    snap.remove(chain[0])
    assert snap.list() == []
    assert os.listdir(snap.root) == []


@DRIVERS
def test_errors(root, metadata, cls, overlay):
    snap = cls(root, metadata)
    snap.prepare("a")
    with pytest.raises(AlreadyExists):
        snap.prepare("a")
    with pytest.raises(InvalidArgument, match="not committed"):
        snap.prepare("b", "a")
    with pytest.raises(NotFound):
        snap.prepare("b", "missing")
    with pytest.raises(NotFound):
        snap.remove("missing")
    snap.commit("a-done", "a", labels={"x": "y"})
    assert snap.stat("a-done")["labels"] == {"x": "y"}
    with pytest.raises(Conflict):
        snap.mounts("a-done")
    with pytest.raises(Conflict):
        snap.commit("again", "a-done")
    with pytest.raises(NotFound):
        snap.stat("a")
    snap.remove("a-done")
    assert os.listdir(snap.root) == []


def test_crash_leftovers_cleaned(root, metadata):
    snap = OverlaySnapshotter(root, metadata)
    snap.prepare("live")
    for stray in ("77", "new-78", "rm-79"):
        os.makedirs(os.path.join(snap.root, stray, "fs", "deep"))
    assert snap.cleanup() == 3
    assert os.listdir(snap.root) == [snap.stat("live")["id"]]


KILLED_APPLY = r"""
import sys
from berth.metadata.db import Metadata
from berth.snapshots.overlay import OverlaySnapshotter
from berth.snapshots.apply import apply_layer
snap = OverlaySnapshotter(sys.argv[1], Metadata(sys.argv[1]))
snap.prepare("extract-killed")
print(snap.upper_dir("extract-killed"), flush=True)
apply_layer(snap.upper_dir("extract-killed"), sys.stdin.buffer.raw, None)
"""


def test_kill_during_apply_leaves_what_remove_cleans(root, metadata):
    raw = make_tar(*(entry(f"d{i}/f", data=os.urandom(4096)) for i in range(64)))
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_APPLY, root], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env)
    try:
        upper = proc.stdout.readline().decode().strip()
        proc.stdin.write(raw[: len(raw) // 2])  # half a layer, then nothing more
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(upper, "d10", "f")) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.exists(os.path.join(upper, "d10", "f")), "the apply never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    snap = OverlaySnapshotter(root, metadata)
    assert snap.stat("extract-killed")["kind"] == "active"
    snap.remove("extract-killed")
    assert os.listdir(snap.root) == []


def test_long_chain_uses_lowerdir_plus(root, metadata, mounter):
    snap = OverlaySnapshotter(root, metadata)
    parent = None
    count = 4096 // len(os.path.join(snap.root, "100", "fs")) + 10
    for i in range(count):
        key = f"x{i}"
        snap.prepare(key, parent)
        apply_layer(snap.upper_dir(key), __import__("io").BytesIO(
            make_tar(entry(f"f{i}", data=str(i).encode()))), None)
        snap.commit(f"layer{i}", key)
        parent = f"layer{i}"
    (m,) = snap.prepare("top", parent)
    assert sum(o.startswith("lowerdir+=") for o in m.options) == count
    target = mounter([m])
    assert len(os.listdir(target)) == count
    with open(os.path.join(target, "f0")) as f:
        assert f.read() == "0"


def test_default_snapshotter_probes_once(root, metadata):
    snap = default_snapshotter(root, metadata)
    assert isinstance(snap, OverlaySnapshotter)  # this host's kernel mounts overlay
    cache = os.path.join(root, "snapshots", "driver")
    with open(cache) as f:
        assert f.read().strip() == "overlay"
    assert sorted(os.listdir(os.path.join(root, "snapshots"))) == ["driver", "overlay"]
    with open(cache, "w") as f:
        f.write("copy\n")
    assert isinstance(default_snapshotter(root, metadata), CopySnapshotter)
