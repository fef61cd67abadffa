"""default_spec() and features() against the runtime-spec's own JSON schemas."""

import json
import os

import jsonschema
import pytest

from berth.spec.caps import CAPS
from berth.spec.defaults import default_spec
from berth.spec.features import MOUNT_OPTIONS, features
from berth.spec.runtime import Spec
from berth.spec.validate import Host, validate

SCHEMA_DIR = os.path.abspath(os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "specs", "oci-runtime-spec"))

pytestmark = pytest.mark.skipif(not os.path.isdir(SCHEMA_DIR),
                                reason=f"no runtime-spec schemas at {SCHEMA_DIR}")


def schema_validator(name):
    base = f"file://{SCHEMA_DIR}/"
    store = {}
    for entry in os.listdir(SCHEMA_DIR):
        if entry.endswith(".json"):
            with open(os.path.join(SCHEMA_DIR, entry)) as f:
                store[base + entry] = json.load(f)
    schema = store[base + name]
    resolver = jsonschema.RefResolver(base_uri=base + name, referrer=schema, store=store)
    return jsonschema.Draft4Validator(schema, resolver=resolver)


def assert_valid(name, document):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in schema_validator(name).iter_errors(document)]
    assert not errors, errors


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_matches_the_schema(rootless):
    assert_valid("config-schema.json", default_spec(rootless=rootless))


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_parses_and_validates(tmp_path, rootless):
    (tmp_path / "rootfs").mkdir()
    raw = default_spec(rootless=rootless)
    # What berth-oci spec writes must survive a JSON round trip unchanged.
    assert json.loads(json.dumps(raw)) == raw
    spec = Spec.from_json(raw)
    validate(spec, str(tmp_path), "box", host=Host(has_apparmor=False, has_selinux=False))
    assert spec.process.args == ("sh",)
    assert spec.root.path == "rootfs" and spec.root.readonly


def test_default_spec_values():
    raw = default_spec()
    assert raw["ociVersion"] == "1.2.0"
    assert raw["hostname"] == "berth"
    assert raw["process"]["capabilities"]["bounding"] == [
        "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert [ns["type"] for ns in raw["linux"]["namespaces"]] == [
        "pid", "network", "ipc", "uts", "mount", "cgroup"]
    assert raw["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert [m["destination"] for m in raw["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]


def test_rootless_default_spec():
    raw = default_spec(rootless=True)
    linux = raw["linux"]
    types = [ns["type"] for ns in linux["namespaces"]]
    assert "user" in types and "network" not in types and "cgroup" not in types
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in linux
    sys_mount = next(m for m in raw["mounts"] if m["destination"] == "/sys")
    assert sys_mount["source"] == "/sys" and "rbind" in sys_mount["options"]
    for mount in raw["mounts"]:
        assert not [o for o in mount.get("options", ()) if o.startswith(("uid=", "gid="))]


def test_default_spec_returns_a_fresh_dict():
    a = default_spec()
    a["process"]["args"].append("-x")
    a["mounts"][0]["options"] = ["ro"]
    assert default_spec()["process"]["args"] == ["sh"]
    assert "options" not in default_spec()["mounts"][0]


def test_features_match_the_schema():
    assert_valid("features-schema.json", features())


def test_features_values():
    doc = features()
    assert doc["ociVersionMin"] == "1.0.0" and doc["ociVersionMax"] == "1.2.0"
    assert doc["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                            "poststart", "poststop"]
    assert list(MOUNT_OPTIONS) == sorted(MOUNT_OPTIONS) == doc["mountOptions"]
    for option in ("bind", "rbind", "ro", "rro", "tmpcopyup", "nosymfollow", "runbindable"):
        assert option in doc["mountOptions"]
    linux = doc["linux"]
    assert set(linux["capabilities"]) == set(CAPS)
    assert set(linux["namespaces"]) == {"pid", "network", "mount", "ipc", "uts", "user",
                                        "cgroup", "time"}
    assert linux["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                               "rdma": False}
    assert set(linux["seccomp"]["supportedFlags"]) <= set(linux["seccomp"]["knownFlags"])
    assert linux["mountExtensions"] == {"idmap": {"enabled": False}}
    assert doc["annotations"]["io.berth.version"]
    json.dumps(doc)
