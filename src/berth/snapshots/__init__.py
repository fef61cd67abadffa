"""Snapshots: directories for image layers and containers, handed out as lists of mounts.

A snapshotter never mounts (containerd's rule): prepare/view/mounts return ``list[Mount]``
and whoever needs the tree mounts them. ``OverlaySnapshotter`` stacks layers with overlayfs;
``CopySnapshotter`` gives every snapshot a full copy, for hosts where overlay does not work.
``default_snapshotter`` picks one per root, probing the kernel once.
"""

import os

from berth.errors import from_oserror

_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_FLAGS = {"ro": _MS_RDONLY, "rw": 0, "bind": _MS_BIND, "rbind": _MS_BIND | _MS_REC}


class Mount:
    """One mount(2): filesystem type, source and options, as OCI's config.json spells them."""

    __slots__ = ("type", "source", "options")

    def __init__(self, type, source, options=()):
        self.type = type
        self.source = source
        self.options = list(options)

    def __eq__(self, other):
        return (isinstance(other, Mount) and (self.type, self.source, self.options)
                == (other.type, other.source, other.options))

    def __repr__(self):
        return f"Mount({self.type!r}, {self.source!r}, {self.options!r})"

    def to_oci(self, destination=None):
        out = {"type": self.type, "source": self.source, "options": list(self.options)}
        if destination is not None:
            out["destination"] = destination
        return out

    @classmethod
    def from_oci(cls, data):
        return cls(data["type"], data["source"], data.get("options") or ())

    def mount(self, target):
        """Mount on ``target`` (for appliers and tests; snapshotters never call this)."""
        from berth.sys import linux

        flags = 0
        data = []
        for opt in self.options:
            if opt in _FLAGS:
                flags |= _FLAGS[opt]
            else:
                data.append(opt)
        try:
            if any(opt.startswith("lowerdir+=") for opt in data):
                linux.mount_fs(self.type, self.source, target, data,
                               readonly=bool(flags & _MS_RDONLY))
                return
            fstype = None if flags & _MS_BIND else self.type
            linux.mount(self.source, target, fstype, flags, ",".join(data) or None)
            if flags & _MS_BIND and flags & _MS_RDONLY:
                # A bind mount ignores MS_RDONLY until remounted.
                linux.mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        except OSError as err:
            raise from_oserror(err, f"mount {self.type} {self.source} on {target}") from None


def mount_all(mounts, target):
    """Mount ``mounts`` one over the other on ``target``."""
    for m in mounts:
        m.mount(target)


def unmount(target):
    """Detach whatever is mounted on ``target``."""
    from berth.sys import linux

    try:
        linux.umount(target, 2)  # MNT_DETACH
    except OSError as err:
        raise from_oserror(err, f"unmount {target}") from None


def default_snapshotter(root, metadata):
    """The overlay snapshotter if overlayfs mounts under ``root`` on this host, else copy.

    The answer is probed once and kept in <root>/snapshots/driver.
    """
    base = os.path.join(root, "snapshots")
    os.makedirs(base, 0o700, exist_ok=True)
    cache = os.path.join(base, "driver")
    try:
        with open(cache) as f:
            driver = f.read().strip()
    except FileNotFoundError:
        driver = ""
    if driver not in ("overlay", "copy"):
        from berth.snapshots import overlay

        driver = "overlay" if overlay.supported(base) else "copy"
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(driver + "\n")
        os.rename(tmp, cache)
    if driver == "overlay":
        from berth.snapshots.overlay import OverlaySnapshotter as cls
    else:
        from berth.snapshots.copy import CopySnapshotter as cls
    return cls(root, metadata)
