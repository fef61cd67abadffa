"""Typed, frozen models of the OCI image spec's documents: descriptor, manifest, index, config.

These are for reading. The bytes a registry or a tar handed us are what count (a config's
digest is the image id), so nothing here serialises a document back; unknown fields are kept
in ``extra`` so a reader can still see them. ``from_json(raw)`` checks every field's type and
names it in the error ("config.config.Env[2]: must be a string").

``check_digest`` validates "alg:hex" the way go-digest does, with its words, so references
and descriptors report a bad digest as Docker does.
"""

from berth.spec._record import (
    Record, boolean, fail, integer, obj, records, string, string_map, strings,
)

# go-digest's available algorithms (Docker registers sha256, sha384 and sha512) and their
# hex lengths.
DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}

_LOWER_HEX = frozenset("0123456789abcdef")
_ALG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALG_SEPARATORS = frozenset(".+_-")
_ENCODED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_-")


def check_digest(value, path=None):
    """("alg", "hex") for a valid digest; InvalidArgument in go-digest's words otherwise.

    The words: "invalid checksum digest format", "unsupported digest algorithm",
    "invalid checksum digest length"; prefixed with ``path`` when one is given.
    """
    prefix = f"{path}: " if path else ""
    if not isinstance(value, str):
        raise _invalid(prefix + "invalid checksum digest format")
    alg, _, encoded = value.partition(":")
    if not alg or not encoded:
        raise _invalid(prefix + "invalid checksum digest format")
    want = DIGEST_HEX_LENGTH.get(alg)
    if want is None:
        if _well_formed(alg, encoded):
            raise _invalid(prefix + "unsupported digest algorithm")
        raise _invalid(prefix + "invalid checksum digest format")
    if len(encoded) != want:
        raise _invalid(prefix + "invalid checksum digest length")
    if not _LOWER_HEX.issuperset(encoded):
        raise _invalid(prefix + "invalid checksum digest format")
    return alg, encoded


def _well_formed(alg, encoded):
    # go-digest's DigestRegexp: [a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+
    part = ""
    for ch in alg + ".":
        if ch in _ALG_SEPARATORS:
            if not part:
                return False
            part = ""
        elif ch in _ALG_CHARS:
            part += ch
        else:
            return False
    return _ENCODED_CHARS.issuperset(encoded)


def _invalid(message):
    from berth.errors import InvalidArgument
    return InvalidArgument(message)


# ---------------------------------------------------------------- descriptors

class Platform(Record):
    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple = ()

    @classmethod
    def from_json(cls, raw, path="platform"):
        return cls(
            architecture=string(raw.get("architecture"), f"{path}.architecture", True),
            os=string(raw.get("os"), f"{path}.os", True),
            variant=string(raw.get("variant"), f"{path}.variant"),
            os_version=string(raw.get("os.version"), f"{path}.os.version"),
            os_features=strings(raw.get("os.features"), f"{path}.os.features"),
        )

    def to_json(self):
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out


class Descriptor(Record):
    media_type: str = ""
    digest: str = ""
    size: int = 0
    urls: tuple = ()
    annotations: dict = {}
    platform: "Platform | None" = None
    artifact_type: str = ""
    data: str = ""

    @classmethod
    def from_json(cls, raw, path="descriptor"):
        media_type = string(raw.get("mediaType"), f"{path}.mediaType", True)
        if not media_type:
            fail(f"{path}.mediaType", "must not be empty")
        digest = raw.get("digest")
        if digest is None:
            fail(f"{path}.digest", "is required")
        check_digest(digest, f"{path}.digest")
        platform = raw.get("platform")
        if platform is not None:
            platform = Platform.from_json(obj(platform, f"{path}.platform"), f"{path}.platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=integer(raw.get("size"), f"{path}.size", True, minimum=0),
            urls=strings(raw.get("urls"), f"{path}.urls"),
            annotations=string_map(raw.get("annotations"), f"{path}.annotations"),
            platform=platform,
            artifact_type=string(raw.get("artifactType"), f"{path}.artifactType"),
            data=string(raw.get("data"), f"{path}.data"),
        )

    def to_json(self):
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data:
            out["data"] = self.data
        return out


def _document_fields(raw, path):
    # The fields a manifest and an index share.
    version = integer(raw.get("schemaVersion"), f"{path}.schemaVersion", True)
    if version != 2:
        fail(f"{path}.schemaVersion", f"must be 2, not {version}")
    subject = raw.get("subject")
    if subject is not None:
        subject = Descriptor.from_json(obj(subject, f"{path}.subject"), f"{path}.subject")
    return {
        "schema_version": version,
        "media_type": string(raw.get("mediaType"), f"{path}.mediaType"),
        "artifact_type": string(raw.get("artifactType"), f"{path}.artifactType"),
        "subject": subject,
        "annotations": string_map(raw.get("annotations"), f"{path}.annotations"),
    }


class ImageManifest(Record):
    schema_version: int = 2
    media_type: str = ""
    artifact_type: str = ""
    config: Descriptor = Descriptor()
    layers: tuple = ()
    subject: "Descriptor | None" = None
    annotations: dict = {}

    @classmethod
    def from_json(cls, raw, path="manifest"):
        if raw.get("config") is None:
            fail(f"{path}.config", "is required")
        # The schema wants at least one layer, but images built FROM scratch with no files
        # are pushed with "layers": [] and Docker pulls them; read them too.
        if raw.get("layers") is None:
            fail(f"{path}.layers", "is required")
        return cls(
            config=Descriptor.from_json(obj(raw["config"], f"{path}.config"), f"{path}.config"),
            layers=records(raw["layers"], f"{path}.layers", Descriptor.from_json),
            **_document_fields(raw, path),
        )


class ImageIndex(Record):
    schema_version: int = 2
    media_type: str = ""
    artifact_type: str = ""
    manifests: tuple = ()
    subject: "Descriptor | None" = None
    annotations: dict = {}

    @classmethod
    def from_json(cls, raw, path="index"):
        if raw.get("manifests") is None:
            fail(f"{path}.manifests", "is required")
        return cls(
            manifests=records(raw["manifests"], f"{path}.manifests", Descriptor.from_json),
            **_document_fields(raw, path),
        )


# ---------------------------------------------------------------- image config

class Healthcheck(Record):
    """Docker's extension; durations are nanoseconds, 0 meaning "inherit"."""

    test: tuple = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            test=strings(raw.get("Test"), f"{path}.Test"),
            interval=integer(raw.get("Interval"), f"{path}.Interval", default=0, minimum=0),
            timeout=integer(raw.get("Timeout"), f"{path}.Timeout", default=0, minimum=0),
            start_period=integer(raw.get("StartPeriod"), f"{path}.StartPeriod", default=0,
                                 minimum=0),
            start_interval=integer(raw.get("StartInterval"), f"{path}.StartInterval",
                                   default=0, minimum=0),
            retries=integer(raw.get("Retries"), f"{path}.Retries", default=0, minimum=0),
        )


_CONTAINER_CONFIG_FIELDS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "Healthcheck", "ArgsEscaped", "OnBuild", "Shell",
)


class ContainerConfig(Record):
    """The config's "config" object: how to run a container from the image."""

    user: str = ""
    exposed_ports: tuple = ()         # keys of ExposedPorts: "80/tcp", "53/udp"
    env: tuple = ()
    entrypoint: "tuple | None" = None  # None (unset) and () (set to empty) differ when inherited
    cmd: "tuple | None" = None
    volumes: tuple = ()               # keys of Volumes
    working_dir: str = ""
    labels: dict = {}
    stop_signal: str = ""
    healthcheck: "Healthcheck | None" = None
    args_escaped: bool = False
    on_build: tuple = ()
    shell: tuple = ()
    extra: dict = {}                  # fields this model does not know (Hostname, Image, ...)

    @classmethod
    def from_json(cls, raw, path="config.config"):
        health = raw.get("Healthcheck")
        if health is not None:
            health = Healthcheck.from_json(obj(health, f"{path}.Healthcheck"),
                                           f"{path}.Healthcheck")
        shell = _str_slice(raw.get("Shell"), f"{path}.Shell")
        return cls(
            user=string(raw.get("User"), f"{path}.User"),
            exposed_ports=_object_keys(raw.get("ExposedPorts"), f"{path}.ExposedPorts"),
            env=strings(raw.get("Env"), f"{path}.Env"),
            entrypoint=_str_slice(raw.get("Entrypoint"), f"{path}.Entrypoint"),
            cmd=_str_slice(raw.get("Cmd"), f"{path}.Cmd"),
            volumes=_object_keys(raw.get("Volumes"), f"{path}.Volumes"),
            working_dir=string(raw.get("WorkingDir"), f"{path}.WorkingDir"),
            labels=string_map(raw.get("Labels"), f"{path}.Labels"),
            stop_signal=string(raw.get("StopSignal"), f"{path}.StopSignal"),
            healthcheck=health,
            args_escaped=boolean(raw.get("ArgsEscaped"), f"{path}.ArgsEscaped"),
            on_build=strings(raw.get("OnBuild"), f"{path}.OnBuild"),
            shell=shell if shell is not None else (),
            extra={k: v for k, v in raw.items() if k not in _CONTAINER_CONFIG_FIELDS},
        )


class RootFS(Record):
    type: str = "layers"
    diff_ids: tuple = ()

    @classmethod
    def from_json(cls, raw, path="config.rootfs"):
        kind = string(raw.get("type"), f"{path}.type", True)
        if kind != "layers":
            fail(f"{path}.type", f'must be "layers", not {kind!r}')
        if raw.get("diff_ids") is None:
            fail(f"{path}.diff_ids", "is required")
        diff_ids = strings(raw.get("diff_ids"), f"{path}.diff_ids")
        for i, diff_id in enumerate(diff_ids):
            check_digest(diff_id, f"{path}.diff_ids[{i}]")
        return cls(type=kind, diff_ids=diff_ids)


class History(Record):
    created: str = ""
    author: str = ""
    created_by: str = ""
    comment: str = ""
    empty_layer: bool = False

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            created=string(raw.get("created"), f"{path}.created"),
            author=string(raw.get("author"), f"{path}.author"),
            created_by=string(raw.get("created_by"), f"{path}.created_by"),
            comment=string(raw.get("comment"), f"{path}.comment"),
            empty_layer=boolean(raw.get("empty_layer"), f"{path}.empty_layer"),
        )


_IMAGE_CONFIG_FIELDS = (
    "architecture", "os", "variant", "os.version", "os.features", "created", "author",
    "config", "rootfs", "history",
)


class ImageConfig(Record):
    """The image config (application/vnd.oci.image.config.v1+json and Docker's v1 config)."""

    architecture: str = ""
    os: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple = ()
    created: str = ""
    author: str = ""
    config: ContainerConfig = ContainerConfig()
    rootfs: RootFS = RootFS()
    history: tuple = ()
    extra: dict = {}                  # container, container_config, docker_version, ...

    @classmethod
    def from_json(cls, raw, path="config"):
        if not isinstance(raw, dict):
            fail(path, "must be an object")
        run = raw.get("config")
        rootfs = raw.get("rootfs")
        if rootfs is None:
            fail(f"{path}.rootfs", "is required")
        return cls(
            architecture=string(raw.get("architecture"), f"{path}.architecture", True),
            os=string(raw.get("os"), f"{path}.os", True),
            variant=string(raw.get("variant"), f"{path}.variant"),
            os_version=string(raw.get("os.version"), f"{path}.os.version"),
            os_features=strings(raw.get("os.features"), f"{path}.os.features"),
            created=string(raw.get("created"), f"{path}.created"),
            author=string(raw.get("author"), f"{path}.author"),
            config=ContainerConfig.from_json(obj(run, f"{path}.config"), f"{path}.config"),
            rootfs=RootFS.from_json(obj(rootfs, f"{path}.rootfs"), f"{path}.rootfs"),
            history=records(raw.get("history"), f"{path}.history", History.from_json),
            extra={k: v for k, v in raw.items() if k not in _IMAGE_CONFIG_FIELDS},
        )

    @classmethod
    def from_bytes(cls, data, path="config"):
        """Parse the config blob's bytes (kept elsewhere byte-exact: their digest is the id)."""
        import json

        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            fail(path, f"invalid JSON: {err}")
        return cls.from_json(raw, path)

    def platform(self):
        """The OCI platform object this image was built for."""
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant,
                        os_version=self.os_version, os_features=self.os_features).to_json()

    def layer_history(self):
        """History entries that made a layer (empty_layer false), in order."""
        return tuple(h for h in self.history if not h.empty_layer)


def _object_keys(value, path):
    # ExposedPorts and Volumes are maps to empty objects; only the keys mean anything.
    if value is None:
        return ()
    if not isinstance(value, dict):
        fail(path, "must be an object")
    for key, item in value.items():
        if not isinstance(item, dict):
            fail(f"{path}.{key}", "must be an object")
    return tuple(value)


def _str_slice(value, path):
    # Docker's strslice: an array of strings, or one string standing for a one-item array.
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return strings(value, path)
