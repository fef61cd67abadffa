"""berth.cgroups on the real kernel (root): v1 controllers, and the v2 driver on a cgroup2.

This host runs hybrid: v1 controllers under /sys/fs/cgroup/<controller> and a cgroup2 with
no controllers at /sys/fs/cgroup/unified. Every test cleans up its processes, cgroups and
mounts, even when it fails.
"""

import os
import shutil
import signal
import tempfile
import time

import pytest

from berth.cgroups import manager_for
from berth.sys import linux
from berth.spec.runtime import Resources

ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

needs_v1 = pytest.mark.skipif(not os.path.isdir(os.path.join(ROOT, "memory"))
                              or os.path.exists(os.path.join(ROOT, "cgroup.controllers")),
                              reason="needs cgroup v1 controllers")
needs_unified = pytest.mark.skipif(not os.path.exists(os.path.join(UNIFIED, "cgroup.controllers")),
                                   reason="needs a cgroup2 at /sys/fs/cgroup/unified")


def _sleeper():
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(120)
        finally:
            os._exit(0)
    return pid


def _reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _state(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("State:"):
                return line.split()[1]
    return ""


class _Cleanup:
    """Children to reap and cgroup directories to remove, in reverse order of adding."""

    def __init__(self):
        self.pids = []
        self.managers = []
        self.dirs = []

    def manager(self, name, root=ROOT):
        """A created manager for /berth-test-<pid>/<name>, removed again at teardown."""
        parent = _parent()
        m = manager_for(f"/{parent}/{name}", name, root=root)
        self.managers.append(m)
        if m.version == 1:
            self.dirs.extend(os.path.join(root, h, parent) for h in m.dirs)
        else:
            self.dirs.append(os.path.join(root, parent))
        m.create()
        return m

    def run(self):
        for pid in self.pids:
            _reap(pid)
        for m in self.managers:
            try:
                if m.frozen():
                    m.thaw()
            except Exception:
                pass
            m.destroy()
        for d in reversed(self.dirs):
            if os.path.isdir(d):
                os.rmdir(d)


@pytest.fixture
def cleanup():
    c = _Cleanup()
    yield c
    c.run()


def _parent():
    return f"berth-test-{os.getpid()}"


@needs_v1
def test_v1_lifecycle(cleanup):
    m = cleanup.manager("v1")
    assert m.exists()
    m.set(Resources.from_json({"memory": {"limit": 64 * 2**20}, "pids": {"limit": 16},
                               "cpu": {"shares": 512, "quota": 50000, "period": 100000}}))
    with open(os.path.join(m.dirs["memory"], "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 64 * 2**20
    with open(os.path.join(m.dirs["pids"], "pids.max")) as f:
        assert f.read().strip() == "16"

    pid = _sleeper()
    cleanup.pids.append(pid)
    m.apply(pid)
    assert m.pids() == [pid]

    m.freeze()
    assert m.frozen()
    with open(os.path.join(m.dirs["freezer"], "freezer.state")) as f:
        assert f.read().strip() == "FROZEN"
    m.thaw()
    assert not m.frozen()
    assert _state(pid) in ("S", "R")

    stats = m.stats()
    assert isinstance(stats["cpu"]["usage"]["total"], int)
    assert stats["memory"]["usage"]["limit"] == 64 * 2**20
    assert stats["pids"] == {"current": 1, "limit": 16}
    assert m.oom_kill_count() == 0
    assert [dest for _src, dest in m.container_mounts()] == sorted(m.dirs)

    m.kill_all(signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    m.destroy()
    assert not m.exists()
    assert not any(os.path.exists(d) for d in m.dirs.values())


@needs_v1
def test_v1_refused_value_is_invalid_argument(cleanup):
    from berth.errors import InvalidArgument

    m = cleanup.manager("bad")
    with pytest.raises(InvalidArgument, match="linux.resources.cpu.cpus: cannot write "
                                              "999999 to cpuset.cpus"):
        m.set(Resources.from_json({"cpu": {"cpus": "999999"}}))


@needs_v1
def test_v1_devices_rules(cleanup):
    m = cleanup.manager("dev")
    m.set(Resources.from_json({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "access": "rw"}]}))
    with open(os.path.join(m.dirs["devices"], "devices.list")) as f:
        assert f.read().split("\n")[:2] == ["c 1:3 rwm", "c 136:* rw"]


def _v2_lifecycle(root, cleanup, name):
    m = cleanup.manager(name, root)
    assert m.version == 2
    assert m.exists()
    pid = _sleeper()
    cleanup.pids.append(pid)
    m.apply(pid)
    assert m.pids() == [pid]

    m.freeze()
    assert m.frozen()
    with open(os.path.join(m.dir, "cgroup.events")) as f:
        assert "frozen 1" in f.read().splitlines()
    m.thaw()
    assert not m.frozen()

    stats = m.stats()
    assert stats["cpu"]["usage"]["total"] >= 0
    m.set(Resources.from_json({"unified": {"cgroup.max.descendants": "3"}}))
    with open(os.path.join(m.dir, "cgroup.max.descendants")) as f:
        assert f.read().strip() == "3"
    assert m.container_mounts() == [(m.dir, "")]

    m.kill_all(signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    m.destroy()
    assert not m.exists()


@pytest.fixture
def restore_subtree_control():
    """create() hands the root's controllers down; put the root back as it was."""
    path = os.path.join(UNIFIED, "cgroup.subtree_control")
    with open(path) as f:
        before = set(f.read().split())
    yield
    with open(path) as f:
        after = set(f.read().split())
    for name in after - before:
        with open(path, "w") as f:
            f.write(f"-{name}")


@needs_unified
def test_v2_on_the_hybrid_unified_mount(restore_subtree_control, cleanup):
    _v2_lifecycle(UNIFIED, cleanup, "v2")


@needs_unified
def test_v2_kill_all_with_a_plain_signal(restore_subtree_control, cleanup):
    m = cleanup.manager("term", UNIFIED)
    pid = _sleeper()
    cleanup.pids.append(pid)
    m.apply(pid)
    m.kill_all(signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert not m.frozen()


@pytest.fixture
def fresh_cgroup2(restore_subtree_control):
    target = tempfile.mkdtemp(prefix="berth-cg2-")
    try:
        linux.mount("none", target, "cgroup2")
    except OSError as err:
        os.rmdir(target)
        pytest.skip(f"cannot mount cgroup2: {err}")
    try:
        yield target
    finally:
        linux.umount(target)
        shutil.rmtree(target, ignore_errors=True)


@needs_unified
def test_v2_on_a_fresh_cgroup2_mount(fresh_cgroup2, cleanup):
    # The same hierarchy as /sys/fs/cgroup/unified, reached through another mount.
    _v2_lifecycle(fresh_cgroup2, cleanup, "fresh")


def _probe_in(m, paths):
    """Fork a child into ``m`` that opens each (path, flags); returns the errnos (0: opened)."""
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(out_r)
            os.read(go_r, 1)
            results = []
            for path, flags in paths:
                try:
                    os.close(os.open(path, flags))
                    results.append("0")
                except OSError as err:
                    results.append(str(err.errno))
            os.write(out_w, " ".join(results).encode())
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(out_w)
    try:
        m.apply(pid)
        os.write(go_w, b"x")
        with os.fdopen(out_r, "rb") as f:
            text = f.read().decode()
    finally:
        os.close(go_w)
        _reap(pid)
    return [int(x) for x in text.split()]


@needs_unified
def test_v2_device_rules_are_enforced(restore_subtree_control, cleanup):
    import errno

    m = cleanup.manager("devices", UNIFIED)
    m.set(Resources.from_json({"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]}))
    assert _probe_in(m, [("/dev/null", os.O_WRONLY), ("/dev/zero", os.O_RDONLY),
                         ("/dev/zero", os.O_WRONLY), ("/dev/full", os.O_RDONLY)]) == [
        0, 0, errno.EPERM, errno.EPERM]
    # set again: the program is replaced, not stacked
    m.set(Resources.from_json({"devices": [{"allow": True, "access": "rwm"}]}))
    assert _probe_in(m, [("/dev/full", os.O_RDONLY), ("/dev/zero", os.O_WRONLY)]) == [0, 0]
