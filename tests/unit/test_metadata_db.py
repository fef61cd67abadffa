"""The metadata database on a tmp root."""

import sqlite3

import pytest

from berth.errors import InvalidArgument, NotFound, Unsupported
from berth.metadata import Metadata
from berth.metadata.db import SCHEMA_VERSION

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
TARGET = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": D1, "size": 10}


@pytest.fixture
def md(tmp_path):
    m = Metadata(str(tmp_path))
    yield m
    m.close()


def test_wal_and_schema_version(md, tmp_path):
    assert md.query("PRAGMA journal_mode")[0][0] == "wal"
    assert md.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert md.query("PRAGMA busy_timeout")[0][0] == 10_000
    tables = {r["name"] for r in md.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "leases", "lease_content"} <= tables
    Metadata(str(tmp_path)).close()  # opening again migrates nothing and fails nothing


def test_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(str(tmp_path / "metadata.db"))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(Unsupported, match="newer"):
        Metadata(str(tmp_path))


def test_images(md):
    name = "docker.io/library/busybox:latest"
    assert md.get_image(name) is None
    md.put_image(name, TARGET, created=0)
    img = md.get_image(name)
    assert img["name"] == name and img["target"] == TARGET
    assert img["created"] == "1970-01-01T00:00:00.000000Z"
    assert img["updated"].endswith("Z")
    moved = dict(TARGET, digest=D2)
    md.put_image(name, moved)
    img = md.get_image(name)
    assert img["target"] == moved and img["created"] == "1970-01-01T00:00:00.000000Z"
    md.put_image("docker.io/library/alpine:3", TARGET)
    assert [i["name"] for i in md.list_images()] == ["docker.io/library/alpine:3", name]
    md.delete_image(name)
    assert md.get_image(name) is None
    with pytest.raises(NotFound, match="No such image"):
        md.delete_image(name)


@pytest.mark.parametrize("target", [None, {}, {"mediaType": "x", "digest": "nope", "size": 1},
                                    {"mediaType": "x", "digest": D1, "size": -1},
                                    {"digest": D1, "size": 1}])
def test_bad_targets(md, target):
    with pytest.raises(InvalidArgument):
        md.put_image("x", target)


def test_second_connection_sees_writes(md, tmp_path):
    other = Metadata(str(tmp_path))
    try:
        md.put_image("a", TARGET)
        assert other.get_image("a")["target"] == TARGET
        other.add_lease("l1", [D2])
        assert md.leased() == {D2}
    finally:
        other.close()


def test_transaction_rolls_back(md):
    with pytest.raises(RuntimeError):
        with md.transaction():
            md.put_image("a", TARGET)
            assert md.get_image("a") is not None
            raise RuntimeError("boom")
    assert md.get_image("a") is None
    with md.transaction():
        md.put_image("b", TARGET)
        with pytest.raises(RuntimeError):
            with md.transaction():  # a nested one is a savepoint
                md.put_image("c", TARGET)
                raise RuntimeError("inner")
    assert md.get_image("b") is not None and md.get_image("c") is None


def test_execute_and_query_for_other_tables(md):
    md.execute("CREATE TABLE IF NOT EXISTS things (k TEXT PRIMARY KEY, v INTEGER)")
    cur = md.execute("INSERT INTO things VALUES (?, ?)", ("a", 1))
    assert cur.rowcount == 1
    rows = md.query("SELECT * FROM things")
    assert [(r["k"], r["v"]) for r in rows] == [("a", 1)]


def test_leases(md):
    assert md.leased() == set()
    md.add_lease("pull-1", [D1])
    md.lease_add("pull-1", D2)
    md.add_lease("pull-1")  # again: no error, keeps what it holds
    md.add_lease("pull-2", [D1])
    assert md.leased() == {D1, D2}
    with pytest.raises(NotFound):
        md.lease_add("nope", D1)
    md.remove_lease("pull-1")
    assert md.leased() == {D1}
    md.remove_lease("pull-1")  # not there: no error
    md.add_lease("old", [D2], expires_in=-1)
    assert md.leased() == {D1}
    assert md.remove_expired_leases() == 1
    assert [lease["id"] for lease in md.list_leases()] == ["pull-2"]
