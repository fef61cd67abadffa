"""engine/store.py and engine/names.py on a tmp root."""

import multiprocessing
import os
import re

import pytest

from berth.engine import names
from berth.engine.store import SCHEMA_VERSION, ContainerStore
from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unsupported
from berth.metadata import Metadata

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@pytest.fixture
def md(tmp_path):
    m = Metadata(str(tmp_path))
    yield m
    m.close()


@pytest.fixture
def store(md):
    return ContainerStore(md)


def _record(cid=None, name="web", **extra):
    rec = {"id": cid or names.new_id(), "name": name, "image": "busybox",
           "config": {"Cmd": ["sh"]},
           "state": {"Status": "created", "Running": False, "Pid": 0, "ExitCode": 0}}
    rec.update(extra)
    return rec


def test_create_get_list_delete(store):
    rec = store.create(_record(name="/web"))
    assert rec["name"] == "web" and rec["created"].endswith("Z")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", rec["created"])
    assert store.get(rec["id"]) == rec
    assert store.get("web") == rec
    assert store.get("/web") == rec
    assert store.get(rec["id"][:12]) == rec
    assert store.get(rec["id"][:1]) == rec
    other = store.create(_record(name="db", created="2999-01-01T00:00:00.000000000Z"))
    assert [r["id"] for r in store.list()] == [other["id"], rec["id"]]
    store.delete("web")
    with pytest.raises(NotFound, match=r"^No such container: web$"):
        store.get("web")
    with pytest.raises(NotFound, match=r"^No such container: web$"):
        store.delete("web")
    assert [r["id"] for r in store.list()] == [other["id"]]


def test_not_found_wording(store):
    for what in ("nope", "", "abc", "/x", "0" * 64):
        with pytest.raises(NotFound) as err:
            store.get(what)
        assert str(err.value) == f"No such container: {what}"


def test_name_conflict_docker_wording(store):
    first = store.create(_record(name="web"))
    with pytest.raises(AlreadyExists) as err:
        store.create(_record(name="/web"))
    assert str(err.value) == (
        f'Conflict. The container name "/web" is already in use by container "{first["id"]}". '
        "You have to remove (or rename) that container to be able to reuse that name.")
    with pytest.raises(AlreadyExists, match="already exists"):
        store.create(_record(cid=first["id"], name="other"))
    assert len(store.list()) == 1


def test_invalid_names_and_ids(store):
    for bad in ("a", "-web", "_x", "we b", "we/b", "ü1", "//web"):
        with pytest.raises(InvalidArgument) as err:
            store.create(_record(name=bad))
        assert str(err.value) == (f"Invalid container name ({bad}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    for cid in ("abc", "A" * 64, "g" * 64, 5):
        with pytest.raises(InvalidArgument, match="invalid container id"):
            store.create(_record(cid=cid))
    assert store.list() == []


def test_generated_name_when_none_given(store):
    rec = store.create(_record(name=None))
    assert NAME_RE.match(rec["name"]) and "_" in rec["name"]
    assert store.get(rec["name"])["id"] == rec["id"]


def test_prefix_lookup_and_ambiguity(store):
    a = store.create(_record(cid="ab" + "1" * 62, name="one"))
    b = store.create(_record(cid="ab" + "2" * 62, name="two"))
    with pytest.raises(Conflict) as err:
        store.get("ab")
    assert str(err.value) == "multiple containers found with provided prefix: ab"
    assert store.get("ab1")["id"] == a["id"]
    assert store.get("ab2")["id"] == b["id"]
    # An exact name wins over an id prefix, as in Docker.
    c = store.create(_record(cid="cd" + "3" * 62, name="ab2"))
    assert store.get("ab2")["id"] == c["id"]
    with pytest.raises(Conflict):
        store.update("ab", state={"Running": True})
    with pytest.raises(Conflict):
        store.delete("ab")


def test_update_merges_one_level(store):
    rec = store.create(_record())
    new = store.update(rec["id"], state={"Running": True, "Pid": 42,
                                         "Health": {"Status": "starting"}},
                       restart_count=1)
    assert new["state"] == {"Status": "created", "Running": True, "Pid": 42, "ExitCode": 0,
                            "Health": {"Status": "starting"}}
    new = store.update("web", state={"Health": {"FailingStreak": 1}})
    assert new["state"]["Health"] == {"FailingStreak": 1}  # one level only
    assert new["state"]["Pid"] == 42 and new["restart_count"] == 1
    assert store.get(rec["id"]) == new
    new = store.update(rec["id"][:5], config=["replaced"])  # not a dict: replaced
    assert new["config"] == ["replaced"]
    with pytest.raises(InvalidArgument, match="id cannot change"):
        store.update(rec["id"], id=names.new_id())
    with pytest.raises(NotFound, match="No such container: gone"):
        store.update("gone", state={})


def test_update_renames(store):
    a = store.create(_record(name="first"))
    b = store.create(_record(name="second"))
    assert store.update(a["id"], name="/renamed")["name"] == "renamed"
    assert store.get("renamed")["id"] == a["id"]
    with pytest.raises(NotFound):
        store.get("first")
    with pytest.raises(AlreadyExists, match=f'"/second" is already in use by container "{b["id"]}"'):
        store.update(a["id"], name="second")
    with pytest.raises(InvalidArgument, match="Invalid container name"):
        store.update(a["id"], name="x")
    assert store.get(a["id"])["name"] == "renamed"
    store.create(_record(name="first"))  # the old name is free again


def _updater(root, cid, field, count):
    md = Metadata(root)
    store = ContainerStore(md)
    for i in range(count):
        store.update(cid, state={field: i}, **{field: i})
    md.close()


def test_concurrent_updates_from_two_processes_both_land(store, tmp_path):
    rec = store.create(_record())
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_updater, args=(str(tmp_path), rec["id"], f, 50))
             for f in ("left", "right")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    got = store.get(rec["id"])
    assert got["left"] == got["right"] == 49
    assert got["state"]["left"] == got["state"]["right"] == 49
    assert got["state"]["Status"] == "created"


def _try_lock(root, cid, queue):
    md = Metadata(root)
    try:
        with ContainerStore(md).lock(cid, wait=False):
            queue.put("locked")
    except Conflict as err:
        queue.put(str(err))
    finally:
        md.close()


def _hold_lock_until(root, cid, held, release):
    md = Metadata(root)
    with ContainerStore(md).lock(cid):
        held.set()
        release.wait()
    md.close()


def test_lock_excludes_another_process(store, tmp_path):
    cid = names.new_id()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with store.lock(cid) as held:
        assert os.path.exists(held.path)
        assert held.path == str(tmp_path / "containers" / cid / ".lock")
        p = ctx.Process(target=_try_lock, args=(str(tmp_path), cid, queue))
        p.start()
        assert queue.get() == f"container {cid} is locked by another operation"
        p.join()
    p = ctx.Process(target=_try_lock, args=(str(tmp_path), cid, queue))
    p.start()
    assert queue.get() == "locked"
    p.join()
    # The other way round: a holder in a child process makes wait=False fail here.
    held, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock_until, args=(str(tmp_path), cid, held, release))
    p.start()
    try:
        held.wait()
        with pytest.raises(Conflict, match="locked by another operation"):
            with store.lock(cid, wait=False):
                pass
    finally:
        release.set()
        p.join()
    with store.lock(cid, wait=False):
        pass
    with pytest.raises(InvalidArgument):
        store.lock("../../etc")


def test_schema_version_kept_and_newer_refused(md, tmp_path):
    ContainerStore(md)
    ContainerStore(md)  # reopening migrates nothing
    assert md.query("SELECT version FROM engine_schema WHERE name = 'containers'")[0][0] \
        == SCHEMA_VERSION
    md.execute("UPDATE engine_schema SET version = ? WHERE name = 'containers'",
               (SCHEMA_VERSION + 1,))
    with pytest.raises(Unsupported, match="newer"):
        ContainerStore(md)


def test_new_id():
    ids = {names.new_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(names.is_id(i) and not i[:12].isdigit() for i in ids)


def test_validate_name():
    assert names.validate_name("/web") == "web"
    assert names.validate_name("a.b-c_1") == "a.b-c_1"
    with pytest.raises(InvalidArgument, match=r"^Invalid container name \(/-x\), only"):
        names.validate_name("/-x")


def test_random_names_unique_and_valid():
    taken = set()
    for _ in range(3000):  # more than the word lists' product: suffixes must kick in
        name = names.random_name(taken)
        assert name not in taken
        assert NAME_RE.match(name)
        names.validate_name(name)
        taken.add(name)
    assert any(name[-1].isdigit() for name in taken)
