"""berth.cgroups against fake cgroup trees under tmp_path: paths, limits, conversions, errors."""

import errno
import os

import pytest

from berth.cgroups import _fs, manager_for, own_cgroups, resolve_path
from berth.cgroups import v1, v2
from berth.errors import InvalidArgument, PermissionDenied, Unsupported
from berth.spec.runtime import DeviceRule, Resources

V1_CONTROLLERS = ("blkio", "cpu,cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
                  "net_cls", "net_prio", "pids")

V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
               "memory.soft_limit_in_bytes", "memory.kmem.tcp.limit_in_bytes",
               "memory.swappiness", "memory.oom_control", "memory.use_hierarchy"],
    "cpu,cpuacct": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_burst_us",
                    "cpu.rt_period_us", "cpu.rt_runtime_us", "cpu.idle"],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "pids": ["pids.max"],
    "blkio": ["blkio.weight", "blkio.weight_device", "blkio.leaf_weight",
              "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
              "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"],
    "hugetlb": ["hugetlb.2MB.limit_in_bytes"],
    "net_cls": ["net_cls.classid"],
    "net_prio": ["net_prio.ifpriomap"],
    "devices": ["devices.allow", "devices.deny"],
    "freezer": ["freezer.state"],
}

FULL = {
    "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200,
               "kernelTCP": 1048576, "swappiness": 10, "disableOOMKiller": True},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000,
            "realtimeRuntime": 950, "realtimePeriod": 1000, "cpus": "0-1", "mems": "0",
            "idle": 0},
    "pids": {"limit": 32},
    "blockIO": {"weight": 500, "leafWeight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 600}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rw"},
                {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"}],
}


def touch(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def content(path):
    with open(path) as f:
        return f.read()


@pytest.fixture
def writes(monkeypatch):
    """Every control-file write as (file name, value), in order."""
    seen = []
    real = _fs.write

    def record(directory, name, value, field):
        seen.append((name, str(value)))
        real(directory, name, value, field)

    monkeypatch.setattr(_fs, "write", record)
    return seen


@pytest.fixture
def self_cgroup(tmp_path):
    path = tmp_path / "self_cgroup"
    path.write_text("9:name=systemd:/\n5:devices:/\n4:memory:/sandbox/me\n"
                    "2:cpu,cpuacct:/\n0::/user.slice/me\n")
    return str(path)


def fake_v1(tmp_path, leaf="/berth-oci/c1"):
    root = tmp_path / "cgroup"
    for name in V1_CONTROLLERS:
        touch(str(root / name / "cgroup.procs"))
        for file in V1_FILES.get(name, ()):
            touch(str(root / name / leaf.lstrip("/") / file))
        touch(str(root / name / leaf.lstrip("/") / "cgroup.procs"))
    touch(str(root / "cpuset" / "cpuset.cpus"), "0-3\n")
    touch(str(root / "cpuset" / "cpuset.mems"), "0\n")
    touch(str(root / "cpuset" / "berth-oci" / "cpuset.cpus"))
    touch(str(root / "cpuset" / "berth-oci" / "cpuset.mems"))
    touch(str(root / "systemd" / "cgroup.procs"))
    touch(str(root / "unified" / "cgroup.controllers"))
    os.symlink("cpu,cpuacct", root / "cpu")
    return str(root)


V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma"
V2_FILES = ["cgroup.procs", "cgroup.freeze", "cgroup.kill", "cgroup.subtree_control",
            "memory.max", "memory.low", "memory.high", "memory.swap.max", "cpu.weight", "cpu.max",
            "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems", "pids.max",
            "io.weight", "io.max", "hugetlb.2MB.max", "rdma.max"]


def fake_v2(tmp_path, leaf="/berth-oci/c1"):
    root = tmp_path / "unified"
    touch(str(root / "cgroup.controllers"), V2_CONTROLLERS + "\n")
    touch(str(root / "cgroup.subtree_control"))
    touch(str(root / "berth-oci" / "cgroup.controllers"), V2_CONTROLLERS + "\n")
    touch(str(root / "berth-oci" / "cgroup.subtree_control"))
    d = root / leaf.lstrip("/")
    touch(str(d / "cgroup.controllers"), V2_CONTROLLERS + "\n")
    for name in V2_FILES:
        touch(str(d / name))
    return str(root)


# ---------------------------------------------------------------- paths

def test_resolve_path_forms():
    assert resolve_path("", "abc") == "/berth-oci/abc"
    assert resolve_path("/a/b/../c/", "abc") == "/a/c"
    assert resolve_path("sub/x", "abc", "/user.slice/me") == "/user.slice/me/sub/x"
    assert resolve_path("x", "abc", "/") == "/x"


def test_resolve_path_refuses_the_root_cgroup():
    with pytest.raises(InvalidArgument, match="linux.cgroupsPath: '/' names the root cgroup"):
        resolve_path("/", "abc")
    with pytest.raises(InvalidArgument):
        resolve_path("/a/..", "abc")


def test_own_cgroups_parses_v1_and_v2_lines(self_cgroup):
    own = own_cgroups(self_cgroup)
    assert own["memory"] == "/sandbox/me"
    assert own["cpu"] == own["cpuacct"] == "/"
    assert own["name=systemd"] == "/"
    assert own[""] == "/user.slice/me"


def test_v1_detected_and_hierarchies_listed(tmp_path, self_cgroup):
    root = fake_v1(tmp_path)
    m = manager_for("", "c1", root=root, self_cgroup=self_cgroup)
    assert isinstance(m, v1.V1Manager)
    assert m.version == 1
    assert m.path == "/berth-oci/c1"
    assert sorted(m.dirs) == sorted(V1_CONTROLLERS)  # no systemd, unified or cpu symlink
    assert m.dirs["memory"] == os.path.join(root, "memory/berth-oci/c1")
    assert m.container_mounts()[0] == (os.path.join(root, "blkio/berth-oci/c1"), "blkio")


def test_v1_relative_path_is_per_controller(tmp_path, self_cgroup):
    root = fake_v1(tmp_path)
    m = manager_for("ctr/one", "c1", root=root, self_cgroup=self_cgroup)
    assert m.dirs["memory"] == os.path.join(root, "memory/sandbox/me/ctr/one")
    assert m.dirs["devices"] == os.path.join(root, "devices/ctr/one")
    assert m.path == "/ctr/one"


def test_v2_detected_and_relative_path(tmp_path, self_cgroup):
    root = fake_v2(tmp_path)
    m = manager_for("ctr", "c1", root=root, self_cgroup=self_cgroup)
    assert isinstance(m, v2.V2Manager)
    assert m.path == "/user.slice/me/ctr"
    assert m.container_mounts() == [(os.path.join(root, "user.slice/me/ctr"), "")]
    absolute = manager_for("/a/b", "c1", root=root, self_cgroup=self_cgroup)
    assert absolute.dir == os.path.join(root, "a/b")


def test_systemd_driver_is_unsupported(tmp_path):
    with pytest.raises(Unsupported, match="systemd cgroup driver"):
        manager_for("system.slice:berth:c1", "c1", root=str(tmp_path), systemd=True)
    if not os.path.isdir("/run/systemd/system"):
        with pytest.raises(Unsupported, match="systemd is not running on this host"):
            manager_for("system.slice:berth:c1", "c1", root=str(tmp_path), systemd=True)


# ---------------------------------------------------------------- v1 limits

def test_v1_create_copies_cpuset_from_parent(tmp_path):
    root = fake_v1(tmp_path)
    m = manager_for("", "c1", root=root)
    m.create()
    leaf = m.dirs["cpuset"]
    assert content(os.path.join(leaf, "cpuset.cpus")) == "0-3"
    assert content(os.path.join(leaf, "cpuset.mems")) == "0"
    assert content(os.path.join(root, "cpuset/berth-oci/cpuset.cpus")) == "0-3"


def test_v1_set_full_resources(tmp_path, writes):
    root = fake_v1(tmp_path)
    m = manager_for("", "c1", root=root)
    m.set(Resources.from_json(FULL))

    def f(controller, name):
        return content(os.path.join(m.dirs[controller], name))

    assert f("memory", "memory.limit_in_bytes") == "104857600"
    assert f("memory", "memory.memsw.limit_in_bytes") == "209715200"
    assert f("memory", "memory.soft_limit_in_bytes") == "52428800"
    assert f("memory", "memory.kmem.tcp.limit_in_bytes") == "1048576"
    assert f("memory", "memory.swappiness") == "10"
    assert f("memory", "memory.oom_control") == "1"
    assert f("cpu,cpuacct", "cpu.shares") == "1024"
    assert f("cpu,cpuacct", "cpu.cfs_quota_us") == "50000"
    assert f("cpu,cpuacct", "cpu.cfs_period_us") == "100000"
    assert f("cpu,cpuacct", "cpu.cfs_burst_us") == "1000"
    assert f("cpu,cpuacct", "cpu.rt_runtime_us") == "950"
    assert f("cpu,cpuacct", "cpu.rt_period_us") == "1000"
    assert f("cpu,cpuacct", "cpu.idle") == "0"
    assert f("cpuset", "cpuset.cpus") == "0-1"
    assert f("cpuset", "cpuset.mems") == "0"
    assert f("pids", "pids.max") == "32"
    assert f("blkio", "blkio.weight") == "500"
    assert f("blkio", "blkio.leaf_weight") == "300"
    assert f("blkio", "blkio.weight_device") == "8:0 600"
    assert f("blkio", "blkio.throttle.read_bps_device") == "8:0 1000"
    assert f("blkio", "blkio.throttle.write_bps_device") == "8:0 2000"
    assert f("blkio", "blkio.throttle.read_iops_device") == "8:0 30"
    assert f("blkio", "blkio.throttle.write_iops_device") == "8:0 40"
    assert f("hugetlb", "hugetlb.2MB.limit_in_bytes") == "2097152"
    assert f("net_cls", "net_cls.classid") == "1048577"
    assert f("net_prio", "net_prio.ifpriomap") == "eth0 5"
    # period before quota, so the new quota is judged against the new period
    order = [name for name, _ in writes]
    assert order.index("cpu.cfs_period_us") < order.index("cpu.cfs_quota_us")
    devices = [(n, v) for n, v in writes if n.startswith("devices.")]
    assert devices == [("devices.deny", "a"), ("devices.deny", "a"),
                       ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 136:* rw"),
                       ("devices.deny", "b 8:0 w")]


@pytest.mark.parametrize("current, order", [
    ("1000", ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]),    # raising
    ("100000", ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]),  # lowering
])
def test_v1_memory_and_swap_order(tmp_path, writes, current, order):
    # memory+swap must stay >= memory at every step
    root = fake_v1(tmp_path)
    m = manager_for("", "c1", root=root)
    touch(os.path.join(m.dirs["memory"], "memory.limit_in_bytes"), current + "\n")
    m.set(Resources.from_json({"memory": {"limit": 4096, "swap": 8192}}))
    assert [n for n, _ in writes] == order


def test_v1_unlimited_memory_means_unlimited_swap(tmp_path, writes):
    m = manager_for("", "c1", root=fake_v1(tmp_path))
    m.set(Resources.from_json({"memory": {"limit": -1}}))
    assert writes == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_v1_pids_unlimited(tmp_path):
    m = manager_for("", "c1", root=fake_v1(tmp_path))
    m.set(Resources.from_json({"pids": {"limit": -1}}))
    assert content(os.path.join(m.dirs["pids"], "pids.max")) == "max"
    m.set(Resources.from_json({"pids": {"limit": 0}}))
    assert content(os.path.join(m.dirs["pids"], "pids.max")) == "max"


def test_v1_refuses_unified_keys(tmp_path):
    m = manager_for("", "c1", root=fake_v1(tmp_path))
    with pytest.raises(InvalidArgument) as err:
        m.set(Resources.from_json({"unified": {"memory.high": "1G"}}))
    assert str(err.value) == ("linux.resources.unified: cgroup v2 keys need a cgroup v2 host")


def test_v1_missing_controller_is_unsupported(tmp_path):
    root = tmp_path / "cgroup"
    touch(str(root / "memory" / "cgroup.procs"))
    m = manager_for("", "c1", root=str(root))
    with pytest.raises(Unsupported, match="linux.resources.pids.limit: the pids cgroup "
                                          "controller is not mounted"):
        m.set(Resources.from_json({"pids": {"limit": 5}}))
    with pytest.raises(Unsupported, match="hugepageLimits\\[0\\]: the hugetlb"):
        m.set(Resources.from_json({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}))


def test_v1_unknown_page_size_is_unsupported(tmp_path):
    m = manager_for("", "c1", root=fake_v1(tmp_path))
    with pytest.raises(Unsupported, match="hugetlb.3MB.limit_in_bytes does not exist"):
        m.set(Resources.from_json({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}))


def test_v1_refused_value_names_field_and_file(tmp_path):
    m = manager_for("", "c1", root=fake_v1(tmp_path))
    target = os.path.join(m.dirs["memory"], "memory.limit_in_bytes")
    os.remove(target)
    os.mkdir(target)  # open(O_WRONLY) on a directory: EISDIR
    with pytest.raises(InvalidArgument) as err:
        m.set(Resources.from_json({"memory": {"limit": 10}}))
    assert str(err.value) == ("linux.resources.memory.limit: cannot write 10 to "
                              "memory.limit_in_bytes: Is a directory")


def test_write_error_wording():
    err = _fs._write_error(OSError(errno.EBUSY, "busy"), "linux.resources.memory.limit", 10,
                           "memory.limit_in_bytes")
    assert isinstance(err, InvalidArgument)
    assert str(err) == ("linux.resources.memory.limit: cannot write 10 to "
                        "memory.limit_in_bytes: Device or resource busy")
    err = _fs._write_error(OSError(errno.EPERM, "no"), "f", 1, "devices.allow")
    assert isinstance(err, PermissionDenied)


def test_device_rule_lines():
    assert v1.device_rule_lines(DeviceRule(allow=False)) == ["a"]
    assert v1.device_rule_lines(DeviceRule(allow=True, type="c", major=1, minor=-1,
                                           access="r")) == ["c 1:* r"]
    assert v1.device_rule_lines(DeviceRule(allow=True, type="a", major=5, minor=1)) == [
        "c 5:1 rwm", "b 5:1 rwm"]


def test_v1_stats_and_oom_count(tmp_path):
    root = fake_v1(tmp_path)
    m = manager_for("", "c1", root=root)
    mem = m.dirs["memory"]
    touch(os.path.join(mem, "memory.usage_in_bytes"), "4096\n")
    touch(os.path.join(mem, "memory.max_usage_in_bytes"), "8192\n")
    touch(os.path.join(mem, "memory.failcnt"), "2\n")
    touch(os.path.join(mem, "memory.limit_in_bytes"), "104857600\n")
    touch(os.path.join(mem, "memory.stat"), "cache 10\nrss 20\ntotal_cache 30\n")
    touch(os.path.join(mem, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\n"
                                                   "oom_kill 3\n")
    cpu = m.dirs["cpu,cpuacct"]
    touch(os.path.join(cpu, "cpuacct.usage"), "123456\n")
    touch(os.path.join(cpu, "cpuacct.usage_percpu"), "100000 23456 \n")
    touch(os.path.join(cpu, "cpuacct.stat"), "user 3\nsystem 1\n")
    touch(os.path.join(cpu, "cpu.stat"), "nr_periods 10\nnr_throttled 2\nthrottled_time 99\n")
    touch(os.path.join(m.dirs["pids"], "pids.current"), "4\n")
    touch(os.path.join(m.dirs["pids"], "pids.max"), "max\n")
    touch(os.path.join(m.dirs["blkio"], "blkio.throttle.io_service_bytes_recursive"),
          "8:0 Read 512\n8:0 Write 1024\nTotal 1536\n")
    touch(os.path.join(m.dirs["hugetlb"], "hugetlb.2MB.usage_in_bytes"), "0\n")
    stats = m.stats()
    hz = os.sysconf("SC_CLK_TCK")
    assert stats["cpu"]["usage"] == {"total": 123456, "percpu": [100000, 23456],
                                     "kernel": 1_000_000_000 // hz,
                                     "user": 3_000_000_000 // hz}
    assert stats["cpu"]["throttling"] == {"periods": 10, "throttled_periods": 2,
                                          "throttled_time": 99}
    assert stats["memory"]["usage"] == {"usage": 4096, "max": 8192, "failcnt": 2,
                                        "limit": 104857600}
    assert stats["memory"]["cache"] == 30
    assert stats["memory"]["raw"]["rss"] == 20
    assert stats["pids"] == {"current": 4, "limit": 0}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 512},
        {"major": 8, "minor": 0, "op": "Write", "value": 1024}]
    assert stats["hugetlb"] == {"2MB": {"usage": 0, "max": 0, "failcnt": 0}}
    assert m.oom_kill_count() == 3


def test_v1_pids_from_subcgroups(tmp_path):
    m = manager_for("", "c1", root=fake_v1(tmp_path))
    touch(os.path.join(m.dirs["pids"], "cgroup.procs"), "10\n11\n")
    touch(os.path.join(m.dirs["pids"], "sub", "cgroup.procs"), "12\n")
    assert sorted(m.pids()) == [10, 11, 12]


# ---------------------------------------------------------------- v2

def test_shares_to_weight():
    assert v2.shares_to_weight(2) == 1
    assert v2.shares_to_weight(1024) == 39
    assert v2.shares_to_weight(262144) == 10000
    assert v2.shares_to_weight(0) == 0
    assert v2.shares_to_weight(None) == 0


def test_cpu_max():
    assert v2.cpu_max(50000, 100000) == "50000 100000"
    assert v2.cpu_max(-1, 100000) == "max 100000"
    assert v2.cpu_max(50000, None) == "50000"
    assert v2.cpu_max(None, 250000) == "max 250000"
    assert v2.cpu_max(None, None) is None


def test_swap_max():
    assert v2.swap_max(200, 100) == 100
    assert v2.swap_max(100, 100) == 0
    assert v2.swap_max(-1, 100) == "max"
    assert v2.swap_max(None, 100) is None
    with pytest.raises(InvalidArgument, match="memory.swap: memory\\+swap \\(50\\) must not "
                                              "be below the memory limit \\(100\\)"):
        v2.swap_max(50, 100)
    with pytest.raises(InvalidArgument, match="needs a memory limit"):
        v2.swap_max(100, None)


def test_blkio_weight_to_io():
    assert v2.blkio_weight_to_io(10) == 1
    assert v2.blkio_weight_to_io(1000) == 10000
    assert v2.blkio_weight_to_io(500) == 1 + (490 * 9999) // 990


def test_v2_set_full_resources(tmp_path, writes, monkeypatch):
    from berth.sys import bpf
    attached = []
    monkeypatch.setattr(bpf, "attach_device_program", lambda d, insns: attached.append(d))
    root = fake_v2(tmp_path)
    m = manager_for("", "c1", root=root)
    full = dict(FULL)
    full["cpu"] = {k: v for k, v in FULL["cpu"].items() if not k.startswith("realtime")}
    full.pop("network")
    full["rdma"] = {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}
    full["unified"] = {"memory.high": "90000000", "io.max": "8:16 rbps=5"}
    m.set(Resources.from_json(full))

    def f(name):
        return content(os.path.join(m.dir, name))

    assert f("memory.max") == "104857600"
    assert f("memory.low") == "52428800"
    assert f("memory.swap.max") == str(209715200 - 104857600)
    assert f("cpu.weight") == "39"
    assert f("cpu.max") == "50000 100000"
    assert f("cpu.max.burst") == "1000"
    assert f("cpu.idle") == "0"
    assert f("cpuset.cpus") == "0-1"
    assert f("pids.max") == "32"
    assert f("hugetlb.2MB.max") == "2097152"
    assert f("rdma.max") == "mlx5_1 hca_handle=3 hca_object=10000"
    assert f("memory.high") == "90000000"
    io = [v for n, v in writes if n in ("io.weight", "io.max")]
    assert io == [f"default {v2.blkio_weight_to_io(500)}",
                  f"8:0 {v2.blkio_weight_to_io(600)}",
                  "8:0 rbps=1000", "8:0 wbps=2000", "8:0 riops=30", "8:0 wiops=40",
                  "8:16 rbps=5"]
    # device rules are an eBPF program on v2, not files
    assert not any(n.startswith("devices.") for n, _ in writes)
    assert attached == [m.dir]


def test_v2_unlimited_values(tmp_path):
    m = manager_for("", "c1", root=fake_v2(tmp_path))
    m.set(Resources.from_json({"memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1},
                               "cpu": {"quota": -1, "period": 100000}}))
    assert content(os.path.join(m.dir, "memory.max")) == "max"
    assert content(os.path.join(m.dir, "memory.swap.max")) == "max"
    assert content(os.path.join(m.dir, "pids.max")) == "max"
    assert content(os.path.join(m.dir, "cpu.max")) == "max 100000"


def test_v2_refusals(tmp_path):
    m = manager_for("", "c1", root=fake_v2(tmp_path))
    with pytest.raises(Unsupported, match="realtime"):
        m.set(Resources.from_json({"cpu": {"realtimeRuntime": 10}}))
    with pytest.raises(Unsupported, match="net_cls"):
        m.set(Resources.from_json({"network": {"classID": 1}}))
    with pytest.raises(InvalidArgument, match="unified.../etc: not a cgroup file name"):
        m.set(Resources.from_json({"unified": {"../etc": "1"}}))
    with pytest.raises(Unsupported, match="linux.resources.unified.memory.nope: memory.nope "
                                          "does not exist"):
        m.set(Resources.from_json({"unified": {"memory.nope": "1"}}))


def test_v2_missing_controller_is_unsupported(tmp_path):
    root = fake_v2(tmp_path)
    m = manager_for("", "c1", root=root)
    touch(os.path.join(m.dir, "cgroup.controllers"), "cpu\n")
    with pytest.raises(Unsupported, match="linux.resources.memory: the memory cgroup "
                                          "controller is not enabled"):
        m.set(Resources.from_json({"memory": {"limit": 100}}))


def test_v2_create_enables_parent_controllers(tmp_path, writes):
    root = fake_v2(tmp_path)
    touch(os.path.join(root, "cgroup.controllers"), "cpu memory\n")
    touch(os.path.join(root, "berth-oci", "cgroup.controllers"), "memory\n")
    touch(os.path.join(root, "berth-oci", "cgroup.subtree_control"), "memory\n")
    m = manager_for("", "c1", root=root)
    m.create()
    assert writes == [("cgroup.subtree_control", "+cpu"), ("cgroup.subtree_control", "+memory")]


def test_v2_stats_and_oom_count(tmp_path):
    m = manager_for("", "c1", root=fake_v2(tmp_path))
    touch(os.path.join(m.dir, "cpu.stat"), "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"
                                           "nr_periods 3\nnr_throttled 1\nthrottled_usec 7\n")
    touch(os.path.join(m.dir, "memory.current"), "4096\n")
    touch(os.path.join(m.dir, "memory.max"), "max\n")
    touch(os.path.join(m.dir, "memory.stat"), "anon 100\nfile 200\n")
    touch(os.path.join(m.dir, "memory.events"), "low 0\nhigh 0\nmax 5\noom 1\noom_kill 2\n")
    touch(os.path.join(m.dir, "pids.current"), "3\n")
    touch(os.path.join(m.dir, "pids.max"), "64\n")
    touch(os.path.join(m.dir, "io.stat"), "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0\n")
    stats = m.stats()
    assert stats["cpu"]["usage"] == {"total": 10000, "percpu": [], "kernel": 4000,
                                     "user": 6000}
    assert stats["cpu"]["throttling"]["throttled_time"] == 7000
    assert stats["memory"]["usage"]["usage"] == 4096
    assert stats["memory"]["usage"]["limit"] == 2**64 - 1
    assert stats["memory"]["usage"]["failcnt"] == 5
    assert stats["memory"]["cache"] == 200
    assert stats["pids"] == {"current": 3, "limit": 64}
    assert stats["blkio"]["ioServicedRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1},
        {"major": 8, "minor": 0, "op": "Write", "value": 2}]
    assert m.oom_kill_count() == 2


def test_manager_base_is_abstract():
    from berth.cgroups import Manager
    with pytest.raises(NotImplementedError):
        Manager().pids()


def test_hot_path_imports_stay_light():
    import subprocess
    import sys
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    code = ("import sys; sys.path.insert(0, %r); import berth.cgroups.v1, berth.cgroups.v2; "
            "bad = {'re', 'enum', 'json', 'signal', 'socket', 'dataclasses', 'typing', "
            "'subprocess', 'logging', 'pathlib', 'inspect', 'collections'} & set(sys.modules);"
            "print(sorted(bad))" % src)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
