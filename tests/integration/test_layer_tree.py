"""engine.spec.LayerTree reads an image's files from its snapshot's layer directories without
a mount: each answer must be what the mounted union shows (overlay and copy snapshotters)."""

import os

import pytest

from berth.engine.spec import LayerTree, NeedsMount, resolve_user
from tests.integration.test_snapshots import (DRIVERS, build_chain, metadata, mounter,  # noqa: F401
                                              root)

pytestmark = pytest.mark.root

PATHS = ["etc/a", "etc/b", "etc/c", "etc", "opq/x", "opq/z", "opq/sub/y", "del/me", "two",
         "bin/sh", "dev/null", "nothing", "etc/nothing", "two/below", "bin/sh/below"]


def union_read(top, path):
    full = os.path.join(top, path)
    if os.path.islink(full) or not os.path.isfile(full):
        return None
    with open(full, "rb") as f:
        return f.read()


@DRIVERS
def test_layer_tree_reads_what_the_union_shows(root, metadata, mounter, cls, overlay):  # noqa: F811
    snap = cls(root, metadata)
    chain = build_chain(snap, overlay)
    view = mounter(snap.view("check", chain[-1]))
    layers = snap.layer_dirs(chain[-1])
    assert len(layers) == (3 if overlay else 1)
    tree = LayerTree(layers)
    for path in PATHS:
        assert tree.read("/" + path) == union_read(view, path), path
    with pytest.raises(NeedsMount):
        tree.read("/lnk")
    with pytest.raises(NeedsMount):
        tree.read("/lnk/below")


def test_passwd_from_layers(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (upper / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (lower / "etc" / "group").write_text("root:x:0:\nstaff:x:50:app\n")
    (upper / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                          "app:x:1000:1000::/home/app:/bin/sh\n")
    os.mknod(upper / "etc" / "group", 0o20600, os.makedev(0, 0))  # a whiteout
    tree = LayerTree([str(upper), str(lower)])
    assert resolve_user(tree, "app") == (1000, 1000, [], "/home/app")
    assert tree.read("/etc/group") is None
    os.unlink(upper / "etc" / "group")
    assert resolve_user(LayerTree([str(upper), str(lower)]), "app") == (1000, 1000, [50],
                                                                        "/home/app")
    os.setxattr(upper / "etc", "trusted.overlay.opaque", b"y")
    assert LayerTree([str(upper), str(lower)]).read("/etc/group") is None
