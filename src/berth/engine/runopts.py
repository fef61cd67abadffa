"""`berth run`/`berth create` flags: Docker's names, grammar and error words, as plain data.

``parse_run_flags(argv)`` returns ``(RunOptions, image, command)``. Flags stop at the image
name, as Docker's do. Every value is checked here - sizes, durations, restart policies,
ports, mounts, ulimits, security options - so a bad one is reported before anything is
created, in the words ``docker run`` uses. ``host_config(opts)`` gives the Docker-shaped
HostConfig a container record keeps; ``berth.engine.spec`` turns records into config.json.
"""

import os

from berth.flags import Flag, UsageError, parse
from berth.units import parse_cpus, parse_duration, ram_in_bytes
from berth.errors import InvalidArgument, Unsupported
from berth.spec.caps import CAPS

_MIN_MEMORY = 6 * 1024 * 1024

ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")

_WHITESPACE = " \t\n\v\f\r"

_VALID_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                  "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")

_PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")

FLAGS = [
    Flag("attach", "a", "list", help="Attach to STDIN, STDOUT or STDERR"),
    Flag("detach", "d", help="Run container in background and print container ID"),
    Flag("interactive", "i", help="Keep STDIN open even if not attached"),
    Flag("tty", "t", help="Allocate a pseudo-TTY"),
    Flag("rm", help="Automatically remove the container when it exits"),
    Flag("name", kind="string", help="Assign a name to the container"),
    Flag("env", "e", "list", help="Set environment variables"),
    Flag("env-file", kind="list", help="Read in a file of environment variables"),
    Flag("workdir", "w", "string", help="Working directory inside the container"),
    Flag("user", "u", "string", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    Flag("entrypoint", kind="string", help="Overwrite the default ENTRYPOINT of the image"),
    Flag("label", "l", "list", help="Set meta data on a container"),
    Flag("label-file", kind="list", help="Read in a line delimited file of labels"),
    Flag("hostname", "h", "string", help="Container host name"),
    Flag("restart", kind="string", default="no",
         help="Restart policy to apply when a container exits"),
    Flag("volume", "v", "list", help="Bind mount a volume"),
    Flag("mount", kind="list", metavar="mount", help="Attach a filesystem mount to the container"),
    Flag("tmpfs", kind="list", help="Mount a tmpfs directory"),
    Flag("read-only", help="Mount the container's root filesystem as read only"),
    Flag("memory", "m", "string", metavar="bytes", help="Memory limit"),
    Flag("memory-swap", kind="string", metavar="bytes",
         help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap"),
    Flag("memory-reservation", kind="string", metavar="bytes", help="Memory soft limit"),
    Flag("cpus", kind="string", metavar="decimal", help="Number of CPUs"),
    Flag("cpu-shares", "c", "string", metavar="int", help="CPU shares (relative weight)"),
    Flag("cpuset-cpus", kind="string", help="CPUs in which to allow execution (0-3, 0,1)"),
    Flag("cpuset-mems", kind="string", help="MEMs in which to allow execution (0-3, 0,1)"),
    Flag("pids-limit", kind="string", metavar="int",
         help="Tune container pids limit (set -1 for unlimited)"),
    Flag("ulimit", kind="list", metavar="ulimit", help="Ulimit options"),
    Flag("cap-add", kind="list", help="Add Linux capabilities"),
    Flag("cap-drop", kind="list", help="Drop Linux capabilities"),
    Flag("privileged", help="Give extended privileges to this container"),
    Flag("security-opt", kind="list", help="Security Options"),
    Flag("init", help="Run an init inside the container that forwards signals and reaps "
                      "processes"),
    Flag("stop-signal", kind="string", help="Signal to stop the container"),
    Flag("stop-timeout", kind="string", metavar="int",
         help="Timeout (in seconds) to stop a container"),
    Flag("health-cmd", kind="string", help="Command to run to check health"),
    Flag("health-interval", kind="string", metavar="duration",
         help="Time between running the check (ms|s|m|h) (default 0s)"),
    Flag("health-retries", kind="string", metavar="int",
         help="Consecutive failures needed to report unhealthy"),
    Flag("health-timeout", kind="string", metavar="duration",
         help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)"),
    Flag("health-start-period", kind="string", metavar="duration",
         help="Start period for the container to initialize before starting health-retries "
              "countdown (ms|s|m|h) (default 0s)"),
    Flag("health-start-interval", kind="string", metavar="duration",
         help="Time between running the check during the start period (ms|s|m|h) "
              "(default 0s)"),
    Flag("no-healthcheck", help="Disable any container-specified HEALTHCHECK"),
    Flag("health-on-failure", kind="string", metavar="string",
         help="Action when the container becomes unhealthy (none, kill, restart, stop)"),
    Flag("log-driver", kind="string", help="Logging driver for the container"),
    Flag("log-opt", kind="list", help="Log driver options"),
    Flag("network", kind="list", metavar="network", help="Connect a container to a network"),
    Flag("net", kind="list", metavar="network", help=""),
    Flag("network-alias", kind="list", help="Add network-scoped alias for the container"),
    Flag("net-alias", kind="list", help=""),
    Flag("ip", kind="string", help="IPv4 address (e.g., 172.30.100.104)"),
    Flag("mac-address", kind="string", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    Flag("publish", "p", "list", help="Publish a container's port(s) to the host"),
    Flag("publish-all", "P", help="Publish all exposed ports to random ports"),
    Flag("expose", kind="list", help="Expose a port or a range of ports"),
    Flag("platform", kind="string", help="Set platform if server is multi-platform capable"),
    Flag("pull", kind="string", default="missing",
         help='Pull image before running ("always", "missing", "never")'),
    Flag("device", kind="list", help="Add a host device to the container"),
    Flag("sysctl", kind="list", metavar="map", help="Sysctl options"),
    Flag("group-add", kind="list", help="Add additional groups to join"),
    Flag("dns", kind="list", help="Set custom DNS servers"),
    Flag("dns-search", kind="list", help="Set custom DNS search domains"),
    Flag("dns-option", kind="list", help="Set DNS options"),
    Flag("add-host", kind="list", help="Add a custom host-to-IP mapping (host:ip)"),
    Flag("oom-score-adj", kind="string", metavar="int",
         help="Tune host's OOM preferences (-1000 to 1000)"),
    Flag("shm-size", kind="string", metavar="bytes", help="Size of /dev/shm"),
    Flag("pid", kind="string", help="PID namespace to use"),
    Flag("ipc", kind="string", help="IPC mode to use"),
    Flag("uts", kind="string", help="UTS namespace to use"),
    Flag("runtime", kind="string", help="Runtime to use for this container"),
    Flag("cidfile", kind="string", help="Write the container ID to the file"),
    Flag("detach-keys", kind="string", help="Override the key sequence for detaching a "
                                            "container"),
    Flag("sig-proxy", default=True, help="Proxy received signals to the process"),
    Flag("quiet", "q", help="Suppress the pull output"),
    Flag("help", help="Print usage"),
]

_BY_KEY = {f.key: f for f in FLAGS}


class RunOptions:
    """Everything `berth run` was told, checked and converted (sizes in bytes, durations in
    nanoseconds, CPUs in NanoCpus). Construct with keywords to override the defaults."""

    def __init__(self, **fields):
        self.image = ""
        self.args = []                 # the command after the image name
        self.attach = []               # -a: the streams to attach ("stdin", ...); [] all
        self.detach = False
        self.interactive = False
        self.tty = False
        self.rm = False
        self.name = ""
        self.env = []                  # "K=V", or "K" to unset an image variable
        self.workdir = ""
        self.user = ""
        self.entrypoint = None         # None: not given; "": given empty (clears the image's)
        self.labels = {}
        self.hostname = ""
        self.restart = {"Name": "no", "MaximumRetryCount": 0}
        self.binds = []                # -v host:ctr[:mode], checked, as given
        self.mounts = []               # --mount, as Docker's API Mount objects
        self.tmpfs = {}                # destination -> options text
        self.read_only = False
        self.memory = 0
        self.memory_swap = 0           # -1: unlimited
        self.memory_reservation = 0
        self.nano_cpus = 0
        self.cpu_shares = 0
        self.cpuset_cpus = ""
        self.cpuset_mems = ""
        self.pids_limit = None
        self.ulimits = []              # {"Name", "Soft", "Hard"}
        self.cap_add = []
        self.cap_drop = []
        self.privileged = False
        self.security_opt = []         # seccomp=<profile JSON> once a file was read
        self.init = False
        self.stop_signal = ""
        self.stop_timeout = None
        self.healthcheck = None        # Docker's HealthConfig, or None
        self.health_on_failure = "none"  # podman's: none, kill, restart, stop
        self.log_driver = ""
        self.log_opts = {}
        self.network = "default"       # the first --network: the container's NetworkMode
        self.networks = []             # every --network, in order
        self.network_aliases = []
        self.ip = ""
        self.mac_address = ""
        self.port_bindings = {}        # "80/tcp" -> [{"HostIp", "HostPort"}]
        self.exposed_ports = {}        # "80/tcp" -> {}
        self.publish_all = False
        self.platform = ""
        self.pull = "missing"
        self.devices = []              # {"PathOnHost", "PathInContainer", "CgroupPermissions"}
        self.sysctls = {}
        self.group_add = []
        self.dns = []
        self.dns_search = []
        self.dns_options = []
        self.extra_hosts = []
        self.oom_score_adj = 0
        self.shm_size = 0
        self.pid_mode = ""
        self.ipc_mode = ""
        self.uts_mode = ""
        self.runtime = ""
        self.cidfile = ""
        self.detach_keys = ""
        self.sig_proxy = True
        self.quiet = False
        self.help = False
        for key, value in fields.items():
            if not hasattr(self, key):
                raise TypeError(f"RunOptions has no field {key!r}")
            setattr(self, key, value)

    def __repr__(self):
        return f"RunOptions({self.__dict__!r})"


def parse_run_flags(argv):
    """``(RunOptions, image, command)`` from the words after ``berth run``."""
    raw, rest = parse(argv, FLAGS, interspersed=False)
    opts = RunOptions()
    given = raw["_set"]
    for key in ("detach", "interactive", "tty", "rm", "name", "workdir", "user", "hostname",
                "read_only", "cpuset_cpus", "cpuset_mems", "privileged", "init", "stop_signal",
                "platform", "runtime", "cidfile", "detach_keys", "sig_proxy", "quiet", "help",
                "publish_all", "cap_add", "cap_drop", "group_add", "dns", "dns_search"):
        setattr(opts, key, raw[key])
    opts.dns_options = raw["dns_option"]
    opts.extra_hosts = [_extra_host(h) for h in raw["add_host"]]
    if opts.help:
        return opts, "", []
    if not rest:
        raise UsageError("'berth run' requires at least 1 argument")
    opts.image, opts.args = rest[0], list(rest[1:])

    opts.attach = [_flag_value("attach", v, _stream) for v in raw["attach"]]
    if opts.attach and opts.detach:
        raise InvalidArgument("Conflicting options: -a and -d")

    opts.env = _read_kv_files(raw["env_file"], "env") + [_env(v) for v in raw["env"]]
    labels = _read_kv_files(raw["label_file"], "label") + [_label(v) for v in raw["label"]]
    opts.labels = {k: v for k, _, v in (item.partition("=") for item in labels)}
    if "entrypoint" in given:
        opts.entrypoint = raw["entrypoint"]
    opts.restart = parse_restart(raw["restart"])
    if opts.rm and opts.restart["Name"] not in ("", "no"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")

    for spec in raw["volume"]:
        check_bind(spec)
        opts.binds.append(spec)
    opts.mounts = [_flag_value("mount", v, parse_mount) for v in raw["mount"]]
    for spec in raw["tmpfs"]:
        dest, _, options = spec.partition(":")
        if not dest.startswith("/"):
            raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
        opts.tmpfs[dest] = options

    for key in ("memory", "memory_reservation", "shm_size"):
        if key in given:
            setattr(opts, key, _flag_value(key, raw[key], ram_in_bytes))
    if "memory_swap" in given:
        swap = raw["memory_swap"]
        opts.memory_swap = -1 if swap == "-1" else _flag_value("memory_swap", swap,
                                                               ram_in_bytes)
    if "cpus" in given:
        opts.nano_cpus = _flag_value("cpus", raw["cpus"], parse_cpus)
    for key, attr in (("cpu_shares", "cpu_shares"), ("pids_limit", "pids_limit"),
                      ("stop_timeout", "stop_timeout"), ("oom_score_adj", "oom_score_adj")):
        if key in given:
            setattr(opts, attr, _flag_value(key, raw[key], _go_int))
    ulimits = {}  # by name: the last --ulimit for a resource wins
    for value in raw["ulimit"]:
        limit = _flag_value("ulimit", value, parse_ulimit)
        ulimits[limit["Name"]] = limit
    opts.ulimits = list(ulimits.values())
    opts.security_opt = [_security_opt(v) for v in raw["security_opt"]]
    opts.healthcheck = _healthcheck(raw, given)
    opts.health_on_failure = raw["health_on_failure"] or "none"
    if opts.health_on_failure not in ("none", "kill", "restart", "stop"):
        raise InvalidArgument(f"invalid argument \"{opts.health_on_failure}\" for "
                              f"\"--health-on-failure\" flag: want none, kill, restart or stop")
    opts.log_driver = raw["log_driver"]
    opts.log_opts = {k: v for k, _, v in (o.partition("=") for o in raw["log_opt"])}
    if opts.log_driver == "none" and opts.log_opts:
        raise InvalidArgument("invalid logging opts for driver none")
    opts.networks = list(raw["network"] or raw["net"])
    opts.network = opts.networks[0] if opts.networks else "default"
    opts.network_aliases = list(raw["network_alias"] or raw["net_alias"])
    opts.ip, opts.mac_address = raw["ip"], raw["mac_address"]
    for spec in raw["publish"]:
        for port, binding in parse_port_spec(spec):
            opts.exposed_ports[port] = {}
            opts.port_bindings.setdefault(port, []).append(binding)
    for spec in raw["expose"]:
        for port in _expose(spec):
            opts.exposed_ports[port] = {}
    if raw["pull"] not in ("always", "missing", "never"):
        raise InvalidArgument(f"invalid pull option: '{raw['pull']}': must be one of "
                              f'"always", "missing" or "never"')
    opts.pull = raw["pull"]
    opts.devices = [_flag_value("device", v, parse_device) for v in raw["device"]]
    for item in raw["sysctl"]:
        key, _, value = _flag_value("sysctl", item, _sysctl).partition("=")
        opts.sysctls[key] = value
    opts.pid_mode, opts.ipc_mode, opts.uts_mode = raw["pid"], raw["ipc"], raw["uts"]
    check(opts)
    return opts, opts.image, opts.args


def host_config(opts):
    """Docker's HostConfig for ``opts``: what a container record keeps to rebuild its spec."""
    return {
        "Binds": list(opts.binds),
        "Mounts": list(opts.mounts),
        "Tmpfs": dict(opts.tmpfs),
        "ReadonlyRootfs": opts.read_only,
        "Memory": opts.memory,
        "MemorySwap": opts.memory_swap,
        "MemoryReservation": opts.memory_reservation,
        "NanoCpus": opts.nano_cpus,
        "CpuShares": opts.cpu_shares,
        "CpusetCpus": opts.cpuset_cpus,
        "CpusetMems": opts.cpuset_mems,
        "PidsLimit": opts.pids_limit,
        "Ulimits": list(opts.ulimits),
        "CapAdd": list(opts.cap_add),
        "CapDrop": list(opts.cap_drop),
        "Privileged": opts.privileged,
        "SecurityOpt": list(opts.security_opt),
        "Init": opts.init,
        "RestartPolicy": dict(opts.restart),
        "HealthOnFailure": opts.health_on_failure,
        "AutoRemove": opts.rm,
        "LogConfig": {"Type": opts.log_driver or "json-file", "Config": dict(opts.log_opts)},
        "NetworkMode": opts.network,
        "Networks": list(opts.networks) or [opts.network],
        "NetworkAliases": list(opts.network_aliases),
        "IPv4Address": opts.ip,
        "MacAddress": opts.mac_address,
        "PortBindings": {k: list(v) for k, v in opts.port_bindings.items()},
        "PublishAllPorts": opts.publish_all,
        "Devices": list(opts.devices),
        "Sysctls": dict(opts.sysctls),
        "GroupAdd": list(opts.group_add),
        "Dns": list(opts.dns),
        "DnsSearch": list(opts.dns_search),
        "DnsOptions": list(opts.dns_options),
        "ExtraHosts": list(opts.extra_hosts),
        "OomScoreAdj": opts.oom_score_adj,
        "ShmSize": opts.shm_size or 64 * 1024 * 1024,
        "PidMode": opts.pid_mode,
        "IpcMode": opts.ipc_mode or "private",
        "UTSMode": opts.uts_mode,
        "Runtime": opts.runtime,
    }


# ---------------------------------------------------------------- checks Docker's daemon makes

def check(opts):
    """The rules dockerd applies to a create request, with its words."""
    if opts.name:
        _check_name(opts.name)
    if opts.memory and opts.memory < _MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if opts.memory_swap > 0:
        if not opts.memory:
            raise InvalidArgument("You should always set the Memory limit when using "
                                  "Memoryswap limit, see usage")
        if opts.memory_swap < opts.memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory "
                                  "limit, see usage")
    if opts.memory_reservation:
        if opts.memory_reservation < _MIN_MEMORY:
            raise InvalidArgument("Minimum memory reservation allowed is 6MB")
        if opts.memory and opts.memory < opts.memory_reservation:
            raise InvalidArgument("Minimum memory limit can not be less than memory "
                                  "reservation limit, see usage")
    if opts.nano_cpus:
        ncpu = os.cpu_count() or 1
        if opts.nano_cpus < 10_000_000 or opts.nano_cpus > ncpu * 1_000_000_000:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are "
                                  f"only {ncpu} CPUs available")
    for flag, value, online in (("cpus", opts.cpuset_cpus, "/sys/devices/system/cpu/online"),
                                ("mems", opts.cpuset_mems, "/sys/devices/system/node/online")):
        if value:
            _check_cpuset(flag, value, online)
    if opts.shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    if not -1000 <= opts.oom_score_adj <= 1000:
        raise InvalidArgument(f"Invalid value {opts.oom_score_adj}, range for oom score adj "
                              f"is [-1000, 1000]")
    if opts.stop_signal:
        parse_signal(opts.stop_signal)
    for field, caps in (("CapAdd", opts.cap_add), ("CapDrop", opts.cap_drop)):
        for cap in normalize_caps(caps):
            if cap != "ALL" and cap not in CAPS:
                raise InvalidArgument(f'invalid {field}: unknown capability: "{cap}"')
    mode = opts.network
    special = [n for n in opts.networks if n in ("host", "none") or n.startswith("container:")]
    if special and len(opts.networks) > 1:
        raise InvalidArgument("conflicting options: cannot attach both user-defined and "
                              "non-user-defined network-modes")
    if special and (opts.port_bindings or opts.publish_all) and mode != "host":
        raise InvalidArgument("conflicting options: port publishing and the container type "
                              "network mode")
    if mode.startswith("container:") and (opts.hostname or opts.dns or opts.extra_hosts
                                           or opts.mac_address):
        raise InvalidArgument("conflicting options: hostname, dns, add-host or mac-address "
                              "and the network mode")
    if opts.ip:
        _check_ipv4(opts.ip)
    if opts.mac_address and not _is_mac(opts.mac_address):
        raise InvalidArgument(f"{opts.mac_address} is not a valid mac address")
    for flag, value in (("pid", opts.pid_mode), ("ipc", opts.ipc_mode),
                        ("uts", opts.uts_mode)):
        allowed = ("", "host") + (("private", "shareable", "none") if flag == "ipc" else ())
        if value not in allowed:
            if value.startswith("container:"):
                raise Unsupported(f"--{flag} container:<name> is not supported yet")
            raise InvalidArgument(f"--{flag}: invalid {flag.upper()} mode: {value}")
    if opts.log_driver not in ("", "json-file", "none"):
        raise Unsupported(f'logging driver "{opts.log_driver}" is not supported '
                          f'(json-file or none)')
    for key in opts.log_opts:
        if key not in ("max-size", "max-file", "compress", "labels", "env", "env-regex",
                       "tag", "mode", "max-buffer-size"):
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    if "max-size" in opts.log_opts:
        try:
            ram_in_bytes(opts.log_opts["max-size"])
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
    for opt in opts.security_opt:
        _check_security_opt(opt)
    for key in opts.sysctls:
        if mode == "host" and key.startswith("net."):
            raise InvalidArgument(f"sysctl '{key}' is not allowed in host network namespace")
        if opts.ipc_mode == "host" and not key.startswith("net."):
            raise InvalidArgument(f"sysctl '{key}' is not allowed in host IPC namespace")


def _is_mac(text):
    """[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}, without `re` (~4.5 ms of every `berth run`)."""
    parts = text.split(":")
    return len(parts) == 6 and all(len(p) == 2 and _HEX.issuperset(p) for p in parts)


_HEX = frozenset("0123456789abcdefABCDEF")


def _check_ipv4(text):
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise InvalidArgument(f"invalid IPv4 address: {text}")


def _check_name(name):
    ok = name[0].isascii() and name[0].isalnum() and all(
        ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in name[1:])
    if not ok or len(name) < 2 and name[0] == "/":
        raise InvalidArgument(f"Invalid container name ({name}), only "
                              f"[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


def _uint_list(text):
    """The set a cpuset list names ("0-2,4"); ValueError when it is not one."""
    numbers = set()
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or dash and not high.isdigit():
            raise ValueError(text)
        low, high = int(low), int(high) if dash else int(low)
        if high < low:
            raise ValueError(text)
        numbers.update(range(low, high + 1))
    return numbers


def _check_cpuset(flag, value, online_path):
    """Docker's checks of --cpuset-cpus/--cpuset-mems: the grammar, then the host's set."""
    try:
        wanted = _uint_list(value)
    except ValueError:
        raise InvalidArgument(f"Invalid value {value} for cpuset {flag}") from None
    try:
        with open(online_path) as f:
            online = f.read().strip()
        available = _uint_list(online)
    except (OSError, ValueError):
        return
    if not wanted <= available:
        what = "CPUs" if flag == "cpus" else "memory nodes"
        raise InvalidArgument(f"Requested {what} are not available - requested {value}, "
                              f"available: {online}")


_SIGNALS = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8, "HUP": 1,
    "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13, "POLL": 29, "PROF": 27,
    "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16, "STOP": 19, "SYS": 31, "TERM": 15,
    "TRAP": 5, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12,
    "VTALRM": 26, "WINCH": 28, "XCPU": 24, "XFSZ": 25,
}


def parse_signal(text):
    """A signal number from "SIGTERM", "TERM", "15" or "RTMIN+3", as Docker reads them."""
    if text.isdigit():
        number = int(text)
        if 0 < number <= 64:
            return number
        raise InvalidArgument(f"Invalid signal: {text}")
    name = text.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name in _SIGNALS:
        return _SIGNALS[name]
    for base, number, sign in (("RTMIN+", 34, 1), ("RTMAX-", 64, -1)):
        if name.startswith(base) and name[len(base):].isdigit():
            value = number + sign * int(name[len(base):])
            if 34 <= value <= 64:
                return value
    if name in ("RTMIN", "RTMAX"):
        return 34 if name == "RTMIN" else 64
    raise InvalidArgument(f"Invalid signal: {text}")


def normalize_caps(names):
    """Docker's spelling of --cap-add/--cap-drop values: upper case, CAP_ prefixed, ALL kept."""
    out = []
    for name in names:
        name = name.strip().upper()
        if name != "ALL" and not name.startswith("CAP_"):
            name = "CAP_" + name
        out.append(name)
    return out


# ---------------------------------------------------------------- value grammars

def _shown(key):
    flag = _BY_KEY[key]
    return f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"


def _stream(text):
    if text.lower() not in ("stdin", "stdout", "stderr"):
        raise ValueError("valid streams are STDIN, STDOUT and STDERR")
    return text.lower()


def _flag_value(key, value, convert):
    """Docker's (pflag's) wording for a value its flag's type rejects."""
    try:
        return convert(value)
    except ValueError as err:
        raise UsageError(f'invalid argument "{value}" for "{_shown(key)}" flag: {err}') from None


def _go_int(text):
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or text.strip() != text or "_" in text:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def _env(value):
    key, eq, _ = value.partition("=")
    if not key:
        raise UsageError(f'invalid argument "{value}" for "-e, --env" flag: '
                         f'invalid environment variable: {value}')
    if eq:
        return value
    if key in os.environ:
        return f"{key}={os.environ[key]}"
    return value


def _label(value):
    key = value.partition("=")[0].strip(_WHITESPACE)
    if not key:
        raise UsageError(f'invalid argument "{value}" for "-l, --label" flag: '
                         f"invalid label '{value}': empty name")
    if any(ch in key for ch in _WHITESPACE):
        raise UsageError(f'invalid argument "{value}" for "-l, --label" flag: '
                         f"label '{key}' contains whitespaces")
    return value


def _read_kv_files(paths, kind):
    """Docker's --env-file/--label-file: KEY=VALUE lines, # comments, a bare KEY taken from
    this process's environment (env files only)."""
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except IsADirectoryError:
            raise InvalidArgument(f"invalid {kind} file ({path}): read {path}: is a directory"
                                  ) from None
        except OSError as err:
            raise InvalidArgument(f"open {path}: {_strerror(err)}") from None
        for number, line in enumerate(data.split(b"\n"), 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument(f"invalid {kind} file ({path}): contains invalid utf8 "
                                      f"bytes at line {number}") from None
            text = text.lstrip(_WHITESPACE)
            if not text or text.startswith("#"):
                continue
            key, eq, value = text.partition("=")
            if not key:
                raise InvalidArgument(f"invalid {kind} file ({path}): no variable name on "
                                      f"line '{text}'")
            if any(ch in key for ch in _WHITESPACE):
                raise InvalidArgument(f"invalid {kind} file ({path}): variable '{key}' "
                                      f"contains whitespaces")
            if eq:
                out.append(f"{key}={value.rstrip(chr(13))}")
            elif kind == "env":
                if key in os.environ:
                    out.append(f"{key}={os.environ[key]}")
            else:
                out.append(key)
    return out


def _strerror(err):
    return (err.strerror or str(err)).lower()


def parse_restart(text):
    """Docker's RestartPolicy from ``no``, ``always``, ``unless-stopped``, ``on-failure[:N]``."""
    name, colon, count = text.partition(":")
    if colon and not name:
        raise InvalidArgument("invalid restart policy format: no policy provided before colon")
    retries = 0
    if count:
        try:
            retries = _go_int(count)
        except ValueError:
            raise InvalidArgument("invalid restart policy format: maximum retry count must be "
                                  "an integer") from None
    if name not in RESTART_POLICIES + ("",):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of "
                              f"'no', 'always', 'on-failure', or 'unless-stopped'")
    if retries and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'")
    if retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    return {"Name": name or "no", "MaximumRetryCount": retries}


def parse_ulimit(text):
    """``name=soft[:hard]`` -> {"Name", "Soft", "Hard"}; -1 means unlimited."""
    name, eq, values = text.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in ULIMIT_NAMES:
        raise ValueError(f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise ValueError(f"too many limit value arguments - {values}, can only have up to two, "
                         f"`soft[:hard]`")
    hard = _go_int(parts[1]) if len(parts) == 2 else None
    soft = _go_int(parts[0])
    if hard is None:
        hard = soft
    if hard != -1 and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: "
                         f"{soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


def _security_opt(text):
    if text == "no-new-privileges":
        return "no-new-privileges=true"
    if text == "systempaths=unconfined" or text == "writable-cgroups=true":
        return text
    key, sep, value = text.partition("=")
    if not sep:
        key, sep, value = text.partition(":")
    if not sep:
        raise InvalidArgument(f'Invalid --security-opt: "{text}"')
    if key == "seccomp" and value != "unconfined" and value != "builtin":
        try:
            with open(value, "rb") as f:
                data = f.read()
        except OSError as err:
            raise InvalidArgument(f"opening seccomp profile ({value}) failed: open {value}: "
                                  f"{_strerror(err)}") from None
        import json

        try:
            compact = json.dumps(json.loads(data), separators=(",", ":"))
        except ValueError as err:
            raise InvalidArgument(f"compacting json for seccomp profile ({value}) failed: "
                                  f"{err}") from None
        return f"seccomp={compact}"
    return f"{key}={value}"


def _check_security_opt(opt):
    key, _, value = opt.partition("=")
    if key == "no-new-privileges":
        if value.lower() not in ("1", "t", "true", "0", "f", "false"):
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    elif key == "systempaths":
        if value != "unconfined":
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    elif key == "writable-cgroups":
        if value.lower() not in ("1", "t", "true", "0", "f", "false"):
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    elif key in ("label", "apparmor"):
        if key == "label" and value == "disable" or key == "apparmor" and value == "unconfined":
            return
        raise Unsupported(f"--security-opt {key}: berth does not apply {key} profiles yet")
    elif key != "seccomp":
        raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')


def _healthcheck(raw, given):
    durations = {}
    for key in ("health_interval", "health_timeout", "health_start_period",
                "health_start_interval"):
        durations[key] = _flag_value(key, raw[key], parse_duration) if key in given else 0
    retries = _flag_value("health_retries", raw["health_retries"], _go_int) \
        if "health_retries" in given else 0
    have = bool(raw["health_cmd"]) or retries != 0 or any(durations.values())
    if raw["no_healthcheck"]:
        if have:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not have:
        return None
    for key, name in (("health_interval", "--health-interval"),
                      ("health_timeout", "--health-timeout")):
        if durations[key] < 0:
            raise InvalidArgument(f"{name} cannot be negative")
    if retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    if durations["health_start_period"] < 0:
        raise InvalidArgument("--health-start-period cannot be negative")
    if durations["health_start_interval"] < 0:
        raise InvalidArgument("--health-start-interval cannot be negative")
    return {
        "Test": ["CMD-SHELL", raw["health_cmd"]] if raw["health_cmd"] else [],
        "Interval": durations["health_interval"],
        "Timeout": durations["health_timeout"],
        "StartPeriod": durations["health_start_period"],
        "StartInterval": durations["health_start_interval"],
        "Retries": retries,
    }


def _sysctl(text):
    key, eq, _ = text.partition("=")
    if eq and (key in _VALID_SYSCTLS or key.startswith(("net.", "fs.mqueue."))):
        return text
    raise ValueError(f"sysctl '{text}' is not allowed")


def _extra_host(text):
    host, sep, ip = text.partition(":")
    if not sep:
        host, sep, ip = text.partition("=")
    if not sep or not host or not ip:
        raise UsageError(f'invalid argument "{text}" for "--add-host" flag: '
                         f"bad format for add-host: \"{text}\"")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    return f"{host}:{ip}"


# ---------------------------------------------------------------- ports

def parse_port_spec(spec):
    """[(\"80/tcp\", {\"HostIp\", \"HostPort\"}), ...] from one -p value."""
    parts = spec.split(":")
    if len(parts) == 1:
        ip, host, ctr = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, ctr = "", parts[0], parts[1]
    elif len(parts) == 3:
        ip, host, ctr = parts
    else:
        ip, host, ctr = ":".join(parts[:-2]), parts[-2], parts[-1]
    proto, ctr = _split_proto(ctr)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip and not _is_ip(ip):
        raise InvalidArgument(f"invalid IP address: {ip}")
    if not ctr:
        raise InvalidArgument(f"no port specified: {spec}<empty>")
    try:
        start, end = _port_range(ctr)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {ctr}") from None
    hstart = hend = 0
    if host:
        try:
            hstart, hend = _port_range(host)
        except ValueError:
            raise InvalidArgument(f"invalid hostPort: {host}") from None
        if end - start != hend - hstart and end != start:
            raise InvalidArgument(f"invalid ranges specified for container and host Ports: "
                                  f"{ctr} and {host}")
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    out = []
    for i in range(end - start + 1):
        if not host:
            host_port = ""
        elif end == start and hend != hstart:
            host_port = host  # a range to pick one free port from
        else:
            host_port = str(hstart + i)
        out.append((f"{start + i}/{proto.lower()}", {"HostIp": ip, "HostPort": host_port}))
    return out


def _expose(spec):
    proto, port = _split_proto(spec)
    try:
        start, end = _port_range(port)
    except ValueError:
        raise InvalidArgument(f"invalid range format for --expose: {spec}, error: "
                              f"invalid port") from None
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _split_proto(text):
    port, slash, proto = text.partition("/")
    if not text or not port:
        return "", ""
    return (proto or "tcp"), port


def _port_range(text):
    low, dash, high = text.partition("-")
    start = _port(low)
    end = _port(high) if dash else start
    if end < start:
        raise ValueError(text)
    return start, end


def _port(text):
    if not text.isdigit() or not text.isascii() or int(text) > 65535:
        raise ValueError(text)
    return int(text)


def _is_ip(text):
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- mounts and devices

_BIND_MODES = {"rw", "ro", "z", "Z", "nocopy", "consistent", "cached", "delegated"} \
    | set(_PROPAGATIONS)


def check_bind(spec):
    """Docker's -v grammar: ``[src:]ctr[:mode]`` where src is an absolute host path or a
    volume name (none: an anonymous volume), mode a comma list of ro|rw, z|Z, a
    propagation, nocopy."""
    parts = spec.split(":")
    if len(parts) == 1 or len(parts) == 2 and _valid_mode(parts[1]):
        if len(parts) == 2:
            raise InvalidArgument(f"invalid volume specification: '{spec}'")
        _check_destination(spec, spec, "volume")
        return
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    if not _valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    _check_destination(spec, dst, "bind" if src.startswith("/") else "volume")
    if not src.startswith("/"):
        if not src or not (src[0].isalnum() and all(c.isalnum() or c in "_.-" for c in src)):
            raise InvalidArgument(f'"{src}" includes invalid characters for a local volume '
                                  f'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If '
                                  f"you intended to pass a host directory, use absolute path")


def _check_destination(spec, dst, kind):
    if not dst.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config "
                              f"for type \"{kind}\": invalid mount path: '{dst}' mount path "
                              f"must be absolute")
    if dst == "/":
        raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config "
                              f"for type \"{kind}\": invalid specification: destination "
                              f"can't be '/'")


def _valid_mode(mode):
    if not mode:
        return True
    seen = {"rw": 0, "label": 0, "prop": 0, "copy": 0, "cons": 0}
    for item in mode.split(","):
        if item not in _BIND_MODES:
            return False
        group = ("rw" if item in ("rw", "ro") else "label" if item in ("z", "Z")
                 else "prop" if item in _PROPAGATIONS else "copy" if item == "nocopy"
                 else "cons")
        seen[group] += 1
        if seen[group] > 1:
            return False
    return True


def parse_bind(spec):
    """(source, destination, read_only, propagation) of a checked -v value; the source is
    a volume name, or "" for an anonymous volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        return "", spec, False, "rprivate"
    mode = parts[2].split(",") if len(parts) == 3 else []
    prop = next((m for m in mode if m in _PROPAGATIONS), "rprivate")
    return parts[0], parts[1], "ro" in mode, prop


_MOUNT_KEYS = {
    "type", "source", "src", "target", "destination", "dst", "readonly", "ro", "consistency",
    "bind-propagation", "bind-nonrecursive", "bind-recursive", "volume-nocopy",
    "volume-label", "volume-driver", "volume-opt", "volume-subpath", "tmpfs-size",
    "tmpfs-mode",
}


def parse_mount(text):
    """One --mount value -> Docker's API Mount object."""
    import csv

    fields = next(csv.reader([text]))
    mount = {"Type": "volume", "Source": "", "Target": "", "ReadOnly": False}
    bind, tmpfs, volume = {}, {}, {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if not eq and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        if key not in _MOUNT_KEYS:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "destination", "dst"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _mount_bool(key, value, eq)
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise ValueError(f"invalid value for {key}: {value}")
            bind["Propagation"] = value
        elif key in ("bind-nonrecursive", "bind-recursive"):
            bind[key] = value
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = ram_in_bytes(value)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        elif key.startswith("volume-"):
            volume[key] = value
    kind = mount["Type"]
    if not mount["Target"]:
        raise ValueError("target is required")
    if bind and kind != "bind":
        raise ValueError(f"cannot mix 'bind-*' options with mount type '{kind}'")
    if tmpfs and kind != "tmpfs":
        raise ValueError(f"cannot mix 'tmpfs-*' options with mount type '{kind}'")
    if volume and kind != "volume":
        raise ValueError(f"cannot mix 'volume-*' options with mount type '{kind}'")
    if kind == "bind":
        if "Propagation" in bind:
            mount["BindOptions"] = {"Propagation": bind["Propagation"]}
        _check_mount_target(mount)
        if not mount["Source"]:
            raise InvalidArgument('invalid mount config for type "bind": field Source must '
                                  'not be empty')
        if not mount["Source"].startswith("/"):
            raise InvalidArgument(f'invalid mount config for type "bind": invalid mount '
                                  f"path: '{mount['Source']}' mount path must be absolute")
    elif kind == "tmpfs":
        if tmpfs:
            mount["TmpfsOptions"] = tmpfs
        _check_mount_target(mount)
        if mount["Source"]:
            raise InvalidArgument('invalid mount config for type "tmpfs": field Source must '
                                  'be empty')
    elif kind == "volume":
        _check_mount_target(mount)
        src = mount["Source"]
        if src and not (src[0].isalnum() and all(c.isalnum() or c in "_.-" for c in src)):
            raise InvalidArgument(f'invalid mount config for type "volume": "{src}" '
                                  f'includes invalid characters for a local volume name, only '
                                  f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        options = {}
        if "volume-nocopy" in volume:
            options["NoCopy"] = _mount_bool("volume-nocopy", volume["volume-nocopy"],
                                            volume["volume-nocopy"] != "")
        if volume.get("volume-label"):
            key, _, value = volume["volume-label"].partition("=")
            options["Labels"] = {key: value}
        for key in ("volume-driver", "volume-opt", "volume-subpath"):
            if key in volume and volume[key] not in ("", "local"):
                raise Unsupported(f"--mount {key} is not supported by berth")
        if options:
            mount["VolumeOptions"] = options
    else:
        raise InvalidArgument(f'invalid mount config for type "{kind}": mount type unknown')
    return mount


def _check_mount_target(mount):
    target = mount["Target"]
    if not target.startswith("/"):
        raise InvalidArgument(f'invalid mount config for type "{mount["Type"]}": invalid '
                              f"mount path: '{target}' mount path must be absolute")


def _mount_bool(key, value, eq):
    if not eq:
        return True
    low = value.lower()
    if low in ("1", "true", "t"):
        return True
    if low in ("0", "false", "f"):
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def parse_device(text):
    """``host[:container][:rwm]`` -> Docker's DeviceMapping."""
    parts = text.split(":")
    host, ctr, perms = parts[0], "", "rwm"
    if len(parts) == 3:
        ctr, perms = parts[1], parts[2]
    elif len(parts) == 2:
        if _valid_perms(parts[1]):
            perms = parts[1]
        else:
            ctr = parts[1]
    elif len(parts) > 3:
        raise ValueError(f"bad format for path: {text}")
    if not _valid_perms(perms):
        raise ValueError(f"bad mode specified: {perms}")
    if not host.startswith("/"):
        raise ValueError(f"{host} is not an absolute path")
    ctr = ctr or host
    if not ctr.startswith("/"):
        raise ValueError(f"{ctr} is not an absolute path")
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def _valid_perms(text):
    return bool(text) and all(c in "rwm" for c in text) and len(set(text)) == len(text)
