"""engine.spec.LayerTree on plain directories (no whiteouts: those need root, see
tests/integration/test_layer_tree.py)."""

import os

import pytest

from berth.engine.spec import LayerTree, NeedsMount


def layers(tmp_path, *trees):
    out = []
    for i, files in enumerate(trees):
        top = tmp_path / f"l{i}"
        top.mkdir(parents=True)
        for path, data in files.items():
            full = top / path
            full.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                full.mkdir()
            elif isinstance(data, tuple):
                os.symlink(data[0], full)
            else:
                full.write_bytes(data)
        out.append(str(top))
    return out


def test_top_layer_wins_and_lower_ones_fill_in(tmp_path):
    tree = LayerTree(layers(tmp_path, {"etc/passwd": b"top"},
                            {"etc/passwd": b"low", "etc/group": b"g"}))
    assert tree.read("/etc/passwd") == b"top"
    assert tree.read("/etc/group") == b"g"
    assert tree.read("/etc/shadow") is None
    assert LayerTree([]).read("/etc/passwd") is None


def test_a_file_or_directory_hides_what_is_below(tmp_path):
    tree = LayerTree(layers(tmp_path, {"etc": b"a file", "x/passwd": None},
                            {"etc/passwd": b"low", "x/passwd": b"low"}))
    assert tree.read("/etc/passwd") is None
    assert tree.read("/x/passwd") is None


def test_symlinks_need_the_mounted_union(tmp_path):
    tree = LayerTree(layers(tmp_path, {"etc/passwd": ("../passwd",)}, {"passwd": b"p"}))
    with pytest.raises(NeedsMount):
        tree.preload(["/etc/passwd"])
    tree = LayerTree(layers(tmp_path / "b", {"etc": ("/other",), "other/passwd": b"p"}))
    with pytest.raises(NeedsMount):
        tree.read("/etc/passwd")


def test_preload_keeps_what_it_read(tmp_path):
    top = layers(tmp_path, {"etc/passwd": b"one"})
    tree = LayerTree(top).preload(["/etc/passwd", "/etc/group"])
    os.unlink(os.path.join(top[0], "etc", "passwd"))
    assert tree.read("/etc/passwd") == b"one"
    assert tree.read("/etc/group") is None
