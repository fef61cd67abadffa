"""The built-in bridge driver: a Linux bridge per network, a veth pair per endpoint, NAT.

All link work is rtnetlink in process (``netlink``), all rules one nft batch per change
(``firewall``). The driver keeps no state of its own: the engine passes a ``rules``
callable that returns the (BridgeRules, PortRule) lists its records describe, and every
change re-renders the table from it, keeping only bridges whose link exists.

The default network (option com.docker.network.bridge.default_bridge) is brought up by
its first endpoint and stays up, as docker0 does (``remove`` takes it down: `network
prune`); taking it down with its last container cost every `run --rm` ~30 ms of netlink and
two nft runs. A host-wide flock serialises link and rule changes of every berth process
and root.
"""

import _thread
import errno
import fcntl
import os

from berth.errors import AlreadyExists, BerthError
from berth.network import firewall, netns
from berth.network.driver import sha256_hex
from berth.network.netlink import Netlink

LOCK_PATH = "/run/berth-network.lock"
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"


_held = {}  # thread -> [fd, nesting depth]: a second flock on a new fd would deadlock


class host_lock:  # noqa: N801 - used as `with host_lock():`, like a function
    """The host-wide lock for bridges, subnets and rules (every root shares the kernel);
    re-entrant within a thread. Threads of one process (monitors in the zygote run exit
    hooks) each take it on their own fd, so they exclude each other too. A class, not
    contextlib: that module costs the CLI ~0.5 ms to import."""

    def __enter__(self):
        me = _thread.get_ident()
        held = _held.get(me)
        if held is not None:
            held[1] += 1
            return self
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        _held[me] = [fd, 1]
        return self

    def __exit__(self, *exc):
        me = _thread.get_ident()
        held = _held[me]
        held[1] -= 1
        if held[1] == 0:
            del _held[me]
            os.close(held[0])


def host_ifname(container_id, network_id):
    """The host end of a container's veth on a network: stable, so detach finds it."""
    return "vb" + sha256_hex(container_id + network_id)[:11]


def mac_for(ip):
    """Docker's classic address: 02:42 then the IPv4 address."""
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def _sysctl(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise


class BridgeDriver:
    def __init__(self, root, rules=lambda: ([], [])):
        self.root = root
        self.table = firewall.table_name(root)
        self.rules = rules

    # ------------------------------------------------------------ networks

    def create(self, net):
        if net.options.get(DEFAULT_BRIDGE_OPTION) == "true":
            return  # made by its first endpoint
        with host_lock(), Netlink() as nl:
            self._bridge(nl, net)
            self._sync(nl)

    def remove(self, net):
        with host_lock(), Netlink() as nl:
            nl.delete_link(net.bridge)
            self._sync(nl)

    def _bridge(self, nl, net):
        """Make ``net``'s bridge if it is missing: address, up, forwarding on."""
        if nl.index(net.bridge) is not None:
            return
        subnet_len = int(net.subnet.split("/")[1])
        try:
            nl.add_bridge(net.bridge, mtu=net.mtu)
            nl.add_address(net.bridge, net.gateway, subnet_len)
            nl.set_link(net.bridge, up=True)
            # Published ports on 127.0.0.1 are translated to the bridge; the kernel drops
            # loopback sources on other links unless this is set (firewall's guard keeps
            # containers from using it to reach the host's 127/8).
            _sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")
            _sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        except BaseException:
            nl.delete_link(net.bridge)
            raise

    def _sync(self, nl):
        bridges, ports = self.rules()
        present = {link["name"] for link in nl.links()}
        bridges = [b for b in bridges if b.bridge in present]
        up = {b.bridge for b in bridges}
        firewall.apply(firewall.render(self.table, bridges,
                                       [p for p in ports if p.bridge in up]), self.table)

    def sync(self):
        """Re-render the rules from the engine's state (after a crash, say)."""
        with host_lock(), Netlink() as nl:
            self._sync(nl)

    # ------------------------------------------------------------ endpoints

    def attach(self, net, netns_path, ep, ports):
        prefix = int(net.subnet.split("/")[1])
        mac = ep.mac or mac_for(ep.ipv4)
        host = host_ifname(ep.container_id, ep.network_id)
        with host_lock(), Netlink() as nl:
            self._bridge(nl, net)
            try:
                master = nl.index(net.bridge)
                fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    try:
                        nl.add_veth(host, ep.ifname, fd, mtu=net.mtu, peer_mac=mac,
                                    master=master)
                    except AlreadyExists:
                        # The pair of this container's last run, whose namespace the
                        # kernel has not finished destroying (detach leaves it to it).
                        nl.delete_link(host)
                        nl.add_veth(host, ep.ifname, fd, mtu=net.mtu, peer_mac=mac,
                                    master=master)
                finally:
                    os.close(fd)
                nl.set_link(host, up=True)
                with netns.netlink_in(netns_path) as inside:
                    inside.add_address(ep.ifname, ep.ipv4, prefix)
                    inside.set_link(ep.ifname, up=True)
                    if not net.internal:
                        try:
                            inside.add_route("0.0.0.0/0", gateway=net.gateway)
                        except AlreadyExists:
                            pass  # an earlier network gave the default route
                self._sync(nl)
            except BaseException as err:
                try:
                    nl.delete_link(host)
                except BerthError as cleanup:
                    if isinstance(err, BerthError):
                        err.cleanup_errors.append(cleanup)
                raise
        return type(ep)(ep.container_id, ep.network_id, ep.ifname, ep.ipv4, prefix,
                        None if net.internal else net.gateway, mac, ep.aliases)

    def detach(self, net, netns_path, ep, dying=False):
        """Take the endpoint off the network. ``dying``: the caller is about to unmount
        the namespace at ``netns_path`` and nothing else holds it, so the kernel's
        destruction of the namespace takes the veth pair with it (asynchronously: deleting
        a link waits for RCU, ~17 ms); only the rules are brought up to date here."""
        with host_lock(), Netlink() as nl:
            if not dying:
                nl.delete_link(host_ifname(ep.container_id, ep.network_id))
                if netns_path and netns.exists(netns_path):
                    with netns.netlink_in(netns_path) as inside:
                        inside.delete_link(ep.ifname)
            self._sync(nl)
