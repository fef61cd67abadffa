"""The network driver interface: what the engine hands a driver and gets back.

A driver (``bridge.BridgeDriver``, ``cni.CniDriver``) owns the host side of a network: a
bridge, firewall rules, plugin state. The engine owns records, leases and netns files and
passes plain data: a ``NetworkRecord``, the path of a container's network namespace, an
``Endpoint`` (one container on one network) and its ``PortMapping``s.
"""

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class NetworkRecord:
    id: str                       # 64 hex
    name: str
    driver: str                   # "bridge", "host", "null", "cni"
    subnet: str = ""              # "172.18.0.0/16"
    gateway: str = ""             # "172.18.0.1"
    ip_range: str = ""            # a sub-range leases come from ("" = the whole subnet)
    internal: bool = False
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    created: str = ""

    @property
    def bridge(self):
        """The Linux bridge's name (bridge driver)."""
        return self.options.get("com.docker.network.bridge.name") or f"br-{self.id[:12]}"

    @property
    def mtu(self):
        return int(self.options.get("com.docker.network.driver.mtu") or 1500)


@dataclass(frozen=True)
class Endpoint:
    """One container on one network."""
    container_id: str
    network_id: str
    ifname: str                   # "eth0", "eth1", ...
    ipv4: str | None = None
    prefixlen: int | None = None
    gateway: str | None = None
    mac: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class PortMapping:
    host_ip: str                  # "" or "0.0.0.0": every address
    host_port: int
    container_port: int
    proto: str                    # "tcp" | "udp"


class Driver(Protocol):
    def create(self, net: NetworkRecord) -> None: ...

    def remove(self, net: NetworkRecord) -> None: ...

    def attach(self, net: NetworkRecord, netns_path: str, ep: Endpoint,
               ports: list[PortMapping]) -> Endpoint: ...

    def detach(self, net: NetworkRecord, netns_path: str | None, ep: Endpoint) -> None: ...
