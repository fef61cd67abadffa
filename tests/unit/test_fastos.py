"""sys/fastos: the os helpers berth-oci uses without importing os agree with os's own."""

import os
import posixpath

from berth.sys import fastos

PATHS = ["", "/", "//", "///a", "a/b/../c", "/a/./b/", "../x", "a/..", "/..", "a//b",
         "/a/b/", "x/../../y", "//a/b"]


def test_path_functions_match_posixpath():
    for p in PATHS:
        assert fastos.normpath(p) == posixpath.normpath(p), p
        assert fastos.split(p) == posixpath.split(p), p
        assert fastos.dirname(p) == posixpath.dirname(p), p
        assert fastos.basename(p) == posixpath.basename(p), p
        assert fastos.abspath(p or ".") == posixpath.abspath(p or "."), p
    for a, b in [("a", "b"), ("/a/", "b"), ("a", "/b"), ("", "x"), ("a/", "")]:
        assert fastos.path.join(a, b) == posixpath.join(a, b)
    for a, b in [("/a/b/c", "/a"), ("/a", "/a"), ("/a/b", "/a/"), ("/x/y", "/a")]:
        assert fastos.relpath(a, b) == posixpath.relpath(a, b)


def test_realpath_matches_posixpath(tmp_path):
    d = str(tmp_path)
    os.makedirs(d + "/a/b")
    os.symlink("b", d + "/a/l")
    os.symlink("/etc", d + "/e")
    os.symlink("../a/l/../b", d + "/a/b/up")
    os.symlink("loop", d + "/loop")
    for p in [d + "/a/l/x", d + "/e/passwd", d + "/a/b/up/../..", d + "/nope/x", d + "/loop",
              "rel", "/"]:
        assert fastos.realpath(p) == posixpath.realpath(p), p


def test_other_names_fall_through_to_os(tmp_path):
    assert fastos.environ is os.environ
    assert fastos.getenv("PATH") == os.environ.get("PATH")
    top = str(tmp_path)
    os.makedirs(top + "/x/y")
    open(top + "/x/f", "w").close()
    mine = [(p, sorted(d), sorted(f)) for p, d, f in fastos.walk(top)]
    theirs = [(p, sorted(d), sorted(f)) for p, d, f in os.walk(top)]
    assert mine == theirs
