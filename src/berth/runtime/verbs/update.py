"""`berth-oci update [--resources FILE|-] [flags] ID`: change a running container's limits.

The flags are runc's. Sizes take docker's units (``64m``, ``1.5g``, ``512KiB``: powers of
1024) or -1 for unlimited. A --resources document (an OCI LinuxResources object, ``-`` for
stdin) is read first and the flags override it. As with runc, only the memory, cpu, blkio
weight, pids and unified limits are updated: devices, hugepages and network are ignored.
Only what was asked is written to the cgroup; the container's config.json copy records it.
"""

import sys

from berth.errors import Conflict, InvalidArgument, Unsupported
from berth.runtime import _args
from berth.runtime.main import need_id
from berth.runtime.state import Container

USAGE = """usage: berth-oci update [--resources FILE|-] [flags] ID
  --blkio-weight N         --cpu-period N      --cpu-quota N      --cpu-burst N
  --cpu-share N            --cpu-rt-period N   --cpu-rt-runtime N --cpu-idle 0|1
  --cpuset-cpus LIST       --cpuset-mems LIST  --pids-limit N
  --memory SIZE            --memory-reservation SIZE              --memory-swap SIZE
  --kernel-memory SIZE     --kernel-memory-tcp SIZE
  --l3-cache-schema S      --mem-bw-schema S   (Intel RDT: not supported)
"""

# flag -> (section, key, kind); kind is how the text is read.
FIELDS = {
    "memory": ("memory", "limit", "size"),
    "memory-reservation": ("memory", "reservation", "size"),
    "memory-swap": ("memory", "swap", "size"),
    "kernel-memory": ("memory", "kernel", "size"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "size"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpu-share": ("cpu", "shares", "uint"),
    "cpu-burst": ("cpu", "burst", "uint"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu-idle": ("cpu", "idle", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
}

FLAGS = _args.table(
    ("--resources", "-r", "value", ""),
    ("--blkio-weight", None, "int", 0),
    ("--pids-limit", None, "int", 0),
    ("--l3-cache-schema", None, "value", ""),
    ("--mem-bw-schema", None, "value", ""),
    *((f"--{name}", None, "value", "") for name in FIELDS),
)

# What `update` may change, per LinuxResources section (runc's update copies these alone).
_UPDATABLE = {
    "memory": ("limit", "reservation", "swap", "kernel", "kernelTCP", "checkBeforeUpdate"),
    "cpu": ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
            "mems", "idle"),
    "blockIO": ("weight",),
    "pids": ("limit",),
}

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DIGITS = "0123456789"


def parse_size(text):
    """Bytes in ``text`` as docker's RAMInBytes reads it ("64m", "1.5 GiB", "100"); -1 stays -1.

    The grammar: digits with dot-separated decimals, an optional space, an optional unit
    letter (k, m, g, t, p: powers of 1024, any case), an optional "i", an optional "b".
    """
    if text == "-1":
        return -1
    bad = InvalidArgument(f"invalid size: {text!r}")
    i = 0
    n = len(text)
    while i < n and (text[i] in _DIGITS or (text[i] == "." and i > 0)):
        i += 1
    number, rest = text[:i], text[i:].lower()
    if not number or number.endswith(".") or ".." in number:
        raise bad
    if rest.startswith(" "):
        rest = rest[1:]
    unit = rest[:1] if rest[:1] in ("k", "m", "g", "t", "p") else ""
    rest = rest[len(unit):]
    if rest.startswith("i"):
        rest = rest[1:]
    if rest not in ("", "b"):
        raise bad
    try:
        value = float(number)
    except ValueError:
        raise bad from None
    size = int(value * _UNITS[unit])
    if size >= 1 << 63:
        raise InvalidArgument(f"invalid size: {text!r}: out of range")
    return size


def _number(text, signed):
    body = text[1:] if signed and text[:1] == "-" else text
    if not body or any(ch not in _DIGITS for ch in body):
        raise InvalidArgument(f"{text!r} is not {'an' if signed else 'an unsigned'} integer")
    value = int(text)
    if value >= (1 << 63 if signed else 1 << 64) or value < -(1 << 63):
        raise InvalidArgument(f"{text!r} is out of range")
    return value


def flag_resources(opts):
    """The LinuxResources JSON that the flags in ``opts`` ask for (only those given)."""
    raw = {}
    for name, (section, key, kind) in FIELDS.items():
        text = opts.get(name, "")
        if text == "":
            continue
        try:
            if kind == "size":
                value = parse_size(text)
            elif kind == "str":
                value = text
            else:
                value = _number(text, kind == "int")
        except InvalidArgument as err:
            raise InvalidArgument(f"invalid value for --{name}: {err}") from None
        raw.setdefault(section, {})[key] = value
    if opts.get("blkio-weight"):
        raw["blockIO"] = {"weight": opts["blkio-weight"]}
    if opts.get("pids-limit"):
        raw["pids"] = {"limit": opts["pids-limit"]}
    for name in ("l3-cache-schema", "mem-bw-schema"):
        if opts.get(name):
            raise Unsupported(f"--{name}: Intel RDT is not supported by berth-oci")
    return raw


def updatable(raw, what="resources"):
    """Keep the parts of a LinuxResources document that `update` applies."""
    if not isinstance(raw, dict):
        raise InvalidArgument(f"{what}: must be a JSON object")
    out = {}
    for section, keys in _UPDATABLE.items():
        part = raw.get(section)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise InvalidArgument(f"{what}.{section}: must be an object")
        kept = {k: part[k] for k in keys if k in part}
        if kept:
            out[section] = kept
    if raw.get("unified"):
        out["unified"] = raw["unified"]
    pids = out.get("pids")
    if pids is not None and pids.get("limit") == 0:
        del out["pids"]  # 0 means "not set" to runc, not "no limit"
    return out


def merge(base, over):
    """``base`` with ``over``'s sections laid on top, key by key."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, values in over.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def read_resources(source):
    from berth.spec import jsonio

    if source == "-":
        return jsonio.loads(sys.stdin.buffer.read(), "--resources (stdin)")
    return jsonio.load_file(source, f"--resources {source}")


def update(root, container_id, raw):
    """Apply the LinuxResources JSON ``raw`` to a running container and record it."""
    from berth.spec.runtime import Resources

    resources = Resources.from_json(raw, "resources")
    c = Container.locked(root, container_id)
    try:
        if c.status() == "stopped":
            raise Conflict(f"cannot update container {container_id}: container not running")

        c.cgroup().set(resources)
        _record(c, raw)
    finally:
        c.unlock()


def _record(c, raw):
    """Keep the recorded config's linux.resources in step, for later readers."""
    try:
        config = c.config()
    except (OSError, InvalidArgument):
        return  # no readable copy to keep in step; the cgroup holds the truth
    linux = config.setdefault("linux", {})
    linux["resources"] = merge(linux.get("resources") or {}, raw)
    c.state["config"] = config
    c.save()


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    container_id = need_id(verb, args)[0]
    raw = updatable(read_resources(opts["resources"])) if opts["resources"] else {}
    raw = merge(raw, flag_resources(opts))
    update(g.root, container_id, raw)
    return 0
