"""The cgroup v2 driver: one directory in the unified hierarchy mounted at the cgroup root.

Owns the v2 file names and the conversions from the spec's v1-shaped values: cpu.shares to
cpu.weight, quota/period to cpu.max, memory+swap to memory.swap.max, blkio weights to
io.weight, throttles to io.max; cgroup.freeze/cgroup.events, cgroup.kill and the v2
statistics files. ``linux.resources.unified`` keys are written as file names.

Device rules: v2 has no devices.allow; ``linux.resources.devices`` becomes an eBPF program
(berth.cgroups.devices) attached to the directory through berth.sys.bpf. Setting them
again replaces the program.
"""

from berth.sys import fastos as os

from berth.cgroups import Manager, _fs
from berth.errors import BerthError, InvalidArgument, SystemFailure, Unsupported

_R = "linux.resources"
_MAX = 2**64 - 1


def shares_to_weight(shares):
    """cpu.shares (2..262144) to cpu.weight (1..10000), the mapping runc and crun use."""
    if not shares:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io(weight):
    """blkio.weight (10..1000) to io.weight (1..10000)."""
    if not weight:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def cpu_max(quota, period):
    """cpu.max's "QUOTA PERIOD" ("max" when unlimited), or None when neither is given."""
    if not quota and not period:
        return None
    text = str(quota) if quota and quota > 0 else "max"
    if period:
        text += f" {period}"
    return text


def swap_max(swap, limit):
    """memory.swap.max from the spec's memory+swap total: swap alone is ``swap - limit``.

    Returns None when nothing is to be written, "max" for unlimited.
    """
    if not swap:
        return None
    if swap == -1:
        return "max"
    if not limit or limit == -1:
        raise InvalidArgument(f"{_R}.memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise InvalidArgument(f"{_R}.memory.swap: memory+swap ({swap}) must not be below "
                              f"the memory limit ({limit})")
    return swap - limit


def _limit(value):
    return "max" if value == -1 else value


class V2Manager(Manager):
    """A container's cgroup in the unified hierarchy mounted at ``root``."""

    version = 2

    def __init__(self, path, root="/sys/fs/cgroup"):
        self.path = path
        self.root = root
        self.dir = os.path.join(root, path.lstrip("/"))

    def describe(self):
        """Plain data that ``manager_from`` turns back into this manager."""
        return {"version": 2, "path": self.path, "root": self.root}

    # ------------------------------------------------------------ lifecycle

    def create(self):
        _fs.make_dirs(self.dir)
        self._enable_controllers()

    def _enable_controllers(self):
        # Each ancestor hands its available controllers down to the next level. A parent
        # that holds processes refuses (EBUSY, no internal processes): that controller is
        # then simply unavailable, as is one the host does not delegate.
        parent = self.root
        parts = self.path.strip("/").split("/")
        for part in parts:
            available = _fs.read(parent, "cgroup.controllers", "").split()
            enabled = set(_fs.read(parent, "cgroup.subtree_control", "").split())
            for name in available:
                if name in enabled:
                    continue
                try:
                    _fs.write(parent, "cgroup.subtree_control", f"+{name}", "linux.cgroupsPath")
                except BerthError:
                    pass
            parent = os.path.join(parent, part)

    def apply(self, pid):
        _fs.add_proc(self.dir, pid)

    def exists(self):
        return os.path.isdir(self.dir)

    def destroy(self):
        _fs.destroy_all([self.dir])

    def container_mounts(self):
        return [(self.dir, "")]

    def _controllers(self):
        return set(_fs.read(self.dir, "cgroup.controllers", "").split())

    def _need(self, controller, field):
        if controller not in self._controllers():
            raise Unsupported(f"{field}: the {controller} cgroup controller is not enabled "
                              f"for {self.path}")
        return self.dir

    # ------------------------------------------------------------ processes

    def pids(self):
        return _fs.procs_in(self.dir)

    def can_freeze(self):
        return _fs.exists(self.dir, "cgroup.freeze")

    def freeze(self):
        self._freeze(1)

    def thaw(self):
        self._freeze(0)

    def _freeze(self, value):
        field = f"cgroup {'freeze' if value else 'thaw'}"
        _fs.write(self.dir, "cgroup.freeze", value, field)
        if not _fs.wait_until(lambda: self._events().get("frozen", 0) == value):
            if value:
                _fs.write(self.dir, "cgroup.freeze", 0, field)
            raise SystemFailure(f"{field}: {self.dir} did not settle")

    def _events(self):
        return _fs.read_keyed(self.dir, "cgroup.events")

    def frozen(self):
        return _fs.read(self.dir, "cgroup.freeze") == "1"

    def kill_all(self, sig):
        if sig == 9 and _fs.exists(self.dir, "cgroup.kill"):
            _fs.write(self.dir, "cgroup.kill", 1, "cgroup kill")
            return
        _fs.signal_all(self, sig)

    def oom_kill_count(self):
        return _fs.read_keyed(self.dir, "memory.events").get("oom_kill", 0)

    # ------------------------------------------------------------ limits

    def set(self, resources):
        if resources is None:
            return
        d = self.dir
        if resources.memory is not None:
            self._set_memory(resources.memory)
        if resources.cpu is not None:
            self._set_cpu(resources.cpu)
        if resources.block_io is not None:
            self._set_io(resources.block_io)
        _fs.set_pids_hugetlb_rdma(self._need, resources, "max")
        if resources.network and (resources.network.get("classID") is not None
                                  or resources.network.get("priorities")):
            raise Unsupported(f"{_R}.network: net_cls and net_prio do not exist on cgroup v2")
        if resources.devices:
            self._set_devices(resources.devices)
        for key, value in resources.unified.items():
            field = f"{_R}.unified.{key}"
            if "/" in key or key.startswith(".") or not key:
                raise InvalidArgument(f"{field}: not a cgroup file name")
            _fs.write(d, key, value, field)

    def _set_devices(self, rules):
        from berth.cgroups.devices import program
        from berth.errors import from_oserror
        from berth.sys import bpf

        insns = program(rules)
        try:
            bpf.attach_device_program(self.dir, insns)
        except OSError as err:
            raise from_oserror(err, f"{_R}.devices: cannot attach the device filter to "
                                    f"{self.dir}") from err

    def _set_memory(self, m):
        f = f"{_R}.memory"
        d = self.dir
        swap = swap_max(m.swap, m.limit)
        if not (m.limit or m.reservation or swap is not None):
            return
        self._need("memory", f)
        if swap is not None:
            if not _fs.exists(d, "memory.swap.max"):
                raise Unsupported(f"{f}.swap: swap accounting (memory.swap.max) is not "
                                  f"enabled on this host")
            _fs.write(d, "memory.swap.max", swap, f"{f}.swap")
        if m.limit:
            _fs.write(d, "memory.max", _limit(m.limit), f"{f}.limit")
        if m.reservation:
            _fs.write(d, "memory.low", _limit(m.reservation), f"{f}.reservation")
        # swappiness, disableOOMKiller, kernel and kernelTCP have no v2 file: ignored.

    def _set_cpu(self, c):
        f = f"{_R}.cpu"
        d = self.dir
        if c.realtime_period or c.realtime_runtime:
            raise Unsupported(f"{f}.realtimeRuntime: realtime CPU limits do not exist on "
                              f"cgroup v2")
        weight = shares_to_weight(c.shares)
        text = cpu_max(c.quota, c.period)
        if weight or text is not None or c.burst is not None or c.idle is not None:
            self._need("cpu", f)
        if weight:
            _fs.write(d, "cpu.weight", weight, f"{f}.shares")
        if text is not None:
            _fs.write(d, "cpu.max", text, f"{f}.quota")
        if c.burst is not None:
            _fs.write(d, "cpu.max.burst", c.burst, f"{f}.burst")
        if c.idle is not None:
            _fs.write(d, "cpu.idle", c.idle, f"{f}.idle")
        if c.cpus:
            self._need("cpuset", f"{f}.cpus")
            _fs.write(d, "cpuset.cpus", c.cpus, f"{f}.cpus")
        if c.mems:
            self._need("cpuset", f"{f}.mems")
            _fs.write(d, "cpuset.mems", c.mems, f"{f}.mems")

    def _set_io(self, b):
        f = f"{_R}.blockIO"
        d = self.dir
        throttles = (("throttle_read_bps_device", "throttleReadBpsDevice", "rbps"),
                     ("throttle_write_bps_device", "throttleWriteBpsDevice", "wbps"),
                     ("throttle_read_iops_device", "throttleReadIOPSDevice", "riops"),
                     ("throttle_write_iops_device", "throttleWriteIOPSDevice", "wiops"))
        if not (b.weight or any(wd.weight for wd in b.weight_device)
                or any(getattr(b, attr) for attr, _k, _n in throttles)):
            return
        self._need("io", f)
        bfq = _fs.exists(d, "io.bfq.weight")
        if b.weight:
            if bfq:
                _fs.write(d, "io.bfq.weight", b.weight, f"{f}.weight")
            else:
                _fs.write(d, "io.weight", f"default {blkio_weight_to_io(b.weight)}",
                          f"{f}.weight")
        for i, wd in enumerate(b.weight_device):
            if not wd.weight:
                continue
            if bfq:
                _fs.write(d, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}",
                          f"{f}.weightDevice[{i}]")
            else:
                _fs.write(d, "io.weight",
                          f"{wd.major}:{wd.minor} {blkio_weight_to_io(wd.weight)}",
                          f"{f}.weightDevice[{i}]")
        for attr, key, name in throttles:
            for i, t in enumerate(getattr(b, attr)):
                rate = t.rate if t.rate else "max"
                _fs.write(d, "io.max", f"{t.major}:{t.minor} {name}={rate}", f"{f}.{key}[{i}]")

    # ------------------------------------------------------------ statistics

    def stats(self):
        d = self.dir
        out = {}
        cpu = _fs.read_keyed(d, "cpu.stat")
        if cpu:
            out["cpu"] = {
                "usage": {"total": cpu.get("usage_usec", 0) * 1000, "percpu": [],
                          "kernel": cpu.get("system_usec", 0) * 1000,
                          "user": cpu.get("user_usec", 0) * 1000},
                "throttling": {"periods": cpu.get("nr_periods", 0),
                               "throttled_periods": cpu.get("nr_throttled", 0),
                               "throttled_time": cpu.get("throttled_usec", 0) * 1000},
            }
        if _fs.exists(d, "memory.current"):
            out["memory"] = self._memory_stats()
        if _fs.exists(d, "pids.current"):
            out["pids"] = {"current": _fs.read_int(d, "pids.current", 0),
                           "limit": _fs.read_int(d, "pids.max", 0, unlimited=0)}
        if _fs.exists(d, "io.stat"):
            out["blkio"] = _io_stats(_fs.read(d, "io.stat", ""))
        huge = _hugetlb_stats(d)
        if huge:
            out["hugetlb"] = huge
        return out

    def _memory_stats(self):
        d = self.dir
        raw = _fs.read_keyed(d, "memory.stat")
        events = _fs.read_keyed(d, "memory.events")
        usage = _fs.read_int(d, "memory.current", 0)
        limit = _fs.read_int(d, "memory.max", _MAX)
        out = {"cache": raw.get("file", 0),
               "usage": {"usage": usage, "limit": limit,
                         "max": _fs.read_int(d, "memory.peak", 0),
                         "failcnt": events.get("max", 0)},
               "raw": raw}
        if _fs.exists(d, "memory.swap.current"):
            swap_limit = _fs.read_int(d, "memory.swap.max", _MAX)
            # Reported as memory+swap, the way v1 (and so every consumer) counts it.
            out["swap"] = {"usage": usage + _fs.read_int(d, "memory.swap.current", 0),
                           "limit": _MAX if _MAX in (limit, swap_limit)
                           else limit + swap_limit,
                           "max": _fs.read_int(d, "memory.swap.peak", 0),
                           "failcnt": _fs.read_keyed(d, "memory.swap.events").get("max", 0)}
        return out


def _io_stats(text):
    served_bytes = []
    served = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, into in (("rbytes", "Read", served_bytes), ("wbytes", "Write", served_bytes),
                              ("rios", "Read", served), ("wios", "Write", served)):
            if key in fields:
                into.append({"major": int(major), "minor": int(minor), "op": op,
                             "value": int(fields[key])})
    return {"ioServiceBytesRecursive": served_bytes, "ioServicedRecursive": served}


def _hugetlb_stats(d):
    out = {}
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return out
    for name in names:
        if name.startswith("hugetlb.") and name.endswith(".current") and ".rsvd." not in name:
            size = name[len("hugetlb."):-len(".current")]
            out[size] = {"usage": _fs.read_int(d, name, 0),
                         "limit": _fs.read_int(d, f"hugetlb.{size}.max", _MAX),
                         "failcnt": _fs.read_keyed(d, f"hugetlb.{size}.events").get("max", 0)}
    return out
