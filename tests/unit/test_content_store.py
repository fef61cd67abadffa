"""The content store and digests, on a tmp root (no root privileges needed)."""

import hashlib
import os
import stat

import pytest

from berth.content.digest import (ALGORITHMS, DigestMismatch, digest_bytes, hasher,
                                  parse_digest)
from berth.content.store import ContentStore
from berth.errors import Conflict, InvalidArgument, NotFound

HELLO = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.fixture
def store(tmp_path):
    return ContentStore(str(tmp_path))


# --- digests -------------------------------------------------------------------------------

def test_parse_digest():
    assert ALGORITHMS == ("sha256", "sha512")
    assert parse_digest(HELLO) == ("sha256", HELLO[7:])
    d512 = "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert parse_digest(d512) == ("sha512", d512[7:])


@pytest.mark.parametrize("bad", [
    "", "sha256", "sha256:", ":abc", "md5:" + "0" * 32, "sha256:" + "0" * 63,
    "sha256:" + "0" * 65, "sha256:" + "A" * 64, "sha256:" + "g" * 64, "sha256:../" + "0" * 61,
    "sha512:" + "0" * 64, None, 5,
])
def test_parse_digest_rejects(bad):
    with pytest.raises(InvalidArgument):
        parse_digest(bad)


def test_hasher_and_digest_bytes():
    assert digest_bytes(b"hello") == HELLO
    assert digest_bytes(b"x", "sha512") == "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert hasher(HELLO).name == "sha256"
    assert hasher("sha512").name == "sha512"
    with pytest.raises(InvalidArgument):
        hasher("md5")


def test_digest_mismatch_message():
    err = DigestMismatch("blob x", "sha256:aa", "sha256:bb")
    assert str(err) == "digest mismatch for blob x: expected sha256:aa, got sha256:bb"
    assert isinstance(err, InvalidArgument)
    assert str(DigestMismatch("whole message")) == "whole message"


# --- blobs ---------------------------------------------------------------------------------

def test_put_has_read_open_size_path(store):
    assert not store.has(HELLO)
    assert store.put(b"hello") == HELLO
    assert store.has(HELLO)
    assert store.read(HELLO) == b"hello"
    with store.open(HELLO) as f:
        assert f.read() == b"hello"
    assert store.size(HELLO) == 5
    p = store.path(HELLO)
    assert p.endswith("/content/blobs/sha256/" + HELLO[7:])
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o444
    assert store.verify(HELLO)
    assert list(store.digests()) == [HELLO]
    assert os.listdir(os.path.join(store.root, "ingest")) == []


def test_put_existing_is_not_rewritten(store):
    store.put(b"hello")
    before = os.stat(store.path(HELLO))
    store.put(b"hello", HELLO)
    after = os.stat(store.path(HELLO))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_put_verifies_expected(store):
    wrong = digest_bytes(b"other")
    with pytest.raises(DigestMismatch) as info:
        store.put(b"hello", wrong)
    assert wrong in str(info.value) and HELLO in str(info.value)
    assert not store.has(HELLO)


def test_sha512(store):
    d = digest_bytes(b"payload", "sha512")
    assert store.put(b"payload", d) == d
    assert store.read(d) == b"payload"
    assert list(store.digests()) == [d]
    w = store.writer("k512", expected=digest_bytes(b"abcdef", "sha512"))
    w.write(b"abc")
    w.write(b"def")
    assert w.commit() == digest_bytes(b"abcdef", "sha512")


def test_missing_blob(store):
    for op in (store.size, store.path, store.open, store.read, store.delete, store.verify):
        with pytest.raises(NotFound):
            op(HELLO)


def test_bad_digest_strings(store):
    for op in (store.has, store.size, store.path, store.open, store.read, store.delete):
        with pytest.raises(InvalidArgument):
            op("sha256:nothex")
    with pytest.raises(InvalidArgument):
        store.writer("k", expected="sha1:abc")


def test_delete(store):
    store.put(b"hello")
    store.delete(HELLO)
    assert not store.has(HELLO)
    assert list(store.digests()) == []


def test_digests_skips_foreign_files(store):
    store.put(b"hello")
    open(os.path.join(store.root, "blobs", "sha256", "junk"), "w").close()
    assert list(store.digests()) == [HELLO]


def test_read_detects_corruption(store):
    store.put(b"hello")
    p = store.path(HELLO)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.write(b"j")
    assert not store.verify(HELLO)
    with pytest.raises(DigestMismatch):
        store.read(HELLO)


# --- writers -------------------------------------------------------------------------------

def test_writer_commit(store):
    data = b"x" * 3000
    d = digest_bytes(data)
    with store.writer("pull-1", expected=d, size=len(data)) as w:
        assert (w.offset, w.committed) == (0, False)
        w.write(data[:1000])
        w.write(data[1000:])
        assert w.commit() == d
        assert w.committed
    assert store.read(d) == data
    assert store.ingests() == []


def test_writer_commit_digest_mismatch(store):
    w = store.writer("bad")
    w.write(b"hello")
    wrong = digest_bytes(b"other")
    with pytest.raises(DigestMismatch) as info:
        w.commit(wrong)
    assert str(info.value) == f"digest mismatch for ingest bad: expected {wrong}, got {HELLO}"
    assert not store.has(HELLO) and not store.has(wrong)
    assert store.ingests() == []  # wrong bytes are dropped, not resumed


def test_writer_size_checks(store):
    w = store.writer("short", size=10)
    w.write(b"12345")
    with pytest.raises(InvalidArgument, match="incomplete: 5 of 10"):
        w.commit()
    with pytest.raises(InvalidArgument, match="more than the expected size"):
        w.write(b"1234567")
    w.write(b"67890")
    assert w.commit() == digest_bytes(b"1234567890")
    w = store.writer("long")
    w.write(b"123456")
    with pytest.raises(InvalidArgument, match="has 6 bytes, expected 5"):
        w.commit(size=5)
    assert store.ingests() == []


def test_writer_resume_after_close(store):
    data = os.urandom(100_000)
    d = digest_bytes(data)
    w = store.writer("pull-x", expected=d, size=len(data))
    w.write(data[:40_000])
    w.close()
    assert store.ingests() == ["pull-x"]
    st = store.ingest_status("pull-x")
    assert (st["offset"], st["expected"], st["size"]) == (40_000, d, len(data))
    w = store.writer("pull-x")  # expected and size come back from the ingest
    assert (w.offset, w.expected, w.size) == (40_000, d, len(data))
    w.write(data[w.offset:])
    assert w.commit() == d
    assert store.read(d) == data


def test_writer_resume_via_context_manager(store):
    with store.writer("cm") as w:
        w.write(b"hel")
    with store.writer("cm") as w:
        assert w.offset == 3
        w.write(b"lo")
        assert w.commit(HELLO) == HELLO


def test_writer_other_expected_starts_over(store):
    w = store.writer("k", expected=digest_bytes(b"aaaa"))
    w.write(b"aa")
    w.close()
    w = store.writer("k", expected=HELLO)
    assert w.offset == 0
    w.write(b"hello")
    assert w.commit() == HELLO


def test_writer_for_existing_blob_is_committed(store):
    store.put(b"hello")
    w = store.writer("again", expected=HELLO)
    assert w.committed and w.offset == 5
    assert w.commit() == HELLO
    with pytest.raises(Conflict):
        w.write(b"more")
    assert store.ingests() == []


def test_writer_clears_what_a_killed_commit_left(store):
    w = store.writer("k", expected=HELLO)
    w.write(b"hello")
    w.close()
    # As if killed in commit() after the rename, before the ingest directory went.
    os.rename(os.path.join(store.root, "ingest", "k", "data"),
              os.path.join(store.root, "blobs", "sha256", HELLO[7:]))
    w = store.writer("k", expected=HELLO)
    assert w.committed and store.ingests() == []


def test_writer_resumes_data_a_killed_commit_made_read_only(store):
    w = store.writer("k")
    w.write(b"hel")
    w.close()
    os.chmod(os.path.join(store.root, "ingest", "k", "data"), 0o444)
    w = store.writer("k")
    w.write(b"lo")
    assert w.commit() == HELLO


def test_writer_abort(store):
    w = store.writer("gone")
    w.write(b"partial")
    w.abort()
    assert store.ingests() == []
    w = store.writer("gone2")
    w.write(b"partial")
    w.close()
    store.abort("gone2")
    assert store.ingests() == []
    with pytest.raises(NotFound):
        store.abort("gone2")


def test_second_writer_conflicts(store):
    w = store.writer("busy")
    w.write(b"abc")
    with pytest.raises(Conflict, match="ingest busy is in use"):
        store.writer("busy")
    with pytest.raises(Conflict, match="in use"):
        store.abort("busy")
    w.close()
    w2 = store.writer("busy")
    assert w2.offset == 3
    w2.close()


def test_bad_keys(store):
    for key in ("", "a/b", ".hidden", "..", "x\n", "k" * 256, None):
        with pytest.raises(InvalidArgument):
            store.writer(key)
