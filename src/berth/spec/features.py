"""What ``berth-oci features`` prints: the runtime-spec features document for this runtime
on this host (features-schema.json), as ``runc features`` does."""

from berth.sys import fastos as os

from berth import __version__
from berth.spec.caps import CAPS
from berth.spec.runtime import HOOK_KINDS, NAMESPACE_TYPES, OCI_VERSION
from berth.spec.validate import (
    SECCOMP_ACTIONS, SECCOMP_FLAGS, SECCOMP_OPERATORS, apparmor_enabled, selinux_enabled,
)

OCI_VERSION_MIN = "1.0.0"

# Every option a config's mount may carry that berth turns into mount flags or acts on itself;
# options not listed (size=, mode=, ...) are passed to the filesystem as data.
MOUNT_OPTIONS = (
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
    "ratime", "rbind", "rdev", "rdiratime", "relatime", "remount", "rexec", "rnoatime",
    "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid",
    "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave",
    "rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave",
    "strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable",
)

SUPPORTED_SECCOMP_ARCHS = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
                           "SCMP_ARCH_AARCH64")

# What berth.runtime.seccomp can build: every action but SCMP_ACT_NOTIFY (no listener support
# yet), and the filter flags libseccomp sets for it, with the kernel release that took each.
_SECCOMP_UNSUPPORTED_ACTIONS = ("SCMP_ACT_NOTIFY",)
_SECCOMP_FLAG_SINCE = {
    "SECCOMP_FILTER_FLAG_TSYNC": (3, 17),
    "SECCOMP_FILTER_FLAG_LOG": (4, 14),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (4, 17),
}


def features():
    """The features document as a JSON-ready dict."""
    kernel = _kernel_version()
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": sorted(CAPS, key=CAPS.get),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {
                "enabled": _seccomp_enabled(),
                "actions": [a for a in SECCOMP_ACTIONS
                            if a not in _SECCOMP_UNSUPPORTED_ACTIONS],
                "operators": list(SECCOMP_OPERATORS),
                "archs": list(SUPPORTED_SECCOMP_ARCHS),
                "knownFlags": list(SECCOMP_FLAGS),
                "supportedFlags": [f for f in SECCOMP_FLAGS
                                   if kernel >= _SECCOMP_FLAG_SINCE.get(f, (999,))],
            },
            "apparmor": {"enabled": apparmor_enabled()},
            "selinux": {"enabled": selinux_enabled()},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
            "netDevices": {"enabled": False},
        },
        "annotations": {"io.berth.version": __version__},
    }


def _kernel_version():
    parts = []
    for piece in os.uname().release.split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return tuple(parts)


def _seccomp_enabled():
    """True when the kernel has seccomp filters and libseccomp, which berth builds them with,
    can be loaded."""
    try:
        with open("/proc/self/status", "rb") as f:
            if not any(line.startswith(b"Seccomp:") for line in f):
                return False
    except OSError:
        return False
    from berth.sys import seccomp

    try:
        seccomp.library()
    except OSError:
        return False
    return True
