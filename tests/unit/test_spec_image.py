"""The typed image-spec models (berth.spec.image), with the example documents checked against
the image spec's own JSON schemas first, so the parser is tested on documents that are valid."""

import copy
import json
import os

import jsonschema
import pytest

from berth.errors import InvalidArgument
from berth.spec.image import (
    ContainerConfig, Descriptor, Healthcheck, History, ImageConfig, ImageIndex, ImageManifest,
    Platform, check_digest,
)

IMAGE_SCHEMAS = os.path.abspath(os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "specs", "oci-image-spec"))

needs_schemas = pytest.mark.skipif(not os.path.isdir(IMAGE_SCHEMAS),
                                   reason=f"no image-spec schemas at {IMAGE_SCHEMAS}")


def image_schema_errors(name, document):
    """Every way ``document`` breaks the image spec's schema ``name``, one line each."""
    def load(file):
        with open(os.path.join(IMAGE_SCHEMAS, file)) as f:
            return json.load(f)

    # The schemas' "id"s rebase their relative $refs onto https://opencontainers.org/...;
    # answer each such fetch with the local file of the same name.
    schema = load(name)
    resolver = jsonschema.RefResolver.from_schema(
        schema, handlers={"https": lambda uri: load(uri.rsplit("/", 1)[-1])})
    checker = jsonschema.Draft4Validator(schema, resolver=resolver,
                                         format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in checker.iter_errors(document)]


def dg(n):
    return "sha256:" + f"{n:x}".rjust(64, "0")


# A config as Docker writes one (busybox's, trimmed): Docker's extra fields, nulls included.
DOCKER_CONFIG = {
    "architecture": "amd64",
    "config": {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"], "Image": dg(99), "Volumes": None, "WorkingDir": "",
        "Entrypoint": None, "OnBuild": None, "Labels": None,
    },
    "container": "3f4d90098f5b5a6f6a76e9d217da85aa39b2081e30fa1f7d287138d6e7bf0ad7",
    "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ", "CMD [\"sh\"]"]},
    "created": "2023-07-18T23:19:33.655005962Z",
    "docker_version": "20.10.23",
    "history": [
        {"created": "2023-07-18T23:19:33.538571854Z",
         "created_by": "/bin/sh -c #(nop) ADD file:7e9002edaafd4e4579b65c8f0aaabde1aeb7fd3f8d95579f7fd3443cef785fd1 in / "},
        {"created": "2023-07-18T23:19:33.655005962Z",
         "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": True},
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [dg(1)]},
}

# An OCI config using every field the model knows.
FULL_CONFIG = {
    "created": "2024-02-01T10:00:00Z",
    "author": "berth tests <tests@example.com>",
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "os.version": "6.1",
    "os.features": ["feature-a"],
    "config": {
        "User": "1000:1000",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Env": ["PATH=/bin", "A=b=c"],
        "Entrypoint": ["/entry", "--flag"],
        "Cmd": [],
        "Volumes": {"/data": {}},
        "WorkingDir": "/srv",
        "Labels": {"org.opencontainers.image.title": "full"},
        "StopSignal": "SIGQUIT",
        "ArgsEscaped": False,
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000,
                        "Timeout": 5000000000, "StartPeriod": 1, "StartInterval": 2,
                        "Retries": 3},
        "OnBuild": ["RUN true"],
        "Shell": ["/bin/bash", "-c"],
    },
    "rootfs": {"type": "layers", "diff_ids": [dg(1), dg(2)]},
    "history": [
        {"created": "2024-02-01T10:00:00Z", "author": "a", "created_by": "ADD x /",
         "comment": "c"},
        {"created_by": "ENV A=b", "empty_layer": True},
        {"created_by": "RUN make"},
    ],
}

MINIMAL_CONFIG = {"architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": []}}


@needs_schemas
@pytest.mark.parametrize("doc", [DOCKER_CONFIG, FULL_CONFIG, MINIMAL_CONFIG],
                         ids=["docker", "full", "minimal"])
def test_example_configs_match_the_schema(doc):
    assert image_schema_errors("config-schema.json", doc) == []


def test_docker_config():
    cfg = ImageConfig.from_json(DOCKER_CONFIG)
    assert (cfg.architecture, cfg.os, cfg.variant) == ("amd64", "linux", "")
    assert cfg.created == "2023-07-18T23:19:33.655005962Z"
    assert cfg.config.cmd == ("sh",)
    assert cfg.config.entrypoint is None
    assert cfg.config.volumes == ()
    assert cfg.config.labels == {}
    assert cfg.config.env[0].startswith("PATH=")
    assert cfg.rootfs.diff_ids == (dg(1),)
    assert len(cfg.history) == 2 and cfg.history[1].empty_layer
    assert cfg.layer_history() == (cfg.history[0],)
    # What the model does not know is kept, not dropped.
    assert cfg.extra["docker_version"] == "20.10.23"
    assert cfg.extra["container_config"]["Cmd"][0] == "/bin/sh"
    assert cfg.config.extra["Hostname"] == "" and cfg.config.extra["Image"] == dg(99)
    assert cfg.platform() == {"architecture": "amd64", "os": "linux"}


def test_full_config():
    cfg = ImageConfig.from_json(FULL_CONFIG)
    run = cfg.config
    assert run.user == "1000:1000"
    assert run.exposed_ports == ("80/tcp", "53/udp")
    assert run.env == ("PATH=/bin", "A=b=c")
    assert run.entrypoint == ("/entry", "--flag")
    assert run.cmd == ()               # set to empty, not unset
    assert run.volumes == ("/data",)
    assert run.working_dir == "/srv"
    assert run.labels == {"org.opencontainers.image.title": "full"}
    assert run.stop_signal == "SIGQUIT"
    assert run.args_escaped is False
    assert run.healthcheck == Healthcheck(test=("CMD-SHELL", "true"), interval=30000000000,
                                          timeout=5000000000, start_period=1, start_interval=2,
                                          retries=3)
    assert run.on_build == ("RUN true",)
    assert run.shell == ("/bin/bash", "-c")
    assert run.extra == {}
    assert cfg.extra == {}
    assert cfg.author.startswith("berth tests")
    assert (cfg.variant, cfg.os_version, cfg.os_features) == ("v8", "6.1", ("feature-a",))
    assert cfg.platform() == {"architecture": "arm64", "os": "linux", "variant": "v8",
                              "os.version": "6.1", "os.features": ["feature-a"]}
    assert cfg.history[0] == History(created="2024-02-01T10:00:00Z", author="a",
                                     created_by="ADD x /", comment="c")
    assert [h.created_by for h in cfg.layer_history()] == ["ADD x /", "RUN make"]


def test_minimal_config_defaults():
    cfg = ImageConfig.from_json(MINIMAL_CONFIG)
    assert cfg.config == ContainerConfig()
    assert cfg.config.cmd is None and cfg.config.healthcheck is None
    assert cfg.history == () and cfg.rootfs.diff_ids == ()


def test_from_bytes_and_frozen():
    data = json.dumps(FULL_CONFIG).encode()
    cfg = ImageConfig.from_bytes(data)
    assert cfg == ImageConfig.from_json(FULL_CONFIG)
    assert hash(cfg) == hash(ImageConfig.from_json(FULL_CONFIG))
    with pytest.raises(AttributeError):
        cfg.os = "windows"
    with pytest.raises(InvalidArgument, match="^config: invalid JSON"):
        ImageConfig.from_bytes(b"{")


def test_str_slice_accepts_a_string():
    # Docker's strslice reads "Cmd": "sh" as ["sh"]; old images have it.
    raw = copy.deepcopy(MINIMAL_CONFIG)
    raw["config"] = {"Cmd": "sh", "Entrypoint": "/e", "Shell": "/bin/sh"}
    run = ImageConfig.from_json(raw).config
    assert (run.cmd, run.entrypoint, run.shell) == (("sh",), ("/e",), ("/bin/sh",))


def _config_with(path, value):
    raw = copy.deepcopy(FULL_CONFIG)
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


@pytest.mark.parametrize("path,value,message", [
    (("architecture",), KeyError, "config.architecture: is required"),
    (("os",), 7, "config.os: must be a string"),
    (("rootfs",), KeyError, "config.rootfs: is required"),
    (("rootfs", "type"), "tar", "config.rootfs.type: must be \"layers\", not 'tar'"),
    (("rootfs", "diff_ids"), KeyError, "config.rootfs.diff_ids: is required"),
    (("rootfs", "diff_ids"), ["sha256:abc"],
     "config.rootfs.diff_ids[0]: invalid checksum digest length"),
    (("config",), [], "config.config: must be an object"),
    (("config", "Env"), ["A=b", 3], "config.config.Env[1]: must be a string"),
    (("config", "Cmd"), [1], "config.config.Cmd[0]: must be a string"),
    (("config", "Entrypoint"), {"a": 1}, "config.config.Entrypoint: must be an array"),
    (("config", "ExposedPorts"), ["80/tcp"], "config.config.ExposedPorts: must be an object"),
    (("config", "ExposedPorts"), {"80/tcp": 1}, "config.config.ExposedPorts.80/tcp: must be an"),
    (("config", "Volumes"), {"/v": None}, "config.config.Volumes./v: must be an object"),
    (("config", "Labels"), {"a": 1}, "config.config.Labels.a: must be a string"),
    (("config", "User"), 0, "config.config.User: must be a string"),
    (("config", "ArgsEscaped"), "no", "config.config.ArgsEscaped: must be true or false"),
    (("config", "Healthcheck"), "CMD true", "config.config.Healthcheck: must be an object"),
    (("config", "Healthcheck", "Interval"), -1,
     "config.config.Healthcheck.Interval: must be at least 0"),
    (("config", "Healthcheck", "Test"), "true",
     "config.config.Healthcheck.Test: must be an array of strings"),
    (("history",), {}, "config.history: must be an array"),
    (("history",), [{"empty_layer": "yes"}], "config.history[0].empty_layer: must be true or"),
    (("history",), ["x"], "config.history[0]: must be an object"),
    (("os.features",), "a", "config.os.features: must be an array of strings"),
])
def test_config_errors(path, value, message):
    with pytest.raises(InvalidArgument) as info:
        ImageConfig.from_json(_config_with(path, value))
    assert str(info.value).startswith(message), str(info.value)


def test_config_must_be_an_object():
    with pytest.raises(InvalidArgument, match="^config: must be an object"):
        ImageConfig.from_json(["x"])


# ---------------------------------------------------------------- manifests and indexes

MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dg(1),
               "size": 1470},
    "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg(2),
         "size": 2152262, "annotations": {"org.opencontainers.image.title": "layer.tar.gz"}},
        {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
         "digest": dg(3), "size": 100, "urls": ["https://example.com/layer"]},
    ],
    "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg(4),
                "size": 7},
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}

INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg(10),
         "size": 480, "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg(11),
         "size": 480, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg(12),
         "size": 566, "platform": {"architecture": "amd64", "os": "windows",
                                   "os.version": "10.0.17763.5329", "os.features": ["win32k"]}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg(13),
         "size": 840, "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.digest": dg(10),
                         "vnd.docker.reference.type": "attestation-manifest"}},
    ],
    "annotations": {"org.opencontainers.image.ref.name": "latest"},
}


@needs_schemas
def test_example_documents_match_the_schemas():
    assert image_schema_errors("image-manifest-schema.json", MANIFEST) == []
    assert image_schema_errors("image-index-schema.json", INDEX) == []
    for layer in MANIFEST["layers"]:
        assert image_schema_errors("content-descriptor.json", layer) == []


def test_manifest_model():
    m = ImageManifest.from_json(MANIFEST)
    assert m.schema_version == 2
    assert m.media_type == MANIFEST["mediaType"]
    assert m.config == Descriptor(media_type="application/vnd.oci.image.config.v1+json",
                                  digest=dg(1), size=1470)
    assert [d.size for d in m.layers] == [2152262, 100]
    assert m.layers[1].urls == ("https://example.com/layer",)
    assert m.layers[0].annotations["org.opencontainers.image.title"] == "layer.tar.gz"
    assert m.subject.digest == dg(4)
    assert m.annotations == MANIFEST["annotations"]


def test_index_model():
    idx = ImageIndex.from_json(INDEX)
    assert len(idx.manifests) == 4
    assert idx.manifests[1].platform == Platform(os="linux", architecture="arm64", variant="v8")
    win = idx.manifests[2].platform
    assert (win.os_version, win.os_features) == ("10.0.17763.5329", ("win32k",))
    assert idx.subject is None


@needs_schemas
def test_descriptor_to_json_round_trip():
    for raw in MANIFEST["layers"] + INDEX["manifests"] + [MANIFEST["config"]]:
        d = Descriptor.from_json(raw)
        assert d.to_json() == raw
        assert image_schema_errors("content-descriptor.json", d.to_json()) == []


@pytest.mark.parametrize("value,message", [
    ("sha256:" + "a" * 64, None),
    ("sha384:" + "a" * 96, None),
    ("sha512:" + "a" * 128, None),
    ("sha256:" + "a" * 63, "invalid checksum digest length"),
    ("sha512:" + "a" * 64, "invalid checksum digest length"),
    ("sha256:" + "g" * 64, "invalid checksum digest format"),
    ("sha256:" + "A" * 64, "invalid checksum digest format"),
    ("sha256:", "invalid checksum digest format"),
    (":abc", "invalid checksum digest format"),
    ("abc", "invalid checksum digest format"),
    ("", "invalid checksum digest format"),
    (None, "invalid checksum digest format"),
    ("md5:" + "a" * 32, "unsupported digest algorithm"),
    ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported digest algorithm"),
    ("SHA256:" + "a" * 64, "invalid checksum digest format"),
    ("sha256..x:" + "a" * 64, "invalid checksum digest format"),
    ("md5:a/b", "invalid checksum digest format"),
])
def test_check_digest(value, message):
    if message is None:
        alg, hexpart = check_digest(value)
        assert f"{alg}:{hexpart}" == value
        return
    with pytest.raises(InvalidArgument) as info:
        check_digest(value)
    assert str(info.value) == message
    with pytest.raises(InvalidArgument) as info:
        check_digest(value, "layers[0].digest")
    assert str(info.value) == "layers[0].digest: " + message


def test_spec_image_is_cheap_to_import():
    # Not on berth-oci's path, but spec/ is: keep it free of the slow modules anyway.
    from tests.unit.test_spec_imports import SLOW, imported_by

    names = imported_by("berth.spec.image")
    assert not sorted(n for n in names if n.split(".")[0] in SLOW)


@needs_schemas
def test_the_schema_check_is_not_vacuous():
    # Broken documents fail, through the $refs too: the checks above mean something.
    assert image_schema_errors("config-schema.json", {"os": "linux"})
    bad = copy.deepcopy(MANIFEST)
    bad["config"]["digest"] = "not a digest"
    bad["layers"][0]["size"] = -1
    assert len(image_schema_errors("image-manifest-schema.json", bad)) == 2
    bad = copy.deepcopy(INDEX)
    bad["manifests"][0]["platform"] = {"os": "linux"}
    assert image_schema_errors("image-index-schema.json", bad)
