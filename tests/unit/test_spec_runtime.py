"""Spec.from_json: the records it builds and the field it names when a type is wrong."""

import pytest

from berth.errors import InvalidArgument
from berth.spec.runtime import Spec


def minimal(**extra):
    raw = {"ociVersion": "1.2.0", "root": {"path": "rootfs"},
           "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"}}
    raw.update(extra)
    return raw


def test_parses_to_frozen_snake_case_records():
    raw = minimal(
        hostname="box",
        linux={"namespaces": [{"type": "pid"}], "cgroupsPath": "/a",
               "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
               "resources": {"memory": {"limit": 1 << 20},
                             "blockIO": {"throttleReadIOPSDevice": [
                                 {"major": 8, "minor": 0, "rate": 100}]}},
               "timeOffsets": {"monotonic": {"secs": 3}}},
        hooks={"createRuntime": [{"path": "/bin/true", "timeout": 5}]},
    )
    spec = Spec.from_json(raw)
    assert spec.oci_version == "1.2.0"
    assert spec.process.args == ("sh",) and spec.process.cwd == "/"
    assert spec.linux.cgroups_path == "/a"
    assert spec.linux.uid_mappings[0].host_id == 1000
    assert spec.linux.resources.memory.limit == 1 << 20
    assert spec.linux.resources.block_io.throttle_read_iops_device[0].rate == 100
    assert spec.linux.time_offsets == {"monotonic": (3, 0)}
    assert spec.hooks.create_runtime[0].timeout == 5
    assert spec.linux.namespace("pid").type == "pid"
    assert spec.linux.namespace("user") is None
    with pytest.raises(AttributeError):
        spec.hostname = "other"
    assert spec == Spec.from_json(raw)
    assert hash(spec.linux.uid_mappings[0]) == hash(Spec.from_json(raw).linux.uid_mappings[0])


def test_process_user_may_be_left_out():
    raw = minimal()
    del raw["process"]["user"]
    user = Spec.from_json(raw).process.user
    assert (user.uid, user.gid) == (0, 0)


def test_replace_returns_a_new_record():
    spec = Spec.from_json(minimal())
    other = spec.replace(hostname="x")
    assert other.hostname == "x" and spec.hostname == ""


@pytest.mark.parametrize("raw,message", [
    ([], "config: must be an object"),
    ("{}", "config: must be an object"),
    (None, "config: is required"),
    ({}, "ociVersion: is required"),
    (minimal(ociVersion=1), "ociVersion: must be a string"),
    (minimal(root="rootfs"), "root: must be an object"),
    (minimal(root={}), "root.path: is required"),
    (minimal(root={"path": "r", "readonly": "yes"}), "root.readonly: must be true or false"),
    (minimal(process=[]), "process: must be an object"),
    (minimal(process={"args": ["sh"]}), "process.cwd: is required"),
    (minimal(process={"cwd": "/", "args": "sh"}), "process.args: must be an array of strings"),
    (minimal(process={"cwd": "/", "args": ["sh", 1]}), "process.args[1]: must be a string"),
    (minimal(process={"cwd": "/", "user": {"uid": -1, "gid": 0}}),
     "process.user.uid: must be at least 0"),
    (minimal(process={"cwd": "/", "user": {"uid": True, "gid": 0}}),
     "process.user.uid: must be an integer"),
    (minimal(process={"cwd": "/", "user": {"uid": 0, "gid": 0, "additionalGids": [1, "x"]}}),
     "process.user.additionalGids[1]: must be an integer"),
    (minimal(process={"cwd": "/", "rlimits": [{"type": "RLIMIT_CORE", "soft": 1}]}),
     "process.rlimits[0].hard: is required"),
    (minimal(process={"cwd": "/", "rlimits": ["RLIMIT_CORE"]}),
     "process.rlimits[0]: must be an object"),
    (minimal(process={"cwd": "/", "capabilities": {"bounding": "CAP_KILL"}}),
     "process.capabilities.bounding: must be an array of strings"),
    (minimal(process={"cwd": "/", "oomScoreAdj": 5000}),
     "process.oomScoreAdj: must be at most 1000"),
    (minimal(process={"cwd": "/", "consoleSize": {"height": 1}}),
     "process.consoleSize.width: is required"),
    (minimal(mounts={}), "mounts: must be an array"),
    (minimal(mounts=[{"type": "tmpfs"}]), "mounts[0].destination: is required"),
    (minimal(mounts=[{"destination": "/x", "options": "ro"}]),
     "mounts[0].options: must be an array of strings"),
    (minimal(hooks={"prestart": [{"args": []}]}), "hooks.prestart[0].path: is required"),
    (minimal(hooks={"poststop": [{"path": "/x", "timeout": 0}]}),
     "hooks.poststop[0].timeout: must be at least 1"),
    (minimal(annotations={"a": 1}), "annotations.a: must be a string"),
    (minimal(linux=[]), "linux: must be an object"),
    (minimal(linux={"namespaces": [{"path": "/x"}]}), "linux.namespaces[0].type: is required"),
    (minimal(linux={"uidMappings": [{"containerID": 0, "hostID": 0}]}),
     "linux.uidMappings[0].size: is required"),
    (minimal(linux={"devices": [{"type": "c", "path": "/dev/x", "major": 1}]}),
     "linux.devices[0].minor: is required"),
    (minimal(linux={"sysctl": {"net.ipv4.ip_forward": 1}}),
     "linux.sysctl.net.ipv4.ip_forward: must be a string"),
    (minimal(linux={"resources": {"memory": {"limit": "1g"}}}),
     "linux.resources.memory.limit: must be an integer"),
    (minimal(linux={"resources": {"pids": {}}}), "linux.resources.pids.limit: is required"),
    (minimal(linux={"resources": {"devices": [{"allow": "no"}]}}),
     "linux.resources.devices[0].allow: must be true or false"),
    (minimal(linux={"resources": {"blockIO": {"throttleWriteIOPSDevice": [{"major": 1}]}}}),
     "linux.resources.blockIO.throttleWriteIOPSDevice[0].minor: is required"),
    (minimal(linux={"resources": {"hugepageLimits": [{"limit": 1}]}}),
     "linux.resources.hugepageLimits[0].pageSize: is required"),
    (minimal(linux={"seccomp": {}}), "linux.seccomp.defaultAction: is required"),
    (minimal(linux={"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0,
                                                                  "op": "SCMP_CMP_EQ"}]}]}}),
     "linux.seccomp.syscalls[0].args[0].index: must be at most 5"),
    (minimal(linux={"timeOffsets": {"monotonic": 5}}),
     "linux.timeOffsets.monotonic: must be an object"),
    (minimal(linux={"maskedPaths": "/proc"}), "linux.maskedPaths: must be an array of strings"),
    (minimal(linux={"personality": "LINUX"}), "linux.personality: must be an object"),
])
def test_wrong_types_name_the_field(raw, message):
    with pytest.raises(InvalidArgument) as err:
        Spec.from_json(raw)
    assert str(err.value) == message


@pytest.mark.parametrize("user,message", [
    ([], "process.user: must be an object"),
    ({}, "process.user.uid: is required"),
])
def test_a_given_user_is_checked(user, message):
    raw = minimal()
    raw["process"]["user"] = user
    with pytest.raises(InvalidArgument) as err:
        Spec.from_json(raw)
    assert str(err.value) == message


def test_records_holding_json_objects_hash():
    raw = minimal(linux={"personality": {"domain": "LINUX", "flags": ["a"]},
                         "resources": {"unified": {"memory.high": "1M"}}})
    assert hash(Spec.from_json(raw)) == hash(Spec.from_json(raw))
