"""berth.spec.validate: one good config, then one bad field at a time."""

import copy
import os

import pytest

from berth.errors import InvalidArgument, Unsupported
from berth.spec.runtime import Spec
from berth.spec.validate import CHECKS, Host, validate, validate_id

NO_LSM = Host(has_apparmor=False, has_selinux=False)


def base_config():
    return {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
        },
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100",
                       "fs.mqueue.msg_max": "10"},
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "cgroupsPath": "/berth/box",
        },
    }


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def run(raw, bundle, host=NO_LSM, container_id="box"):
    validate(Spec.from_json(raw), bundle, container_id, host=host)


def set_path(raw, path, value):
    """Set raw[a][b]... for a dotted path whose parts may be list indexes; None deletes."""
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        node.pop(last, None)
    else:
        node[last] = value


def test_base_config_is_valid(bundle):
    run(base_config(), bundle)


# (field to change, new value, the start of the expected message)
BAD = [
    ("ociVersion", "2.0.0", "ociVersion: 2.0.0 is not supported (berth runs 1.x configs)"),
    ("ociVersion", "", "ociVersion: is required"),
    ("root.path", "missing", "root.path: {bundle}/missing does not exist"),
    ("root.path", "/no/such/rootfs", "root.path: /no/such/rootfs does not exist"),
    ("process", None, "process: is required"),
    ("process.args", [], "process.args: must not be empty"),
    ("process.args", ["sh", "a\0b"], "process.args[1]: must not contain a NUL byte"),
    ("process.cwd", "tmp", "process.cwd: must be an absolute path"),
    ("process.env", ["PATH=/bin", "NOEQUALS"], "process.env[1]: 'NOEQUALS' is not KEY=VALUE"),
    ("process.env", ["=x"], "process.env[0]: the variable name must not be empty"),
    ("linux.namespaces", [{"type": "pid"}, {"type": "bogus"}],
     "linux.namespaces[1].type: unknown namespace type 'bogus'"),
    ("linux.namespaces", [{"type": "pid"}, {"type": "uts"}, {"type": "pid"}],
     "linux.namespaces[2].type: duplicate pid namespace"),
    ("linux.namespaces", [{"type": "uts"}, {"type": "pid", "path": "/no/such/ns"}],
     "linux.namespaces[1].path: /no/such/ns does not exist"),
    ("linux.namespaces", [{"type": "uts"}, {"type": "pid", "path": "proc/1/ns/pid"}],
     "linux.namespaces[1].path: must be an absolute path"),
    ("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}],
     "linux.uidMappings: needs a new user namespace"),
    ("linux.namespaces", [{"type": "uts"}, {"type": "user"}],
     "linux.uidMappings: a new user namespace needs mappings"),
    ("process.capabilities.bounding", ["CAP_KILL", "CAP_CHOWN", "CAP_FOO"],
     "process.capabilities.bounding[2]: unknown capability CAP_FOO"),
    ("process.capabilities.ambient", ["cap_kill"],
     "process.capabilities.ambient[0]: unknown capability cap_kill"),
    ("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}],
     "process.rlimits[0].type: unknown rlimit RLIMIT_BOGUS"),
    ("process.rlimits", [{"type": "RLIMIT_CORE", "soft": 10, "hard": 5}],
     "process.rlimits[0].soft: 10 is above the hard limit 5"),
    ("process.rlimits", [{"type": "RLIMIT_CORE", "soft": 1, "hard": 5},
                         {"type": "RLIMIT_CORE", "soft": 1, "hard": 5}],
     "process.rlimits[1].type: duplicate RLIMIT_CORE"),
    ("linux.namespaces", [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}],
     "hostname: needs a new uts namespace"),
    ("linux.namespaces", [{"type": "uts"}, {"type": "ipc"}],
     "linux.sysctl.net.ipv4.ip_forward: needs a network namespace of its own"),
    ("linux.sysctl", {"vm.swappiness": "10"},
     "linux.sysctl.vm.swappiness: is not namespaced: setting it would change the host"),
    ("linux.sysctl", {"net..x": "1"}, "linux.sysctl.net..x: is not a valid sysctl name"),
    ("mounts", [{"destination": "/data", "type": "bind", "options": ["rbind"]}],
     "mounts[0].source: a bind mount needs a source"),
    ("mounts", [{"destination": "/data", "source": "/tmp", "options": ["bind"]},
                {"destination": "/x", "source": "x"}],
     "mounts[1].type: is required unless the mount is a bind mount"),
    ("mounts", [{"destination": "/d", "type": "bind", "source": "/tmp",
                 "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}],
     "mounts[0].uidMappings: an idmapped mount needs both uid and gid mappings"),
    ("linux.devices", [{"type": "x", "path": "/dev/x", "major": 1, "minor": 1}],
     "linux.devices[0].type: must be one of c, b, u, p, not 'x'"),
    ("linux.devices", [{"type": "p", "path": "dev/fifo"}],
     "linux.devices[0].path: must be an absolute path"),
    ("linux.resources.devices", [{"allow": True, "type": "c", "access": "rwx"}],
     "linux.resources.devices[0].access: must be made of r, w and m, not 'rwx'"),
    ("linux.resources.devices", [{"allow": True, "type": "p", "access": "r"}],
     "linux.resources.devices[0].type: must be a, c or b, not 'p'"),
    ("linux.rootfsPropagation", "sideways",
     "linux.rootfsPropagation: unknown propagation 'sideways'"),
    ("linux.maskedPaths", ["/proc/kcore", "proc/keys"],
     "linux.maskedPaths[1]: must be an absolute path"),
    ("linux.readonlyPaths", ["sys"], "linux.readonlyPaths[0]: must be an absolute path"),
    ("linux.cgroupsPath", "berth/../../escape", "linux.cgroupsPath: must not contain '..'"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_BOGUS"},
     "linux.seccomp.defaultAction: unknown action SCMP_ACT_BOGUS"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
     "linux.seccomp.architectures[0]: unknown architecture SCMP_ARCH_Z80"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]},
     "linux.seccomp.flags[0]: unknown flag SECCOMP_FILTER_FLAG_X"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOPE"}]},
     "linux.seccomp.syscalls[0].action: unknown action SCMP_ACT_NOPE"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
     "linux.seccomp.syscalls[0].names: must not be empty"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "linux.seccomp.syscalls[0].args[0].op: unknown operator SCMP_CMP_ABOUT"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.listenerPath: is required when an action is SCMP_ACT_NOTIFY"),
    ("linux.timeOffsets", {"monotonic": {"secs": 10}},
     "linux.timeOffsets: needs a new time namespace"),
    ("linux.personality", {"domain": "LINUX64"},
     "linux.personality.domain: must be LINUX or LINUX32, not 'LINUX64'"),
    ("linux.personality", {"domain": "LINUX", "flags": "x"},
     "linux.personality.flags: must be an array of strings"),
]


@pytest.mark.parametrize("field,value,message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_one_bad_field(bundle, field, value, message):
    raw = base_config()
    set_path(raw, field, value)
    with pytest.raises(InvalidArgument) as err:
        run(raw, bundle)
    assert str(err.value) == message.format(bundle=bundle)


@pytest.mark.parametrize("sysctl,namespace", [
    ("kernel.shmmax", "ipc"), ("kernel.msgmnb", "ipc"), ("kernel.sem", "ipc"),
    ("fs.mqueue.queues_max", "ipc"), ("kernel.domainname", "uts"),
    ("net.core.somaxconn", "network"),
])
def test_sysctl_needs_its_namespace(bundle, sysctl, namespace):
    raw = base_config()
    raw["linux"]["sysctl"] = {sysctl: "1"}
    raw["hostname"] = ""
    raw["linux"]["namespaces"] = [{"type": "mount"}]
    with pytest.raises(InvalidArgument, match=f"^linux.sysctl.{sysctl}: needs a {namespace} "):
        run(raw, bundle)
    raw["linux"]["namespaces"].append({"type": namespace})
    run(raw, bundle)


def test_sysctl_net_in_the_hosts_network_namespace(bundle):
    raw = base_config()
    raw["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/self/ns/net"}
    with pytest.raises(InvalidArgument, match="^linux.sysctl.net.ipv4.ip_forward: .*host's"):
        run(raw, bundle)


def test_root_path_that_is_a_file(bundle):
    raw = base_config()
    open(os.path.join(bundle, "file"), "w").close()
    raw["root"]["path"] = "file"
    with pytest.raises(InvalidArgument, match=r"^root.path: .*/file is not a directory$"):
        run(raw, bundle)


def test_absolute_root_path(bundle):
    raw = base_config()
    raw["root"]["path"] = os.path.join(bundle, "rootfs")
    run(raw, bundle)


def test_missing_root(bundle):
    raw = base_config()
    del raw["root"]
    with pytest.raises(InvalidArgument, match="^root.path: is required$"):
        run(raw, bundle)


@pytest.mark.parametrize("change", [
    pytest.param(lambda r: r["process"].update(args=[], commandLine="cmd /c dir"),
                 id="commandLine"),
    pytest.param(lambda r: r["mounts"].append(
        {"destination": "relative/dest", "type": "tmpfs", "source": "tmpfs"}), id="relative-dest"),
    pytest.param(lambda r: r["linux"]["namespaces"].append(
        {"type": "user", "path": "/proc/self/ns/user"}), id="join-userns-without-mappings"),
    pytest.param(lambda r: r["linux"].update(
        namespaces=r["linux"]["namespaces"] + [{"type": "user"}],
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}]), id="new-userns"),
    pytest.param(lambda r: r["linux"]["namespaces"].__setitem__(
        3, {"type": "uts", "path": "/proc/self/ns/uts"}), id="hostname-in-joined-uts"),
    pytest.param(lambda r: r["linux"].update(
        namespaces=r["linux"]["namespaces"] + [{"type": "time"}],
        timeOffsets={"monotonic": {"secs": 5}, "boottime": {"secs": 1, "nanosecs": 2}}),
        id="time-offsets"),
    pytest.param(lambda r: r["linux"].update(personality={"domain": "LINUX32"}), id="personality"),
    pytest.param(lambda r: r["linux"].update(rootfsPropagation="rslave"), id="propagation"),
    pytest.param(lambda r: r["linux"].update(cgroupsPath="relative/path"), id="relative-cgroup"),
    pytest.param(lambda r: r["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/l.sock",
        "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}), id="seccomp"),
    pytest.param(lambda r: r["process"].update(rlimits=[
        {"type": t, "soft": 1, "hard": 2} for t in ("RLIMIT_CORE", "RLIMIT_NPROC")]), id="rlimits"),
    pytest.param(lambda r: r["mounts"].append(
        {"destination": "/idmapped", "type": "bind", "source": "/tmp", "options": ["bind"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}), id="idmapped-mount"),
])
def test_good_variants(bundle, change):
    raw = base_config()
    change(raw)
    run(raw, bundle)


@pytest.mark.parametrize("kind", ["uidMappings", "gidMappings"])
def test_id_mapping_range_end(bundle, kind):
    raw = base_config()
    raw["linux"]["namespaces"].append({"type": "user"})
    for k in ("uidMappings", "gidMappings"):
        raw["linux"][k] = [{"containerID": 0, "hostID": 0, "size": 1}]
    raw["linux"][kind] = [{"containerID": 0, "hostID": 1000, "size": 1},
                          {"containerID": 4294967295, "hostID": 2000, "size": 2}]
    with pytest.raises(InvalidArgument) as err:
        run(raw, bundle)
    assert str(err.value) == f"linux.{kind}[1].size: the range passes the largest container id"


@pytest.mark.parametrize("section,field,value,lsm", [
    ("process", "apparmorProfile", "berth-default", "apparmor"),
    ("process", "selinuxLabel", "system_u:system_r:container_t:s0", "selinux"),
    ("linux", "mountLabel", "system_u:object_r:container_file_t:s0", "selinux"),
])
def test_security_labels_need_the_host(bundle, section, field, value, lsm):
    raw = base_config()
    raw[section][field] = value
    with pytest.raises(Unsupported) as err:
        run(raw, bundle, host=Host(has_apparmor=lsm != "apparmor", has_selinux=lsm != "selinux"))
    assert str(err.value) == f"{section}.{field}: {lsm} is not enabled on this host"
    run(raw, bundle, host=Host(has_apparmor=lsm == "apparmor", has_selinux=lsm == "selinux"))


def test_intel_rdt_is_unsupported(bundle):
    raw = base_config()
    raw["linux"]["intelRdt"] = {"closID": "x"}
    with pytest.raises(Unsupported, match="^linux.intelRdt: "):
        run(raw, bundle)


def test_host_is_asked_only_when_needed(bundle):
    class Nosy:
        @property
        def has_apparmor(self):
            raise AssertionError("asked")

        has_selinux = has_apparmor

    run(base_config(), bundle, host=Nosy())


def test_first_failure_wins(bundle):
    raw = base_config()
    raw["process"]["cwd"] = "rel"
    raw["linux"]["rootfsPropagation"] = "bad"
    with pytest.raises(InvalidArgument, match="^process.cwd"):
        run(raw, bundle)


def test_checks_are_named_functions():
    assert len(CHECKS) == len(set(CHECKS)) >= 15
    assert all(c.__name__.startswith("check_") for c in CHECKS)


def test_validate_does_not_touch_the_config(bundle):
    raw = base_config()
    before = copy.deepcopy(raw)
    run(raw, bundle)
    assert raw == before


# ---------------------------------------------------------------- container ids

@pytest.mark.parametrize("good", ["a", "box-1", "A_b+c.d", "x" * 1024, "..a", "1"])
def test_good_ids(good):
    validate_id(good)


@pytest.mark.parametrize("bad,message", [
    ("", 'invalid container id "": must not be empty'),
    ("a/b", 'invalid container id "a/b": must not contain "/"'),
    (".", 'invalid container id ".": must not be "." or ".."'),
    ("..", 'invalid container id "..": must not be "." or ".."'),
    ("a b", 'invalid container id "a b": may contain only letters, digits and _ + . -'),
    ("é", 'invalid container id "é": may contain only letters, digits and _ + . -'),
    ("a\nb", 'invalid container id "a\\nb": may contain only letters, digits and _ + . -'),
    ("x" * 1025, f'invalid container id "{"x" * 1025}": must be at most 1024 characters'),
])
def test_bad_ids(bad, message):
    with pytest.raises(InvalidArgument) as err:
        validate_id(bad)
    assert str(err.value) == message


def test_validate_checks_the_id(bundle):
    with pytest.raises(InvalidArgument, match='^invalid container id "a/b"'):
        run(base_config(), bundle, container_id="a/b")
