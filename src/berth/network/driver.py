"""The network driver interface: what the engine hands a driver and gets back.

A driver (``bridge.BridgeDriver``, ``cni.CniDriver``) owns the host side of a network: a
bridge, firewall rules, plugin state. The engine owns records, leases and netns files and
passes plain data: a ``NetworkRecord``, the path of a container's network namespace, an
``Endpoint`` (one container on one network) and its ``PortMapping``s.
"""

from berth.spec._record import Record


def sha256_hex(text):
    """The sha256 of ``text`` in hex, from the builtin module: ``hashlib`` loads OpenSSL."""
    try:
        from _sha256 import sha256
    except ImportError:  # a Python built without it
        from hashlib import sha256
    return sha256(text.encode()).hexdigest()


DEFAULT_MTU = 65535


class _Positional(Record):
    """A frozen record built by position or keyword, as a dataclass is (without the
    ~20 ms ``dataclasses`` import on every networked ``run``)."""

    def __init__(self, *args, **fields):
        names = list(type(self).__annotations__)
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields")
        for name, value in zip(names, args):
            if name in fields:
                raise TypeError(f"{type(self).__name__} got {name!r} twice")
            fields[name] = value
        for name in names:
            if name not in fields and not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} needs {name!r}")
            if name not in fields and isinstance(getattr(type(self), name), dict):
                fields[name] = {}  # never share a default dict
        super().__init__(**fields)


class NetworkRecord(_Positional):
    id: str                       # 64 hex
    name: str
    driver: str                   # "bridge", "host", "null", "cni"
    subnet: str = ""              # "172.18.0.0/16"
    gateway: str = ""             # "172.18.0.1"
    ip_range: str = ""            # a sub-range leases come from ("" = the whole subnet)
    internal: bool = False
    labels: dict = {}
    options: dict = {}
    created: str = ""

    @property
    def bridge(self):
        """The Linux bridge's name (bridge driver)."""
        return self.options.get("com.docker.network.bridge.name") or f"br-{self.id[:12]}"

    @property
    def mtu(self):
        """The bridge's and veths' MTU: -o com.docker.network.driver.mtu, else 65535
        (docs/NETWORKING.md: near loopback's throughput; MSS clamping for the way out)."""
        return int(self.options.get("com.docker.network.driver.mtu") or DEFAULT_MTU)


class Endpoint(_Positional):
    """One container on one network."""
    container_id: str
    network_id: str
    ifname: str                   # "eth0", "eth1", ...
    ipv4: str | None = None
    prefixlen: int | None = None
    gateway: str | None = None
    mac: str | None = None
    aliases: tuple = ()


class PortMapping(_Positional):
    host_ip: str                  # "" or "0.0.0.0": every address
    host_port: int
    container_port: int
    proto: str                    # "tcp" | "udp"


class Driver:
    """What a driver implements (documentation: drivers do not inherit from it)."""

    def create(self, net: NetworkRecord) -> None: ...

    def remove(self, net: NetworkRecord) -> None: ...

    def attach(self, net: NetworkRecord, netns_path: str, ep: Endpoint,
               ports: list[PortMapping]) -> Endpoint: ...

    def detach(self, net: NetworkRecord, netns_path: str | None, ep: Endpoint,
               dying: bool = False) -> None: ...
