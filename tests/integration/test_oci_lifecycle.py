"""berth-oci's lifecycle on real containers (create, start, kill, delete, state) and its
answers to bad input: one line on stderr naming the field, and nothing left behind."""
import os
import threading

import pytest

from tests.integration.test_oci_features import state, wait_for
from tests.integration.test_oci_run import (
    assert_nothing_left,
    cgroup_dirs,
    one_line_error,
    sh,
)

# pid 1 ignores signals it has no handler for: the shell traps TERM and exits 0.
TRAPPING = sh("trap 'exit 0' TERM; sleep 30 & wait")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _status(oci, container_id):
    return state(oci, container_id)["status"]


def _stopped(oci, container_id):
    return _status(oci, container_id) == "stopped"


def _create_started(oci, make_bundle, container_id, args=TRAPPING):
    bundle = make_bundle(args=args)
    oci("create", "--bundle", bundle, container_id)
    oci("start", container_id)
    return bundle


def test_create_start_kill_delete(oci, make_bundle, container_id):
    bundle = make_bundle(args=TRAPPING)
    oci("create", "--bundle", bundle, container_id)
    st = state(oci, container_id)
    assert st["status"] == "created"
    assert st["id"] == container_id and st["bundle"] == str(bundle) and st["pid"] > 0
    pid = st["pid"]
    assert _alive(pid)
    assert cgroup_dirs(container_id) != []
    oci("start", container_id)
    assert _status(oci, container_id) == "running"
    proc = oci("start", container_id, check=False)
    one_line_error(proc, container_id)
    oci("kill", container_id, "TERM")
    wait_for(lambda: _stopped(oci, container_id), "the container to stop")
    proc = oci("kill", container_id, "KILL", check=False)
    one_line_error(proc, container_id, "not running")
    oci("delete", container_id)
    assert not _alive(pid)
    assert_nothing_left(oci, container_id)
    proc = oci("state", container_id, check=False)
    one_line_error(proc, container_id)


@pytest.mark.parametrize("signal", ["15", "SIGTERM", "KILL", "9"])
def test_kill_by_name_and_number(oci, make_bundle, container_id, signal):
    _create_started(oci, make_bundle, container_id)
    oci("kill", container_id, signal)
    wait_for(lambda: _stopped(oci, container_id), "the container to stop")
    oci("delete", container_id)
    assert_nothing_left(oci, container_id)


def test_unknown_signal_is_refused(oci, make_bundle, container_id):
    _create_started(oci, make_bundle, container_id)
    proc = oci("kill", container_id, "SIGNOPE", check=False)
    one_line_error(proc, "SIGNOPE")
    assert _status(oci, container_id) == "running"


def test_delete_running_needs_force(oci, make_bundle, container_id):
    _create_started(oci, make_bundle, container_id, args=["sleep", "30"])
    pid = state(oci, container_id)["pid"]
    proc = oci("delete", container_id, check=False)
    one_line_error(proc, container_id, "running")
    assert _alive(pid)
    oci("delete", "--force", container_id)
    assert not _alive(pid)
    assert_nothing_left(oci, container_id)


def test_delete_a_created_container(oci, make_bundle, container_id):
    oci("create", "--bundle", make_bundle(args=["sleep", "30"]), container_id)
    pid = state(oci, container_id)["pid"]
    oci("delete", container_id)
    assert not _alive(pid)
    assert_nothing_left(oci, container_id)


def test_delete_after_the_init_was_killed_from_the_host(oci, make_bundle, container_id):
    _create_started(oci, make_bundle, container_id, args=["sleep", "30"])
    pid = state(oci, container_id)["pid"]
    os.kill(pid, 9)
    wait_for(lambda: _stopped(oci, container_id), "the container to stop")
    oci("delete", container_id)
    assert_nothing_left(oci, container_id)


def test_delete_what_a_dead_create_left(oci, container_id):
    # A create killed after reserving the id and before recording its init leaves a
    # directory with no state file: it reads as "creating" with no pid, and delete must
    # clear it without signalling anything (pid 0 would be the caller's process group).
    os.makedirs(os.path.join(oci.root, container_id))
    assert state(oci, container_id)["status"] == "creating"
    oci("delete", container_id)
    assert not os.path.exists(os.path.join(oci.root, container_id))


def test_concurrent_creates_of_one_id(oci, make_bundle, container_id):
    bundle = make_bundle(args=["sleep", "30"])
    results = [None] * 4

    def create(i):
        results[i] = oci("create", "--bundle", bundle, container_id, check=False)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.returncode == 0]
    assert len(winners) == 1, [r.stderr for r in results]
    for r in results:
        if r.returncode != 0:
            one_line_error(r, container_id)
    assert _status(oci, container_id) == "created"
    oci("delete", container_id)
    assert_nothing_left(oci, container_id)


def test_run_detached_then_delete_leaves_nothing(oci, make_bundle, container_id):
    bundle = make_bundle(args=["sleep", "30"])
    oci("run", "--detach", "--bundle", bundle, container_id)
    st = state(oci, container_id)
    assert st["status"] == "running"
    oci("kill", container_id, "KILL")
    wait_for(lambda: _stopped(oci, container_id), "the container to stop")
    oci("delete", container_id)
    assert not _alive(st["pid"])
    assert_nothing_left(oci, container_id)


# ---- 14. bad input

def _bad_config(c, what):
    if what == "namespace":
        c["linux"]["namespaces"].append({"type": "bogus"})
    elif what == "capability":
        c["process"]["capabilities"]["bounding"].append("CAP_BOGUS")
    elif what == "rootfs":
        c["root"]["path"] = "/nonexistent/rootfs"
    elif what == "args":
        c["process"]["args"] = []


@pytest.mark.parametrize("what,words", [
    ("namespace", ["linux.namespaces", "bogus"]),
    ("capability", ["process.capabilities", "CAP_BOGUS"]),
    ("rootfs", ["root.path", "/nonexistent/rootfs"]),
    ("args", ["process.args"]),
])
def test_bad_config_fails_create_with_one_line(oci, make_bundle, container_id, what, words):
    bundle = make_bundle(mutate=lambda c: _bad_config(c, what))
    proc = oci("create", "--bundle", bundle, container_id, check=False)
    one_line_error(proc, *words)
    assert_nothing_left(oci, container_id)


def test_config_that_is_not_json(oci, make_bundle, container_id):
    bundle = make_bundle()
    (bundle / "config.json").write_text('{"ociVersion": ')
    proc = oci("create", "--bundle", bundle, container_id, check=False)
    one_line_error(proc, "config.json")
    assert_nothing_left(oci, container_id)


def test_missing_config(oci, tmp_path, container_id):
    proc = oci("create", "--bundle", tmp_path, container_id, check=False)
    one_line_error(proc, "config.json")
    assert_nothing_left(oci, container_id)


@pytest.mark.parametrize("bad_id", ["a/b", "..", "", "a b"])
def test_bad_container_id(oci, make_bundle, bad_id):
    proc = oci("create", "--bundle", make_bundle(), bad_id, check=False)
    one_line_error(proc, "id")
    if os.path.isdir(oci.root):
        assert os.listdir(oci.root) == []
    assert not os.path.exists("/sys/fs/cgroup/pids/berth-oci/a")


def test_verbs_on_a_missing_container(oci):
    for verb in (["start"], ["kill"], ["state"], ["delete"]):
        proc = oci(*verb, "no-such-container", check=False)
        one_line_error(proc, "no-such-container")
    assert oci("delete", "--force", "no-such-container").returncode == 0
