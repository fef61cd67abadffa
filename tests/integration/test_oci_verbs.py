"""berth-oci list, ps, pause, resume, update, events, spec and features on real containers."""
import contextlib
import json
import os
import subprocess
import tempfile
import time

import pytest

from berth.runtime.state import Container
from berth.runtime.verbs.list import rfc3339nano, table
from berth.runtime.verbs.ps import filter_ps
from berth.spec.runtime import Spec

CGROUP = "/sys/fs/cgroup"


@pytest.fixture
def running(oci, make_bundle, container_id):
    """A detached container running `sleep 1000`; returns its id."""
    oci("run", "-d", "--bundle", make_bundle(args=["sleep", "1000"]), container_id)
    return container_id


def state(oci, cid):
    return json.loads(oci("state", cid).stdout)


def recorded(oci, cid):
    """The runtime's own record of a container (its state file)."""
    return Container.load(oci.root, cid).state


def cgroup_dir(oci, cid, controller):
    path = recorded(oci, cid)["cgroupPath"]
    for name in os.listdir(CGROUP):
        if controller in name.split(",") and not os.path.islink(os.path.join(CGROUP, name)):
            return os.path.join(CGROUP, name, path.lstrip("/"))
    pytest.skip(f"no v1 {controller} hierarchy on this host")


def read(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def fails(oci, *args, input=None):
    """Run a call that must fail: exit 1 and one line on stderr; return that line."""
    proc = oci(*args, check=False, input=input)
    assert proc.returncode == 1, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("berth-oci: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def wait_stopped(oci, cid):
    deadline = time.monotonic() + 30
    while state(oci, cid)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} did not stop"
        time.sleep(0.05)


# ------------------------------------------------------------------ list

def test_list_table_json_quiet(oci, make_bundle, running, container_id):
    other = container_id + "-c"
    oci("create", "--bundle", make_bundle(args=["sleep", "1000"]), other)
    pid = state(oci, running)["pid"]

    lines = oci("list").stdout.splitlines()
    header = lines[0]
    assert header.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {running, other}
    for column in ("PID", "STATUS", "BUNDLE", "CREATED", "OWNER"):
        at = header.index(column)  # every row's cell starts where its heading does
        for line in rows.values():
            assert line[at - 1] == " " and line[at] != " ", (column, line)
    assert rows[running].split()[1:3] == [str(pid), "running"]
    assert rows[other].split()[2] == "created"
    assert rows[running].split()[5] == "root"

    items = json.loads(oci("list", "--format", "json").stdout)
    assert [i["id"] for i in items] == sorted([running, other])
    item = items[[i["id"] for i in items].index(running)]
    assert list(item) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                          "owner"]
    assert item["pid"] == pid and item["status"] == "running" and item["owner"] == "root"
    assert item["created"].endswith("Z") and os.path.isdir(item["bundle"])

    assert sorted(oci("list", "-q").stdout.split()) == sorted([running, other])


def test_list_empty_and_stopped(oci, make_bundle, container_id):
    assert oci("list").stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert oci("list", "-f", "json").stdout == "null\n"  # runc prints null for no containers
    assert oci("list", "-q").stdout == ""
    oci("run", "-d", "--bundle", make_bundle(args=["true"]), container_id)
    wait_stopped(oci, container_id)
    [item] = json.loads(oci("list", "--format=json").stdout)
    assert item["status"] == "stopped" and item["pid"] == 0


def test_list_bad_input(oci):
    assert "invalid format option" in fails(oci, "list", "--format", "yaml")
    assert "flag provided but not defined: --all" in fails(oci, "list", "--all")
    assert "requires exactly 0 argument(s)" in fails(oci, "list", "extra")


def test_list_helpers():
    assert rfc3339nano("2024-01-02T03:04:05.120000000Z") == "2024-01-02T03:04:05.12Z"
    assert rfc3339nano("2024-01-02T03:04:05.000000000Z") == "2024-01-02T03:04:05Z"
    assert rfc3339nano("2024-01-02T03:04:05Z") == "2024-01-02T03:04:05Z"
    assert table([("ID", "PID", "OWNER"), ("a-rather-long-id", "1", "root")]) == (
        "ID                 PID         OWNER\n"
        "a-rather-long-id   1           root\n")


# ------------------------------------------------------------------ ps

def test_ps_json_and_table(oci, running):
    pid = state(oci, running)["pid"]
    assert json.loads(oci("ps", "--format", "json", running).stdout) == [pid]
    lines = oci("ps", running).stdout.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    assert len(lines) == 2 and lines[1].split()[1] == str(pid) and "sleep 1000" in lines[1]
    # Options after the id are ps's.
    lines = oci("ps", running, "-o", "pid,comm").stdout.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and lines[1].split() == [str(pid), "sleep"]


def test_ps_filter():
    out = "  PID CMD\n    1 init\n   42 sleep\n\n"
    assert filter_ps(out, [42]) == "  PID CMD\n   42 sleep\n"


def test_ps_errors(oci, make_bundle, container_id):
    assert "container does not exist: nope" in fails(oci, "ps", "nope")
    assert "requires a container id" in fails(oci, "ps")
    oci("run", "-d", "--bundle", make_bundle(args=["true"]), container_id)
    wait_stopped(oci, container_id)
    assert f"container {container_id} is not running" in fails(oci, "ps", container_id)
    assert "invalid format option" in fails(oci, "ps", "-f", "xml", container_id)


# ------------------------------------------------------------------ pause and resume

def test_pause_resume(oci, running):
    pid = state(oci, running)["pid"]
    freezer = cgroup_dir(oci, running, "freezer")
    oci("pause", running)
    assert state(oci, running)["status"] == "paused"
    assert read(freezer, "freezer.state") == "FROZEN"
    with open(f"/proc/{pid}/status") as f:
        task_state = next(line.split()[1] for line in f if line.startswith("State:"))
    assert task_state in ("D", "S")
    assert json.loads(oci("list", "-f", "json").stdout)[0]["status"] == "paused"
    assert "container not running" in fails(oci, "pause", running)

    oci("resume", running)
    assert state(oci, running)["status"] == "running"
    assert read(freezer, "freezer.state") == "THAWED"
    assert "container not paused" in fails(oci, "resume", running)


def test_pause_errors(oci, make_bundle, container_id):
    assert "container does not exist: nope" in fails(oci, "pause", "nope")
    assert "container does not exist: nope" in fails(oci, "resume", "nope")
    oci("run", "-d", "--bundle", make_bundle(args=["true"]), container_id)
    wait_stopped(oci, container_id)
    assert "container not running" in fails(oci, "pause", container_id)
    assert "container not paused" in fails(oci, "resume", container_id)


def test_delete_force_a_paused_container(oci, running):
    oci("pause", running)
    oci("delete", "--force", running)
    assert oci("list", "-q").stdout == ""


# ------------------------------------------------------------------ update

def test_update_flags(oci, running):
    memory = cgroup_dir(oci, running, "memory")
    pids = cgroup_dir(oci, running, "pids")
    cpu = cgroup_dir(oci, running, "cpu")
    oci("update", "--memory", "64m", running)
    assert read(memory, "memory.limit_in_bytes") == str(64 << 20)
    oci("update", "--pids-limit", "10", running)
    assert read(pids, "pids.max") == "10"
    assert read(memory, "memory.limit_in_bytes") == str(64 << 20)  # untouched by the 2nd call
    oci("update", "--cpu-period", "100000", "--cpu-quota", "50000", "--cpu-share", "512",
        "--memory-reservation", "32MiB", running)
    assert read(cpu, "cpu.cfs_quota_us") == "50000"
    assert read(cpu, "cpu.cfs_period_us") == "100000"
    assert read(cpu, "cpu.shares") == "512"
    assert read(memory, "memory.soft_limit_in_bytes") == str(32 << 20)
    oci("update", "--memory", "-1", running)
    assert int(read(memory, "memory.limit_in_bytes")) > 1 << 60
    # The config recorded in the container's state keeps what was set.
    resources = recorded(oci, running)["config"]["linux"]["resources"]
    assert resources["pids"] == {"limit": 10}
    assert resources["cpu"]["quota"] == 50000 and resources["memory"]["limit"] == -1


def test_update_resources_from_stdin_and_file(oci, running, tmp_path):
    memory = cgroup_dir(oci, running, "memory")
    pids = cgroup_dir(oci, running, "pids")
    doc = {"memory": {"limit": 48 << 20}, "pids": {"limit": 20}}
    oci("update", "--resources", "-", running, input=json.dumps(doc))
    assert read(memory, "memory.limit_in_bytes") == str(48 << 20)
    assert read(pids, "pids.max") == "20"
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"memory": {"limit": 40 << 20}, "pids": {"limit": 30}}))
    oci("update", "-r", path, "--pids-limit", "31", running)  # flags win over the file
    assert read(memory, "memory.limit_in_bytes") == str(40 << 20)
    assert read(pids, "pids.max") == "31"


def test_update_bad_input(oci, make_bundle, running, container_id):
    assert "flag provided but not defined: --memroy" in fails(oci, "update", "--memroy", "1m",
                                                              running)
    assert "invalid value for --memory: invalid size: '64q'" in fails(
        oci, "update", "--memory", "64q", running)
    assert "--cpu-period" in fails(oci, "update", "--cpu-period", "-1", running)
    assert "container does not exist: nope" in fails(oci, "update", "--memory", "1m", "nope")
    assert "not valid JSON" in fails(oci, "update", "-r", "-", running, input="{memory")
    assert "resources.memory.limit: must be an integer" in fails(
        oci, "update", "-r", "-", running, input='{"memory": {"limit": "1m"}}')
    assert "resources.memory: must be an object" in fails(
        oci, "update", "-r", "-", running, input='{"memory": 1}')
    assert "Intel RDT" in fails(oci, "update", "--l3-cache-schema", "L3:0=f", running)
    stopped = container_id + "-s"
    oci("run", "-d", "--bundle", make_bundle(args=["true"]), stopped)
    wait_stopped(oci, stopped)
    assert "container not running" in fails(oci, "update", "--memory", "64m", stopped)


# ------------------------------------------------------------------ events

def test_events_stats(oci, running):
    oci("update", "--memory", "64m", running)
    lines = oci("events", "--stats", running).stdout.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert list(event) == ["type", "id", "data"]
    assert event["type"] == "stats" and event["id"] == running
    memory = event["data"]["memory"]
    assert memory["usage"]["usage"] > 0 and memory["usage"]["limit"] == 64 << 20
    assert event["data"]["pids"]["current"] == 1
    assert event["data"]["cpu"]["usage"]["total"] > 0


@contextlib.contextmanager
def events_in_background(oci, *args):
    """`berth-oci events ARGS` running meanwhile: (Popen, stdout file, stderr file)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(oci.argv("events", *args), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=oci.env)
        try:
            yield proc, out, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _read(f):
    f.seek(0)
    return f.read().decode()


def test_events_stream_ends_when_the_container_stops(oci, running):
    with events_in_background(oci, "--interval", "100ms", running) as (proc, out, err):
        deadline = time.monotonic() + 30
        while _read(out).count("\n") < 2:  # two ticks: it keeps going
            assert proc.poll() is None, _read(err)
            assert time.monotonic() < deadline, "no stats events"
            time.sleep(0.05)
        oci("kill", running, "KILL")
        assert proc.wait(timeout=30) == 0, _read(err)
        events = [json.loads(line) for line in _read(out).splitlines()]
    assert {e["type"] for e in events} == {"stats"}
    assert all(e["id"] == running and "memory" in e["data"] for e in events)


def test_events_report_oom(oci, make_bundle, container_id):
    # A shell that fills a variable far beyond its 16 MiB limit is taken by the OOM killer.
    hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); sleep 1000"
    limits = {"memory": {"limit": 16 << 20, "swap": 16 << 20}}

    def mutate(config):
        config["linux"]["resources"] = {**config["linux"].get("resources", {}), **limits}

    oci("create", "--bundle", make_bundle(args=["sh", "-c", hog], mutate=mutate), container_id)
    with events_in_background(oci, "--interval", "1h", container_id) as (proc, out, err):
        oci("start", container_id)
        assert proc.wait(timeout=60) == 0, _read(err)
        events = [json.loads(line) for line in _read(out).splitlines()]
    assert {"type": "oom", "id": container_id} in events


def test_events_bad_input(oci, make_bundle, running, container_id):
    assert 'invalid value "5" for flag --interval: time: missing unit' in fails(
        oci, "events", "--interval", "5", running)
    assert "duration interval must be greater than 0" in fails(
        oci, "events", "--interval", "0s", running)
    assert "container does not exist: nope" in fails(oci, "events", "--stats", "nope")
    stopped = container_id + "-s"
    oci("run", "-d", "--bundle", make_bundle(args=["true"]), stopped)
    wait_stopped(oci, stopped)
    assert f"container with id {stopped} is not running" in fails(oci, "events", stopped)


# ------------------------------------------------------------------ spec and features

def test_spec_writes_a_valid_config_and_refuses_to_replace_it(oci, tmp_path):
    oci("spec", "--bundle", tmp_path)
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    Spec.from_json(config)
    assert config["root"]["path"] == "rootfs" and config["process"]["args"] == ["sh"]
    before = path.read_text()
    assert "config.json exists. Remove it first" in fails(oci, "spec", "-b", tmp_path)
    assert path.read_text() == before

    rootless = tmp_path / "rootless"
    rootless.mkdir()
    oci("spec", "--rootless", "--bundle", rootless)
    config = json.loads((rootless / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"]


def test_spec_in_the_current_directory(oci, tmp_path):
    proc = subprocess.run(oci.argv("spec"), cwd=tmp_path, env=oci.env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "config.json").read_text())["ociVersion"]
    proc = subprocess.run(oci.argv("spec"), cwd=tmp_path, env=oci.env, capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr == "berth-oci: File config.json exists. Remove it first\n"


def test_spec_bad_input(oci, tmp_path):
    assert "flag provided but not defined: --root-less" in fails(oci, "spec", "--root-less")
    assert "requires exactly 0 argument(s)" in fails(oci, "spec", "extra")
    assert "No such file or directory" in fails(oci, "spec", "-b", tmp_path / "missing")


def test_features(oci):
    doc = json.loads(oci("features").stdout)
    assert doc["ociVersionMax"] and "prestart" in doc["hooks"]
    assert "CAP_SYS_ADMIN" in doc["linux"]["capabilities"]
    assert "requires exactly 0 argument(s)" in fails(oci, "features", "x")


def test_help(oci):
    for verb in ("list", "ps", "pause", "resume", "update", "events", "spec", "features"):
        assert oci(verb, "--help").stdout.startswith("usage: berth-oci")
