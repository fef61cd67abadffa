"""The cgroup v1 driver: one directory per controller hierarchy mounted under the cgroup root.

Owns the v1 file names and value formats (memory.limit_in_bytes, cpu.cfs_quota_us,
devices.allow, freezer.state, ...), the memory+swap ordering rules, cpuset inheritance and
the v1 statistics files. Hierarchies are found by listing ``root``: every real directory
holding a cgroup.procs file, except the name=systemd one ("systemd") and a cgroup2 at
"unified". Co-mounted controllers ("cpu,cpuacct") are one hierarchy; their symlinks
("cpu" -> "cpu,cpuacct") are skipped.
"""

from berth.sys import fastos as os

from berth.cgroups import Manager, own_cgroups, resolve_path, _fs
from berth.errors import InvalidArgument, SystemFailure, Unsupported

_SKIP = ("unified", "systemd")
_R = "linux.resources"

# Preferred hierarchies to list processes from, in order.
_PID_SOURCES = ("pids", "freezer", "devices", "memory", "cpu", "cpuacct", "blkio", "cpuset")


def hierarchies(root):
    """{hierarchy name: directory} of the v1 controller hierarchies mounted under ``root``."""
    out = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as err:
        raise SystemFailure(f"cgroup: cannot list {root}: {os.strerror(err.errno)}",
                            errno=err.errno) from err
    for entry in entries:
        name = entry.name
        if name in _SKIP or name.startswith("name=") or entry.is_symlink():
            continue
        if entry.is_dir() and os.path.exists(os.path.join(entry.path, "cgroup.procs")):
            out[name] = entry.path
    return out


class V1Manager(Manager):
    """A container's cgroup in every v1 hierarchy; ``dirs`` maps hierarchy name -> host dir."""

    version = 1

    def __init__(self, dirs, path, root="/sys/fs/cgroup"):
        self.dirs = dict(dirs)
        self.path = path
        self.root = root

    def describe(self):
        """Plain data that ``manager_from`` turns back into this manager."""
        return {"version": 1, "path": self.path, "root": self.root, "dirs": dict(self.dirs)}

    @classmethod
    def for_path(cls, cgroups_path, container_id, root="/sys/fs/cgroup",
                 self_cgroup="/proc/self/cgroup"):
        relative = bool(cgroups_path) and not cgroups_path.startswith("/")
        own = own_cgroups(self_cgroup) if relative else {}
        dirs = {}
        path = None
        for name in hierarchies(root):
            inner = resolve_path(cgroups_path, container_id, own.get(name.split(",")[0], "/"))
            if path is None or name.split(",")[0] == "devices":
                path = inner
            dirs[name] = os.path.join(root, name, inner.lstrip("/"))
        if path is None:
            path = resolve_path(cgroups_path, container_id, own.get("", "/"))
        return cls(dirs, path, root)

    # ------------------------------------------------------------ lookup

    def _dir(self, controller):
        for name, d in self.dirs.items():
            if controller in name.split(","):
                return d
        return None

    def _need(self, controller, field):
        d = self._dir(controller)
        if d is None:
            raise Unsupported(f"{field}: the {controller} cgroup controller is not mounted "
                              f"on this host")
        return d

    # ------------------------------------------------------------ lifecycle

    def create(self):
        for name, d in self.dirs.items():
            _fs.make_dirs(d)
            if "cpuset" in name.split(","):
                self._inherit_cpuset(os.path.join(self.root, name), d)

    @staticmethod
    def _inherit_cpuset(top, d):
        # An empty cpuset.cpus/mems refuses every task, so each level copies its parent's.
        parent = top
        for part in os.path.relpath(d, top).split(os.sep):
            current = os.path.join(parent, part)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if _fs.read(current, name, "") == "":
                    value = _fs.read(parent, name, "")
                    if value:
                        _fs.write(current, name, value, "linux.cgroupsPath")
            parent = current

    def apply(self, pid):
        for d in self.dirs.values():
            _fs.add_proc(d, pid)

    def exists(self):
        return any(os.path.isdir(d) for d in self.dirs.values())

    def destroy(self):
        _fs.destroy_all(self.dirs.values())

    def container_mounts(self):
        return [(d, name) for name, d in self.dirs.items()]

    # ------------------------------------------------------------ processes

    def pids(self):
        for controller in _PID_SOURCES:
            d = self._dir(controller)
            if d is not None:
                return _fs.procs_in(d)
        for d in self.dirs.values():
            return _fs.procs_in(d)
        return []

    def can_freeze(self):
        d = self._dir("freezer")
        return d is not None and os.path.isdir(d)

    def freeze(self):
        self._freeze("FROZEN")

    def thaw(self):
        self._freeze("THAWED")

    def _freeze(self, state):
        d = self._need("freezer", "cgroup freeze")
        field = f"cgroup {'freeze' if state == 'FROZEN' else 'thaw'}"
        _fs.write(d, "freezer.state", state, field)

        def settled():
            if _fs.read(d, "freezer.state") == state:
                return True
            # A FREEZING cgroup can stall on a task that forked meanwhile: ask again.
            _fs.write(d, "freezer.state", state, field)
            return False

        if not _fs.wait_until(settled):
            if state == "FROZEN":
                _fs.write(d, "freezer.state", "THAWED", field)
            raise SystemFailure(f"{field}: {d} did not reach {state}")

    def frozen(self):
        d = self._dir("freezer")
        return d is not None and _fs.read(d, "freezer.state") == "FROZEN"

    def kill_all(self, sig):
        _fs.signal_all(self, sig)

    def oom_kill_count(self):
        d = self._dir("memory")
        if d is None:
            return 0
        return _fs.read_keyed(d, "memory.oom_control").get("oom_kill", 0)

    # ------------------------------------------------------------ limits

    def set(self, resources):
        if resources is None:
            return
        if resources.unified:
            raise InvalidArgument("linux.resources.unified: cgroup v2 keys need a cgroup v2 host")
        if resources.memory is not None:
            self._set_memory(resources.memory)
        if resources.cpu is not None:
            self._set_cpu(resources.cpu)
        if resources.block_io is not None:
            self._set_blkio(resources.block_io)
        _fs.set_pids_hugetlb_rdma(self._need, resources, "limit_in_bytes")
        if resources.network:
            self._set_network(resources.network)
        if resources.devices:
            self._set_devices(resources.devices)

    def _set_memory(self, m):
        f = f"{_R}.memory"
        d = self._need("memory", f)
        limit = m.limit or 0
        swap = m.swap or 0
        has_memsw = _fs.exists(d, "memory.memsw.limit_in_bytes")
        if swap and not has_memsw:
            raise Unsupported(f"{f}.swap: swap accounting (memory.memsw.limit_in_bytes) is "
                              f"not enabled on this host")
        if limit == -1 and swap == 0 and has_memsw:
            swap = -1  # unlimited memory means unlimited memory+swap too
        if limit and swap:
            current = _fs.read_int(d, "memory.limit_in_bytes", 0)
            if swap == -1 or current < swap:
                # Raising: memory+swap must stay >= memory at every step, so it goes first.
                _fs.write(d, "memory.memsw.limit_in_bytes", swap, f"{f}.swap")
                _fs.write(d, "memory.limit_in_bytes", limit, f"{f}.limit")
                limit = swap = 0
        if limit:
            _fs.write(d, "memory.limit_in_bytes", limit, f"{f}.limit")
        if swap:
            _fs.write(d, "memory.memsw.limit_in_bytes", swap, f"{f}.swap")
        if m.reservation:
            _fs.write(d, "memory.soft_limit_in_bytes", m.reservation, f"{f}.reservation")
        # memory.kernel is deprecated and ignored (kernels >= 5.16 refuse kmem limits).
        if m.kernel_tcp and _fs.exists(d, "memory.kmem.tcp.limit_in_bytes"):
            _fs.write(d, "memory.kmem.tcp.limit_in_bytes", m.kernel_tcp, f"{f}.kernelTCP")
        if m.swappiness is not None and m.swappiness != 2**64 - 1:
            if m.swappiness > 100:
                raise InvalidArgument(f"{f}.swappiness: {m.swappiness} is out of range 0-100")
            _fs.write(d, "memory.swappiness", m.swappiness, f"{f}.swappiness")
        if m.disable_oom_killer:
            _fs.write(d, "memory.oom_control", 1, f"{f}.disableOOMKiller")
        if m.use_hierarchy:
            _fs.write(d, "memory.use_hierarchy", 1, f"{f}.useHierarchy")

    def _set_cpu(self, c):
        f = f"{_R}.cpu"
        needs_cpu = (c.shares or c.quota or c.period or c.burst is not None
                     or c.realtime_period or c.realtime_runtime or c.idle is not None)
        if needs_cpu:
            d = self._need("cpu", f)
            if c.realtime_period:
                _fs.write(d, "cpu.rt_period_us", c.realtime_period, f"{f}.realtimePeriod")
            if c.realtime_runtime:
                _fs.write(d, "cpu.rt_runtime_us", c.realtime_runtime, f"{f}.realtimeRuntime")
            if c.shares:
                _fs.write(d, "cpu.shares", c.shares, f"{f}.shares")
            quota_done = False
            if c.period:
                try:
                    _fs.write(d, "cpu.cfs_period_us", c.period, f"{f}.period")
                except InvalidArgument:
                    # The old quota may not fit the new period: set quota first, then retry.
                    if not c.quota:
                        raise
                    _fs.write(d, "cpu.cfs_quota_us", c.quota, f"{f}.quota")
                    _fs.write(d, "cpu.cfs_period_us", c.period, f"{f}.period")
                    quota_done = True
            if c.quota and not quota_done:
                _fs.write(d, "cpu.cfs_quota_us", c.quota, f"{f}.quota")
            if c.burst is not None:
                _fs.write(d, "cpu.cfs_burst_us", c.burst, f"{f}.burst")
            if c.idle is not None:
                _fs.write(d, "cpu.idle", c.idle, f"{f}.idle")
        if c.cpus:
            _fs.write(self._need("cpuset", f"{f}.cpus"), "cpuset.cpus", c.cpus, f"{f}.cpus")
        if c.mems:
            _fs.write(self._need("cpuset", f"{f}.mems"), "cpuset.mems", c.mems, f"{f}.mems")

    def _set_blkio(self, b):
        f = f"{_R}.blockIO"
        d = self._need("blkio", f)
        bfq = not _fs.exists(d, "blkio.weight") and _fs.exists(d, "blkio.bfq.weight")
        weight_file = "blkio.bfq.weight" if bfq else "blkio.weight"
        device_file = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
        if b.weight:
            _fs.write(d, weight_file, b.weight, f"{f}.weight")
        if b.leaf_weight:
            _fs.write(d, "blkio.leaf_weight", b.leaf_weight, f"{f}.leafWeight")
        for i, wd in enumerate(b.weight_device):
            if wd.weight:
                _fs.write(d, device_file, f"{wd.major}:{wd.minor} {wd.weight}",
                          f"{f}.weightDevice[{i}]")
            if wd.leaf_weight:
                _fs.write(d, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} "
                          f"{wd.leaf_weight}", f"{f}.weightDevice[{i}]")
        for attr, key, name in (
                ("throttle_read_bps_device", "throttleReadBpsDevice", "read_bps_device"),
                ("throttle_write_bps_device", "throttleWriteBpsDevice", "write_bps_device"),
                ("throttle_read_iops_device", "throttleReadIOPSDevice", "read_iops_device"),
                ("throttle_write_iops_device", "throttleWriteIOPSDevice", "write_iops_device")):
            for i, t in enumerate(getattr(b, attr)):
                _fs.write(d, f"blkio.throttle.{name}", f"{t.major}:{t.minor} {t.rate}",
                          f"{f}.{key}[{i}]")

    def _set_network(self, net):
        f = f"{_R}.network"
        class_id = net.get("classID")
        if class_id is not None:
            d = self._need("net_cls", f"{f}.classID")
            _fs.write(d, "net_cls.classid", class_id, f"{f}.classID")
        for i, prio in enumerate(net.get("priorities") or ()):
            field = f"{f}.priorities[{i}]"
            d = self._need("net_prio", field)
            if not isinstance(prio, dict) or not prio.get("name"):
                raise InvalidArgument(f"{field}: needs a name and a priority")
            _fs.write(d, "net_prio.ifpriomap", f"{prio['name']} {int(prio.get('priority', 0))}",
                      field)

    def _set_devices(self, rules):
        f = f"{_R}.devices"
        d = self._need("devices", f)
        _fs.write(d, "devices.deny", "a", f)
        for i, rule in enumerate(rules):
            target = "devices.allow" if rule.allow else "devices.deny"
            for line in device_rule_lines(rule):
                _fs.write(d, target, line, f"{f}[{i}]")

    # ------------------------------------------------------------ statistics

    def stats(self):
        out = {}
        cpu = self._cpu_stats()
        if cpu:
            out["cpu"] = cpu
        d = self._dir("memory")
        if d is not None and os.path.isdir(d):
            out["memory"] = _memory_stats(d)
        d = self._dir("pids")
        if d is not None and os.path.isdir(d):
            out["pids"] = {"current": _fs.read_int(d, "pids.current", 0),
                           "limit": _fs.read_int(d, "pids.max", 0, unlimited=0)}
        d = self._dir("blkio")
        if d is not None and os.path.isdir(d):
            out["blkio"] = _blkio_stats(d)
        d = self._dir("hugetlb")
        if d is not None and os.path.isdir(d):
            out["hugetlb"] = _hugetlb_stats(d)
        return out

    def _cpu_stats(self):
        out = {}
        d = self._dir("cpuacct")
        if d is not None and os.path.isdir(d):
            usage = {"total": _fs.read_int(d, "cpuacct.usage", 0),
                     "percpu": _ints(_fs.read(d, "cpuacct.usage_percpu", ""))}
            if _fs.exists(d, "cpuacct.usage_user"):
                usage["kernel"] = _fs.read_int(d, "cpuacct.usage_sys", 0)
                usage["user"] = _fs.read_int(d, "cpuacct.usage_user", 0)
                usage["percpu_kernel"] = _ints(_fs.read(d, "cpuacct.usage_percpu_sys", ""))
                usage["percpu_user"] = _ints(_fs.read(d, "cpuacct.usage_percpu_user", ""))
            else:
                ticks = _fs.read_keyed(d, "cpuacct.stat")
                hz = os.sysconf("SC_CLK_TCK") or 100
                usage["kernel"] = ticks.get("system", 0) * 1_000_000_000 // hz
                usage["user"] = ticks.get("user", 0) * 1_000_000_000 // hz
            out["usage"] = usage
        d = self._dir("cpu")
        if d is not None and os.path.isdir(d):
            stat = _fs.read_keyed(d, "cpu.stat")
            out["throttling"] = {"periods": stat.get("nr_periods", 0),
                                 "throttled_periods": stat.get("nr_throttled", 0),
                                 "throttled_time": stat.get("throttled_time", 0)}
        return out


def device_rule_lines(rule):
    """A DeviceRule as devices.allow/deny lines ("c 1:3 rwm"); None or -1 means "*"."""
    major = "*" if rule.major is None or rule.major < 0 else rule.major
    minor = "*" if rule.minor is None or rule.minor < 0 else rule.minor
    access = rule.access or "rwm"
    kind = rule.type or "a"
    if kind == "a":
        if major == "*" and minor == "*":
            return ["a"]
        # The kernel reads "a" as every device whatever follows, so spell out both kinds.
        return [f"c {major}:{minor} {access}", f"b {major}:{minor} {access}"]
    return [f"{kind} {major}:{minor} {access}"]


def _ints(text):
    out = []
    for word in text.split():
        try:
            out.append(int(word))
        except ValueError:
            pass
    return out


def _usage(d, prefix):
    return {"usage": _fs.read_int(d, f"{prefix}.usage_in_bytes", 0),
            "max": _fs.read_int(d, f"{prefix}.max_usage_in_bytes", 0),
            "failcnt": _fs.read_int(d, f"{prefix}.failcnt", 0),
            "limit": _fs.read_int(d, f"{prefix}.limit_in_bytes", 0)}


def _memory_stats(d):
    raw = _fs.read_keyed(d, "memory.stat")
    out = {"cache": raw.get("total_cache", raw.get("cache", 0)),
           "usage": _usage(d, "memory")}
    if _fs.exists(d, "memory.memsw.usage_in_bytes"):
        out["swap"] = _usage(d, "memory.memsw")
    if _fs.exists(d, "memory.kmem.usage_in_bytes"):
        out["kernel"] = _usage(d, "memory.kmem")
    if _fs.exists(d, "memory.kmem.tcp.usage_in_bytes"):
        out["kernelTCP"] = _usage(d, "memory.kmem.tcp")
    out["use_hierarchy"] = _fs.read(d, "memory.use_hierarchy") == "1"
    out["raw"] = raw
    return out


_BLKIO_STATS = (
    ("ioServiceBytesRecursive", "io_service_bytes_recursive"),
    ("ioServicedRecursive", "io_serviced_recursive"),
    ("ioQueuedRecursive", "io_queued_recursive"),
    ("ioServiceTimeRecursive", "io_service_time_recursive"),
    ("ioWaitTimeRecursive", "io_wait_time_recursive"),
    ("ioMergedRecursive", "io_merged_recursive"),
    ("ioTimeRecursive", "time_recursive"),
    ("sectorsRecursive", "sectors_recursive"),
)


def _blkio_stats(d):
    out = {}
    # CFQ files first, then BFQ's, then the throttle layer's (always present).
    for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
        for key, suffix in _BLKIO_STATS:
            if key in out:
                continue
            text = _fs.read(d, prefix + suffix)
            if text is not None:
                out[key] = _blkio_entries(text)
    return out


def _blkio_entries(text):
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, _, minor = parts[0].partition(":")
            entries.append({"major": int(major), "minor": int(minor), "op": parts[1],
                            "value": int(parts[2])})
        elif len(parts) == 2 and ":" in parts[0]:
            major, _, minor = parts[0].partition(":")
            entries.append({"major": int(major), "minor": int(minor), "op": "",
                            "value": int(parts[1])})
    return entries


def _hugetlb_stats(d):
    out = {}
    for name in sorted(os.listdir(d)):
        if name.startswith("hugetlb.") and name.endswith(".usage_in_bytes") \
                and ".rsvd." not in name:
            size = name[len("hugetlb."):-len(".usage_in_bytes")]
            out[size] = {"usage": _fs.read_int(d, name, 0),
                         "max": _fs.read_int(d, f"hugetlb.{size}.max_usage_in_bytes", 0),
                         "failcnt": _fs.read_int(d, f"hugetlb.{size}.failcnt", 0)}
    return out
