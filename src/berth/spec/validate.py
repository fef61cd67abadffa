"""The cross-field rules a parsed config.json must follow before berth-oci creates a container.

``validate`` runs ``CHECKS`` in order; each check looks at one part of the config and the first
one that objects raises ``InvalidArgument("<field path>: <what is wrong>")`` (or ``Unsupported``
when the config is fine but this host cannot honour it). Types were already checked by
``Spec.from_json``. This runs on every ``create``, so it imports nothing beyond ``os`` and reads
the filesystem only for the fields that name a path.
"""

from berth.sys import fastos as os
from stat import S_ISDIR

from berth.spec.ident import validate_id  # noqa: F401 - part of this module's API
from berth.errors import InvalidArgument, Unsupported
from berth.spec.caps import CAPS
from berth.spec.runtime import NAMESPACE_TYPES

RLIMITS = frozenset((
    "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
    "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
))

ROOTFS_PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                       "unbindable", "runbindable")

DEVICE_TYPES = ("c", "b", "u", "p")

PERSONALITY_DOMAINS = ("LINUX", "LINUX32")

TIME_CLOCKS = ("monotonic", "boottime")

SECCOMP_ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
)

SECCOMP_OPERATORS = (
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)

SECCOMP_ARCHS = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH", "SCMP_ARCH_SHEB", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
)

SECCOMP_FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)

# Sysctls that belong to the ipc namespace besides fs.mqueue.*; runc's list, read as prefixes.
_IPC_SYSCTL_PREFIXES = ("kernel.shm", "kernel.msg", "kernel.sem")
_UTS_SYSCTLS = ("kernel.hostname", "kernel.domainname")

# An id mapping covers [id, id + size) of the 32-bit id space; the kernel takes at most 340.
_ID_SPACE = 1 << 32
_MAX_ID_MAPPINGS = 340


# ---------------------------------------------------------------- the host

def apparmor_enabled():
    """True when the running kernel has AppArmor loaded and enabled."""
    if not os.path.isdir("/sys/kernel/security/apparmor"):
        return False
    try:
        with open("/sys/module/apparmor/parameters/enabled", "rb") as f:
            return f.read(1) == b"Y"
    except OSError:
        return False


def selinux_enabled():
    """True when SELinux is mounted at /sys/fs/selinux."""
    return os.path.exists("/sys/fs/selinux/enforce")


class Host:
    """What the checks ask of the machine. Unset answers are looked up once, when first asked;
    unit tests pass their own, e.g. ``Host(has_apparmor=True)``."""

    def __init__(self, has_apparmor=None, has_selinux=None):
        self._apparmor = has_apparmor
        self._selinux = has_selinux

    @property
    def has_apparmor(self):
        if self._apparmor is None:
            self._apparmor = apparmor_enabled()
        return self._apparmor

    @property
    def has_selinux(self):
        if self._selinux is None:
            self._selinux = selinux_enabled()
        return self._selinux


# ---------------------------------------------------------------- entry points

def validate(spec, bundle, container_id=None, *, host=None):
    """Run every check on ``spec`` (a ``berth.spec.runtime.Spec``) read from ``bundle``."""
    if container_id is not None:
        validate_id(container_id)
    if host is None:
        host = Host()
    for check in CHECKS:
        check(spec, bundle, host)


# ---------------------------------------------------------------- checks

def _fail(path, message):
    raise InvalidArgument(f"{path}: {message}")


def check_version(spec, bundle, host):
    version = spec.oci_version
    if not version:
        _fail("ociVersion", "is required")
    if version.split(".", 1)[0] != "1":
        _fail("ociVersion", f"{version} is not supported (berth runs 1.x configs)")


def check_root(spec, bundle, host):
    root = spec.root
    if root is None or not root.path:
        _fail("root.path", "is required")
    path = root.path if os.path.isabs(root.path) else os.path.join(bundle, root.path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        _fail("root.path", f"{path} does not exist")
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        _fail("root.path", f"{path}: {getattr(err, 'strerror', None) or err}")
    if not S_ISDIR(mode):
        _fail("root.path", f"{path} is not a directory")


def check_process(spec, bundle, host):
    proc = spec.process
    if proc is None:
        _fail("process", "is required")
    if not proc.args and not proc.command_line:
        _fail("process.args", "must not be empty")
    for i, arg in enumerate(proc.args):
        if "\0" in arg:
            _fail(f"process.args[{i}]", "must not contain a NUL byte")
    if not proc.cwd.startswith("/"):
        _fail("process.cwd", "must be an absolute path")
    for i, entry in enumerate(proc.env):
        eq = entry.find("=")
        if eq < 0:
            _fail(f"process.env[{i}]", f"{entry!r} is not KEY=VALUE")
        if eq == 0:
            _fail(f"process.env[{i}]", "the variable name must not be empty")
        if "\0" in entry:
            _fail(f"process.env[{i}]", "must not contain a NUL byte")


def check_namespaces(spec, bundle, host):
    seen = set()
    for i, ns in enumerate(spec.linux.namespaces):
        if ns.type not in NAMESPACE_TYPES:
            _fail(f"linux.namespaces[{i}].type", f"unknown namespace type {ns.type!r}")
        if ns.type in seen:
            _fail(f"linux.namespaces[{i}].type", f"duplicate {ns.type} namespace")
        seen.add(ns.type)
        if ns.path:
            if not ns.path.startswith("/"):
                _fail(f"linux.namespaces[{i}].path", "must be an absolute path")
            if not os.path.exists(ns.path):
                _fail(f"linux.namespaces[{i}].path", f"{ns.path} does not exist")


def check_user_namespace(spec, bundle, host):
    linux = spec.linux
    userns = linux.namespace("user")
    new_userns = userns is not None and not userns.path
    for field, maps in (("uidMappings", linux.uid_mappings), ("gidMappings", linux.gid_mappings)):
        if maps and not new_userns:
            _fail(f"linux.{field}", "needs a new user namespace")
        if new_userns and not maps:
            _fail(f"linux.{field}", "a new user namespace needs mappings")
        _check_id_mappings(f"linux.{field}", maps)
    for i, mount in enumerate(spec.mounts):
        path = f"mounts[{i}]"
        if bool(mount.uid_mappings) != bool(mount.gid_mappings):
            _fail(f"{path}.uidMappings", "an idmapped mount needs both uid and gid mappings")
        _check_id_mappings(f"{path}.uidMappings", mount.uid_mappings)
        _check_id_mappings(f"{path}.gidMappings", mount.gid_mappings)


def _check_id_mappings(path, maps):
    if len(maps) > _MAX_ID_MAPPINGS:
        _fail(path, f"at most {_MAX_ID_MAPPINGS} mappings are allowed")
    for i, m in enumerate(maps):
        if m.size <= 0:
            _fail(f"{path}[{i}].size", "must be at least 1")
        if m.container_id + m.size > _ID_SPACE:
            _fail(f"{path}[{i}].size", "the range passes the largest container id")
        if m.host_id + m.size > _ID_SPACE:
            _fail(f"{path}[{i}].size", "the range passes the largest host id")


def check_capabilities(spec, bundle, host):
    caps = spec.process.capabilities if spec.process is not None else None
    if caps is None:
        return
    for kind in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        for i, name in enumerate(getattr(caps, kind)):
            if name not in CAPS:
                _fail(f"process.capabilities.{kind}[{i}]", f"unknown capability {name}")


def check_rlimits(spec, bundle, host):
    if spec.process is None:
        return
    seen = set()
    for i, limit in enumerate(spec.process.rlimits):
        path = f"process.rlimits[{i}]"
        if limit.type not in RLIMITS:
            _fail(f"{path}.type", f"unknown rlimit {limit.type}")
        if limit.type in seen:
            _fail(f"{path}.type", f"duplicate {limit.type}")
        seen.add(limit.type)
        if limit.soft > limit.hard:
            _fail(f"{path}.soft", f"{limit.soft} is above the hard limit {limit.hard}")


def check_hostname(spec, bundle, host):
    # Joining a uts namespace by path is allowed: CRI sets the pod's hostname that way.
    if spec.linux.namespace("uts") is None:
        if spec.hostname:
            _fail("hostname", "needs a new uts namespace")
        if spec.domainname:
            _fail("domainname", "needs a new uts namespace")


def check_sysctl(spec, bundle, host):
    linux = spec.linux
    for key in linux.sysctl:
        path = f"linux.sysctl.{key}"
        for part in key.replace("/", ".").split("."):
            if part == "":
                _fail(path, "is not a valid sysctl name")
        if key.startswith("net."):
            _need_own_namespace(linux, "network", path)
        elif key.startswith("fs.mqueue.") or key.startswith(_IPC_SYSCTL_PREFIXES):
            _need_own_namespace(linux, "ipc", path)
        elif key in _UTS_SYSCTLS:
            _need_own_namespace(linux, "uts", path)
        else:
            _fail(path, "is not namespaced: setting it would change the host")


def _need_own_namespace(linux, kind, path):
    ns = linux.namespace(kind)
    if ns is None:
        _fail(path, f"needs a {kind} namespace of its own")
    if ns.path and kind == "network" and _same_file(ns.path, "/proc/self/ns/net"):
        _fail(path, "the network namespace joined is the host's")


def _same_file(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_mounts(spec, bundle, host):
    for i, mount in enumerate(spec.mounts):
        path = f"mounts[{i}]"
        if not mount.destination:
            _fail(f"{path}.destination", "is required")
        # A relative destination is deprecated but valid: it is read relative to "/".
        is_bind = mount.type == "bind" or "bind" in mount.options or "rbind" in mount.options
        if is_bind:
            if not mount.source:
                _fail(f"{path}.source", "a bind mount needs a source")
        elif not mount.type:
            _fail(f"{path}.type", "is required unless the mount is a bind mount")
        if mount.uid_mappings and not is_bind:
            _fail(f"{path}.uidMappings", "only bind mounts can be idmapped")


def check_devices(spec, bundle, host):
    for i, dev in enumerate(spec.linux.devices):
        path = f"linux.devices[{i}]"
        if dev.type not in DEVICE_TYPES:
            _fail(f"{path}.type", f"must be one of c, b, u, p, not {dev.type!r}")
        if not dev.path.startswith("/"):
            _fail(f"{path}.path", "must be an absolute path")
    res = spec.linux.resources
    for i, rule in enumerate(res.devices if res is not None else ()):
        path = f"linux.resources.devices[{i}]"
        if rule.type not in ("a", "c", "b"):
            _fail(f"{path}.type", f"must be a, c or b, not {rule.type!r}")
        if not rule.access or rule.access.strip("rwm"):
            _fail(f"{path}.access", f"must be made of r, w and m, not {rule.access!r}")


def check_rootfs_propagation(spec, bundle, host):
    value = spec.linux.rootfs_propagation
    if value not in ROOTFS_PROPAGATIONS:
        _fail("linux.rootfsPropagation", f"unknown propagation {value!r}")


def check_masked_paths(spec, bundle, host):
    for field, paths in (("maskedPaths", spec.linux.masked_paths),
                         ("readonlyPaths", spec.linux.readonly_paths)):
        for i, p in enumerate(paths):
            if not p.startswith("/"):
                _fail(f"linux.{field}[{i}]", "must be an absolute path")


def check_cgroups_path(spec, bundle, host):
    path = spec.linux.cgroups_path
    if ".." in path.split("/"):
        _fail("linux.cgroupsPath", "must not contain '..'")


def check_seccomp(spec, bundle, host):
    sc = spec.linux.seccomp
    if sc is None:
        return
    base = "linux.seccomp"
    if not sc.default_action:
        _fail(f"{base}.defaultAction", "is required")
    notify = sc.default_action == "SCMP_ACT_NOTIFY"
    if sc.default_action not in SECCOMP_ACTIONS:
        _fail(f"{base}.defaultAction", f"unknown action {sc.default_action}")
    for i, arch in enumerate(sc.architectures):
        if arch not in SECCOMP_ARCHS:
            _fail(f"{base}.architectures[{i}]", f"unknown architecture {arch}")
    for i, flag in enumerate(sc.flags):
        if flag not in SECCOMP_FLAGS:
            _fail(f"{base}.flags[{i}]", f"unknown flag {flag}")
    for i, rule in enumerate(sc.syscalls):
        path = f"{base}.syscalls[{i}]"
        if not rule.names:
            _fail(f"{path}.names", "must not be empty")
        if rule.action not in SECCOMP_ACTIONS:
            _fail(f"{path}.action", f"unknown action {rule.action}")
        notify = notify or rule.action == "SCMP_ACT_NOTIFY"
        for j, arg in enumerate(rule.args):
            if arg.op not in SECCOMP_OPERATORS:
                _fail(f"{path}.args[{j}].op", f"unknown operator {arg.op}")
    if notify and not sc.listener_path:
        _fail(f"{base}.listenerPath", "is required when an action is SCMP_ACT_NOTIFY")


def check_time_offsets(spec, bundle, host):
    offsets = spec.linux.time_offsets
    if not offsets:
        return
    ns = spec.linux.namespace("time")
    if ns is None or ns.path:
        _fail("linux.timeOffsets", "needs a new time namespace")
    for clock in offsets:
        if clock not in TIME_CLOCKS:
            _fail(f"linux.timeOffsets.{clock}", "unknown clock (monotonic or boottime)")


def check_personality(spec, bundle, host):
    pers = spec.linux.personality
    if pers is None:
        return
    domain = pers.get("domain")
    if domain not in PERSONALITY_DOMAINS:
        _fail("linux.personality.domain", f"must be LINUX or LINUX32, not {domain!r}")
    flags = pers.get("flags")
    if flags is not None and (not isinstance(flags, list)
                              or not all(isinstance(f, str) for f in flags)):
        _fail("linux.personality.flags", "must be an array of strings")


def check_intel_rdt(spec, bundle, host):
    if spec.linux.intel_rdt is not None:
        raise Unsupported("linux.intelRdt: Intel RDT is not supported by berth")


def check_security_labels(spec, bundle, host):
    proc = spec.process
    if proc is None:
        return
    if proc.apparmor_profile and not host.has_apparmor:
        raise Unsupported("process.apparmorProfile: apparmor is not enabled on this host")
    if proc.selinux_label and not host.has_selinux:
        raise Unsupported("process.selinuxLabel: selinux is not enabled on this host")
    if spec.linux.mount_label and not host.has_selinux:
        raise Unsupported("linux.mountLabel: selinux is not enabled on this host")


CHECKS = (
    check_version,
    check_root,
    check_process,
    check_namespaces,
    check_user_namespace,
    check_capabilities,
    check_rlimits,
    check_hostname,
    check_sysctl,
    check_mounts,
    check_devices,
    check_rootfs_propagation,
    check_masked_paths,
    check_cgroups_path,
    check_seccomp,
    check_time_offsets,
    check_personality,
    check_intel_rdt,
    check_security_labels,
)


def validate_process(process):
    """The checks that apply to a lone process (what `exec` runs), with the same messages."""
    from berth.spec.runtime import Spec

    spec = Spec(process=process)
    for check in (check_process, check_capabilities, check_rlimits):
        check(spec, "", None)
