"""IP address management: subnets from Docker's default pools, leases kept in SQLite.

Table ``net_leases`` in the metadata database holds one row per address given to a
container on a network; a lease lives until the container leaves the network (disconnect,
rm, or reconcile after a crash). Subnets come from Docker's default pools in order
(172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 ... 192.168.240.0/20), skipping any
that overlap a network berth knows or a route the host has.
"""

import ipaddress

from berth.errors import AlreadyExists, Conflict, InvalidArgument

_SCHEMA = """CREATE TABLE IF NOT EXISTS net_leases (
    network_id   TEXT NOT NULL,
    ip           TEXT NOT NULL,
    container_id TEXT NOT NULL,
    PRIMARY KEY (network_id, ip))"""


def default_pools():
    for second in range(17, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    yield from ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def pick_subnet(taken, pools=None):
    """The first pool subnet overlapping none of ``taken`` (IPv4Networks)."""
    for candidate in pools or default_pools():
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among "
                   "the defaults to assign to the network")


def check_subnet(subnet, gateway="", ip_range=""):
    """(IPv4Network, gateway str, ip_range str) from user input, checked as Docker does."""
    try:
        net = ipaddress.IPv4Network(subnet, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {subnet}: not an IPv4 CIDR") from None
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {subnet}: too small for containers")
    if ip_range:
        try:
            rng = ipaddress.IPv4Network(ip_range, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid ip-range {ip_range}") from None
        if not rng.subnet_of(net):
            raise InvalidArgument(f"no matching subnet for range {ip_range}")
        ip_range = str(rng)
    if gateway:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"no matching subnet for gateway {gateway}")
    else:
        gateway = str(net.network_address + 1)
    return net, gateway, ip_range


class Ipam:
    """Leases of one berth root (``md``: berth.metadata.db.Metadata)."""

    def __init__(self, md):
        self.md = md
        md.execute(_SCHEMA)

    def lease(self, net, container_id, requested=None):
        """An address for ``container_id`` on ``net`` (a NetworkRecord): ``requested`` or
        the lowest free one in the network's ip_range (or subnet)."""
        subnet = ipaddress.IPv4Network(net.subnet)
        reserved = {subnet.network_address, subnet.broadcast_address,
                    ipaddress.IPv4Address(net.gateway)}
        with self.md.transaction():
            used = {ipaddress.IPv4Address(r[0]) for r in self.md.query(
                "SELECT ip FROM net_leases WHERE network_id = ?", (net.id,))}
            if requested:
                try:
                    ip = ipaddress.IPv4Address(requested)
                except ValueError:
                    raise InvalidArgument(f"invalid IPv4 address: {requested}") from None
                if ip not in subnet:
                    raise InvalidArgument(f"no configured subnet contains IP address "
                                          f"{requested}")
                if ip in used or ip in reserved:
                    raise AlreadyExists(f"Address already in use: {requested}")
            else:
                ip = self._first_free(ipaddress.IPv4Network(net.ip_range or net.subnet),
                                      used | reserved, net.name)
            self.md.execute("INSERT INTO net_leases (network_id, ip, container_id) "
                            "VALUES (?, ?, ?)", (net.id, str(ip), container_id))
        return str(ip)

    @staticmethod
    def _first_free(pool, used, name):
        for ip in pool.hosts() if pool.prefixlen < 31 else pool:
            if ip not in used:
                return ip
        raise Conflict(f"no available IPv4 addresses on network {name}")

    def release(self, network_id, container_id):
        self.md.execute("DELETE FROM net_leases WHERE network_id = ? AND container_id = ?",
                        (network_id, container_id))

    def release_container(self, container_id):
        self.md.execute("DELETE FROM net_leases WHERE container_id = ?", (container_id,))

    def release_network(self, network_id):
        self.md.execute("DELETE FROM net_leases WHERE network_id = ?", (network_id,))

    def leases(self, network_id=None):
        """[(network_id, ip, container_id)]."""
        if network_id is None:
            rows = self.md.query("SELECT network_id, ip, container_id FROM net_leases")
        else:
            rows = self.md.query("SELECT network_id, ip, container_id FROM net_leases "
                                 "WHERE network_id = ?", (network_id,))
        return [tuple(r) for r in rows]
