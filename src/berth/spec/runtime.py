"""Typed, frozen models of the OCI runtime spec's config.json (runtime-spec 1.2).

``Spec.from_json(raw)`` parses once at the edge and checks every field's type, naming the
field in the error; the cross-field rules (an id with a slash, a missing rootfs, an unknown
capability...) are the checks in ``berth.spec.validate``. Field names follow the spec's,
in snake_case. Nothing here imports more than the standard library's C modules.
"""

from berth.spec._record import (
    Record, boolean, fail, integer, obj, records, string, string_map, strings,
)

OCI_VERSION = "1.2.0"

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


# ---------------------------------------------------------------- process

class User(Record):
    uid: int = 0
    gid: int = 0
    umask: "int | None" = None
    additional_gids: tuple = ()
    username: str = ""

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            uid=integer(raw.get("uid"), f"{path}.uid", True, minimum=0),
            gid=integer(raw.get("gid"), f"{path}.gid", True, minimum=0),
            umask=integer(raw.get("umask"), f"{path}.umask", minimum=0, maximum=0o777),
            additional_gids=tuple(
                integer(g, f"{path}.additionalGids[{i}]", True, minimum=0)
                for i, g in enumerate(_array(raw.get("additionalGids"), f"{path}.additionalGids"))
            ),
            username=string(raw.get("username"), f"{path}.username"),
        )


class Rlimit(Record):
    type: str = ""
    soft: int = 0
    hard: int = 0

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            type=string(raw.get("type"), f"{path}.type", True),
            soft=integer(raw.get("soft"), f"{path}.soft", True, minimum=0),
            hard=integer(raw.get("hard"), f"{path}.hard", True, minimum=0),
        )


class Capabilities(Record):
    bounding: tuple = ()
    effective: tuple = ()
    inheritable: tuple = ()
    permitted: tuple = ()
    ambient: tuple = ()

    @classmethod
    def from_json(cls, raw, path):
        return cls(**{k: strings(raw.get(k), f"{path}.{k}") for k in cls.__annotations__})


class ConsoleSize(Record):
    height: int = 0
    width: int = 0


class Process(Record):
    terminal: bool = False
    console_size: "ConsoleSize | None" = None
    user: User = User()
    args: tuple = ()
    command_line: str = ""
    env: tuple = ()
    cwd: str = "/"
    capabilities: "Capabilities | None" = None
    rlimits: tuple = ()
    no_new_privileges: bool = False
    apparmor_profile: str = ""
    oom_score_adj: "int | None" = None
    selinux_label: str = ""
    io_priority: "dict | None" = None
    scheduler: "dict | None" = None
    exec_cpu_affinity: "dict | None" = None

    @classmethod
    def from_json(cls, raw, path="process"):
        size = raw.get("consoleSize")
        if size is not None:
            size = obj(size, f"{path}.consoleSize")
            size = ConsoleSize(
                height=integer(size.get("height"), f"{path}.consoleSize.height", True, minimum=0),
                width=integer(size.get("width"), f"{path}.consoleSize.width", True, minimum=0),
            )
        user = raw.get("user")
        caps = raw.get("capabilities")
        if caps is not None:
            caps = Capabilities.from_json(obj(caps, f"{path}.capabilities"), f"{path}.capabilities")
        return cls(
            terminal=boolean(raw.get("terminal"), f"{path}.terminal"),
            console_size=size,
            # The schema lets "user" out and runc then runs as root; so do we.
            user=User.from_json(obj(user, f"{path}.user"), f"{path}.user")
            if user is not None else User(),
            args=strings(raw.get("args"), f"{path}.args"),
            command_line=string(raw.get("commandLine"), f"{path}.commandLine"),
            env=strings(raw.get("env"), f"{path}.env"),
            cwd=string(raw.get("cwd"), f"{path}.cwd", True),
            capabilities=caps,
            rlimits=records(raw.get("rlimits"), f"{path}.rlimits", Rlimit.from_json),
            no_new_privileges=boolean(raw.get("noNewPrivileges"), f"{path}.noNewPrivileges"),
            apparmor_profile=string(raw.get("apparmorProfile"), f"{path}.apparmorProfile"),
            oom_score_adj=integer(raw.get("oomScoreAdj"), f"{path}.oomScoreAdj",
                                  minimum=-1000, maximum=1000),
            selinux_label=string(raw.get("selinuxLabel"), f"{path}.selinuxLabel"),
            io_priority=_opt_obj(raw.get("ioPriority"), f"{path}.ioPriority"),
            scheduler=_opt_obj(raw.get("scheduler"), f"{path}.scheduler"),
            exec_cpu_affinity=_opt_obj(raw.get("execCPUAffinity"), f"{path}.execCPUAffinity"),
        )


# ---------------------------------------------------------------- root, mounts, hooks

class Root(Record):
    path: str = ""
    readonly: bool = False


class IDMapping(Record):
    container_id: int = 0
    host_id: int = 0
    size: int = 0

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            container_id=integer(raw.get("containerID"), f"{path}.containerID", True, minimum=0),
            host_id=integer(raw.get("hostID"), f"{path}.hostID", True, minimum=0),
            size=integer(raw.get("size"), f"{path}.size", True, minimum=1),
        )


class Mount(Record):
    destination: str = ""
    type: str = ""
    source: str = ""
    options: tuple = ()
    uid_mappings: tuple = ()
    gid_mappings: tuple = ()

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            destination=string(raw.get("destination"), f"{path}.destination", True),
            type=string(raw.get("type"), f"{path}.type"),
            source=string(raw.get("source"), f"{path}.source"),
            options=strings(raw.get("options"), f"{path}.options"),
            uid_mappings=records(raw.get("uidMappings"), f"{path}.uidMappings", IDMapping.from_json),
            gid_mappings=records(raw.get("gidMappings"), f"{path}.gidMappings", IDMapping.from_json),
        )


class Hook(Record):
    path: str = ""
    args: tuple = ()
    env: tuple = ()
    timeout: "int | None" = None

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            path=string(raw.get("path"), f"{path}.path", True),
            args=strings(raw.get("args"), f"{path}.args"),
            env=strings(raw.get("env"), f"{path}.env"),
            timeout=integer(raw.get("timeout"), f"{path}.timeout", minimum=1),
        )


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
              "poststart", "poststop")


class Hooks(Record):
    prestart: tuple = ()
    create_runtime: tuple = ()
    create_container: tuple = ()
    start_container: tuple = ()
    poststart: tuple = ()
    poststop: tuple = ()

    @classmethod
    def from_json(cls, raw, path="hooks"):
        return cls(**{
            _snake(kind): records(raw.get(kind), f"{path}.{kind}", Hook.from_json)
            for kind in HOOK_KINDS
        })


# ---------------------------------------------------------------- linux

class Namespace(Record):
    type: str = ""
    path: str = ""

    @classmethod
    def from_json(cls, raw, path):
        return cls(type=string(raw.get("type"), f"{path}.type", True),
                   path=string(raw.get("path"), f"{path}.path"))


class Device(Record):
    type: str = ""
    path: str = ""
    major: int = 0
    minor: int = 0
    file_mode: "int | None" = None
    uid: "int | None" = None
    gid: "int | None" = None

    @classmethod
    def from_json(cls, raw, path):
        kind = string(raw.get("type"), f"{path}.type", True)
        needs_numbers = kind != "p"
        return cls(
            type=kind,
            path=string(raw.get("path"), f"{path}.path", True),
            major=integer(raw.get("major"), f"{path}.major", needs_numbers, 0, minimum=0),
            minor=integer(raw.get("minor"), f"{path}.minor", needs_numbers, 0, minimum=0),
            # Permission bits, possibly with the file-type bits too (podman sends 0o20600).
            file_mode=integer(raw.get("fileMode"), f"{path}.fileMode", minimum=0,
                              maximum=0o177777),
            uid=integer(raw.get("uid"), f"{path}.uid", minimum=0),
            gid=integer(raw.get("gid"), f"{path}.gid", minimum=0),
        )


class DeviceRule(Record):
    allow: bool = False
    type: str = "a"
    major: "int | None" = None
    minor: "int | None" = None
    access: str = "rwm"

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            allow=boolean(raw.get("allow"), f"{path}.allow"),
            type=string(raw.get("type"), f"{path}.type", default="a"),
            major=integer(raw.get("major"), f"{path}.major", minimum=-1),
            minor=integer(raw.get("minor"), f"{path}.minor", minimum=-1),
            access=string(raw.get("access"), f"{path}.access", default="rwm"),
        )


class Memory(Record):
    limit: "int | None" = None
    reservation: "int | None" = None
    swap: "int | None" = None
    kernel: "int | None" = None
    kernel_tcp: "int | None" = None
    swappiness: "int | None" = None
    disable_oom_killer: "bool | None" = None
    use_hierarchy: "bool | None" = None
    check_before_update: "bool | None" = None

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            limit=integer(raw.get("limit"), f"{path}.limit", minimum=-1),
            reservation=integer(raw.get("reservation"), f"{path}.reservation", minimum=-1),
            swap=integer(raw.get("swap"), f"{path}.swap", minimum=-1),
            kernel=integer(raw.get("kernel"), f"{path}.kernel", minimum=-1),
            kernel_tcp=integer(raw.get("kernelTCP"), f"{path}.kernelTCP", minimum=-1),
            swappiness=integer(raw.get("swappiness"), f"{path}.swappiness", minimum=0,
                               maximum=2**64 - 1),
            disable_oom_killer=_opt_bool(raw.get("disableOOMKiller"), f"{path}.disableOOMKiller"),
            use_hierarchy=_opt_bool(raw.get("useHierarchy"), f"{path}.useHierarchy"),
            check_before_update=_opt_bool(raw.get("checkBeforeUpdate"),
                                          f"{path}.checkBeforeUpdate"),
        )


class CPU(Record):
    shares: "int | None" = None
    quota: "int | None" = None
    burst: "int | None" = None
    period: "int | None" = None
    realtime_runtime: "int | None" = None
    realtime_period: "int | None" = None
    cpus: str = ""
    mems: str = ""
    idle: "int | None" = None

    @classmethod
    def from_json(cls, raw, path):
        return cls(
            shares=integer(raw.get("shares"), f"{path}.shares", minimum=0),
            quota=integer(raw.get("quota"), f"{path}.quota", minimum=-1),
            burst=integer(raw.get("burst"), f"{path}.burst", minimum=0),
            period=integer(raw.get("period"), f"{path}.period", minimum=0),
            realtime_runtime=integer(raw.get("realtimeRuntime"), f"{path}.realtimeRuntime"),
            realtime_period=integer(raw.get("realtimePeriod"), f"{path}.realtimePeriod", minimum=0),
            cpus=string(raw.get("cpus"), f"{path}.cpus"),
            mems=string(raw.get("mems"), f"{path}.mems"),
            idle=integer(raw.get("idle"), f"{path}.idle"),
        )


class Pids(Record):
    limit: int = 0


class ThrottleDevice(Record):
    major: int = 0
    minor: int = 0
    rate: int = 0

    @classmethod
    def from_json(cls, raw, path):
        return cls(major=integer(raw.get("major"), f"{path}.major", True, minimum=0),
                   minor=integer(raw.get("minor"), f"{path}.minor", True, minimum=0),
                   rate=integer(raw.get("rate"), f"{path}.rate", True, minimum=0))


class WeightDevice(Record):
    major: int = 0
    minor: int = 0
    weight: "int | None" = None
    leaf_weight: "int | None" = None

    @classmethod
    def from_json(cls, raw, path):
        return cls(major=integer(raw.get("major"), f"{path}.major", True, minimum=0),
                   minor=integer(raw.get("minor"), f"{path}.minor", True, minimum=0),
                   weight=integer(raw.get("weight"), f"{path}.weight", minimum=0),
                   leaf_weight=integer(raw.get("leafWeight"), f"{path}.leafWeight", minimum=0))


class BlockIO(Record):
    weight: "int | None" = None
    leaf_weight: "int | None" = None
    weight_device: tuple = ()
    throttle_read_bps_device: tuple = ()
    throttle_write_bps_device: tuple = ()
    throttle_read_iops_device: tuple = ()
    throttle_write_iops_device: tuple = ()

    @classmethod
    def from_json(cls, raw, path):
        throttles = {
            _snake(k): records(raw.get(k), f"{path}.{k}", ThrottleDevice.from_json)
            for k in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                      "throttleReadIOPSDevice", "throttleWriteIOPSDevice")
        }
        throttles["throttle_read_iops_device"] = throttles.pop("throttle_read_i_o_p_s_device")
        throttles["throttle_write_iops_device"] = throttles.pop("throttle_write_i_o_p_s_device")
        return cls(
            weight=integer(raw.get("weight"), f"{path}.weight", minimum=0),
            leaf_weight=integer(raw.get("leafWeight"), f"{path}.leafWeight", minimum=0),
            weight_device=records(raw.get("weightDevice"), f"{path}.weightDevice",
                                  WeightDevice.from_json),
            **throttles,
        )


class HugepageLimit(Record):
    page_size: str = ""
    limit: int = 0

    @classmethod
    def from_json(cls, raw, path):
        return cls(page_size=string(raw.get("pageSize"), f"{path}.pageSize", True),
                   limit=integer(raw.get("limit"), f"{path}.limit", True, minimum=0))


class Resources(Record):
    devices: tuple = ()
    memory: "Memory | None" = None
    cpu: "CPU | None" = None
    pids: "Pids | None" = None
    block_io: "BlockIO | None" = None
    hugepage_limits: tuple = ()
    network: "dict | None" = None
    rdma: "dict | None" = None
    unified: dict = {}

    @classmethod
    def from_json(cls, raw, path="linux.resources"):
        pids = raw.get("pids")
        if pids is not None:
            pids = obj(pids, f"{path}.pids")
            pids = Pids(limit=integer(pids.get("limit"), f"{path}.pids.limit", True))
        return cls(
            devices=records(raw.get("devices"), f"{path}.devices", DeviceRule.from_json),
            memory=_opt(raw.get("memory"), f"{path}.memory", Memory.from_json),
            cpu=_opt(raw.get("cpu"), f"{path}.cpu", CPU.from_json),
            pids=pids,
            block_io=_opt(raw.get("blockIO"), f"{path}.blockIO", BlockIO.from_json),
            hugepage_limits=records(raw.get("hugepageLimits"), f"{path}.hugepageLimits",
                                    HugepageLimit.from_json),
            network=_opt_obj(raw.get("network"), f"{path}.network"),
            rdma=_opt_obj(raw.get("rdma"), f"{path}.rdma"),
            unified=string_map(raw.get("unified"), f"{path}.unified"),
        )


class SeccompArg(Record):
    index: int = 0
    value: int = 0
    value_two: int = 0
    op: str = ""

    @classmethod
    def from_json(cls, raw, path):
        return cls(index=integer(raw.get("index"), f"{path}.index", True, minimum=0, maximum=5),
                   value=integer(raw.get("value"), f"{path}.value", True, minimum=0),
                   value_two=integer(raw.get("valueTwo"), f"{path}.valueTwo", default=0, minimum=0),
                   op=string(raw.get("op"), f"{path}.op", True))


class SeccompSyscall(Record):
    names: tuple = ()
    action: str = ""
    errno_ret: "int | None" = None
    args: tuple = ()

    @classmethod
    def from_json(cls, raw, path):
        return cls(names=strings(raw.get("names"), f"{path}.names"),
                   action=string(raw.get("action"), f"{path}.action", True),
                   errno_ret=integer(raw.get("errnoRet"), f"{path}.errnoRet", minimum=0),
                   args=records(raw.get("args"), f"{path}.args", SeccompArg.from_json))


class Seccomp(Record):
    default_action: str = ""
    default_errno_ret: "int | None" = None
    architectures: tuple = ()
    flags: tuple = ()
    listener_path: str = ""
    listener_metadata: str = ""
    syscalls: tuple = ()

    @classmethod
    def from_json(cls, raw, path="linux.seccomp"):
        return cls(
            default_action=string(raw.get("defaultAction"), f"{path}.defaultAction", True),
            default_errno_ret=integer(raw.get("defaultErrnoRet"), f"{path}.defaultErrnoRet",
                                      minimum=0),
            architectures=strings(raw.get("architectures"), f"{path}.architectures"),
            flags=strings(raw.get("flags"), f"{path}.flags"),
            listener_path=string(raw.get("listenerPath"), f"{path}.listenerPath"),
            listener_metadata=string(raw.get("listenerMetadata"), f"{path}.listenerMetadata"),
            syscalls=records(raw.get("syscalls"), f"{path}.syscalls", SeccompSyscall.from_json),
        )


class Linux(Record):
    namespaces: tuple = ()
    uid_mappings: tuple = ()
    gid_mappings: tuple = ()
    time_offsets: dict = {}
    devices: tuple = ()
    cgroups_path: str = ""
    resources: "Resources | None" = None
    rootfs_propagation: str = ""
    seccomp: "Seccomp | None" = None
    sysctl: dict = {}
    masked_paths: tuple = ()
    readonly_paths: tuple = ()
    mount_label: str = ""
    personality: "dict | None" = None
    intel_rdt: "dict | None" = None

    @classmethod
    def from_json(cls, raw, path="linux"):
        offsets = {}
        for clock, value in obj(raw.get("timeOffsets"), f"{path}.timeOffsets").items():
            value = obj(value, f"{path}.timeOffsets.{clock}")
            offsets[clock] = (
                integer(value.get("secs"), f"{path}.timeOffsets.{clock}.secs", default=0),
                integer(value.get("nanosecs"), f"{path}.timeOffsets.{clock}.nanosecs", default=0,
                        minimum=0),
            )
        return cls(
            namespaces=records(raw.get("namespaces"), f"{path}.namespaces", Namespace.from_json),
            uid_mappings=records(raw.get("uidMappings"), f"{path}.uidMappings",
                                 IDMapping.from_json),
            gid_mappings=records(raw.get("gidMappings"), f"{path}.gidMappings",
                                 IDMapping.from_json),
            time_offsets=offsets,
            devices=records(raw.get("devices"), f"{path}.devices", Device.from_json),
            cgroups_path=string(raw.get("cgroupsPath"), f"{path}.cgroupsPath"),
            resources=_opt(raw.get("resources"), f"{path}.resources", Resources.from_json),
            rootfs_propagation=string(raw.get("rootfsPropagation"), f"{path}.rootfsPropagation"),
            seccomp=_opt(raw.get("seccomp"), f"{path}.seccomp", Seccomp.from_json),
            sysctl=string_map(raw.get("sysctl"), f"{path}.sysctl"),
            masked_paths=strings(raw.get("maskedPaths"), f"{path}.maskedPaths"),
            readonly_paths=strings(raw.get("readonlyPaths"), f"{path}.readonlyPaths"),
            mount_label=string(raw.get("mountLabel"), f"{path}.mountLabel"),
            personality=_opt_obj(raw.get("personality"), f"{path}.personality"),
            intel_rdt=_opt_obj(raw.get("intelRdt"), f"{path}.intelRdt"),
        )

    def namespace(self, kind):
        """The Namespace entry of ``kind``, or None when the container shares the host's."""
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


# ---------------------------------------------------------------- the whole config

class Spec(Record):
    oci_version: str = ""
    root: "Root | None" = None
    mounts: tuple = ()
    process: "Process | None" = None
    hostname: str = ""
    domainname: str = ""
    hooks: Hooks = Hooks()
    annotations: dict = {}
    linux: Linux = Linux()

    @classmethod
    def from_json(cls, raw):
        raw = obj(raw, "config", True)
        root = raw.get("root")
        if root is not None:
            root = obj(root, "root")
            root = Root(path=string(root.get("path"), "root.path", True),
                        readonly=boolean(root.get("readonly"), "root.readonly"))
        process = raw.get("process")
        if process is not None:
            process = Process.from_json(obj(process, "process"))
        linux = raw.get("linux")
        return cls(
            oci_version=string(raw.get("ociVersion"), "ociVersion", True),
            root=root,
            mounts=records(raw.get("mounts"), "mounts", Mount.from_json),
            process=process,
            hostname=string(raw.get("hostname"), "hostname"),
            domainname=string(raw.get("domainname"), "domainname"),
            hooks=Hooks.from_json(obj(raw.get("hooks"), "hooks")),
            annotations=string_map(raw.get("annotations"), "annotations"),
            linux=Linux.from_json(obj(linux, "linux")) if linux is not None else Linux(),
        )


# ---------------------------------------------------------------- helpers

def _snake(name):
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def _array(value, path):
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(path, "must be an array")
    return value


def _opt(value, path, parse):
    if value is None:
        return None
    return parse(obj(value, path), path)


def _opt_obj(value, path):
    if value is None:
        return None
    return dict(obj(value, path))


def _opt_bool(value, path):
    if value is None:
        return None
    return boolean(value, path)
