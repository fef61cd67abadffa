"""A minimal rtnetlink client: links (bridge, veth), addresses and routes over AF_NETLINK.

Messages are packed with ``struct`` as <linux/rtnetlink.h> lays them out; every request
asks for an ACK, so a failure comes back as the kernel's errno, raised as a berth error
naming the link. A ``Netlink`` works in the network namespace its socket was opened in:
``netns.netlink_in(path)`` opens one inside a container's namespace.
"""

import errno
import ipaddress
import os
import _socket as socket  # socket's module imports enum and selectors (~3 ms)
import struct

from berth.errors import from_oserror

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
IFF_UP = 0x1
RT_TABLE_MAIN = 254
NLA_F_NESTED = 0x8000

_HDR = struct.Struct("=LHHLL")        # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")    # ifinfomsg
_IFADDR = struct.Struct("=BBBBI")     # ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg
_ATTR = struct.Struct("=HH")          # rtattr


def _align(n):
    return (n + 3) & ~3


def attr(kind, payload):
    """One rtattr: ``payload`` bytes, a str (NUL-terminated), an int (u32) or a list of
    attrs (nested)."""
    if isinstance(payload, str):
        payload = payload.encode() + b"\0"
    elif isinstance(payload, int):
        payload = struct.pack("=I", payload)
    elif isinstance(payload, list):
        payload = b"".join(payload)
        kind |= NLA_F_NESTED
    raw = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def parse_attrs(data):
    """{type: payload bytes} of a run of rtattrs (the last one of a type wins)."""
    out = {}
    pos = 0
    while pos + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, pos)
        if length < _ATTR.size:
            break
        out[kind & ~NLA_F_NESTED] = data[pos + _ATTR.size:pos + length]
        pos += _align(length)
    return out


def _cstr(raw):
    return raw.split(b"\0", 1)[0].decode()


def mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


class Netlink:
    """One NETLINK_ROUTE socket; use as a context manager or close()."""

    def __init__(self, sock=None):
        self.sock = sock or socket.socket(socket.AF_NETLINK,
                                          socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------ transport

    def request(self, kind, body, flags=0, what="netlink request", ok=()):
        """Send one message with NLM_F_ACK; return the list of (type, payload) replies.

        A kernel error is raised as a berth error naming ``what``; an errno in ``ok`` makes
        the call return None instead."""
        self.seq += 1
        seq = self.seq
        flags |= NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body)
        replies = []
        while True:
            data = self.sock.recv(1 << 16)
            pos = 0
            while pos + _HDR.size <= len(data):
                length, mtype, _, mseq, _ = _HDR.unpack_from(data, pos)
                payload = data[pos + _HDR.size:pos + length]
                pos += _align(length)
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code in ok:
                        return None
                    if code:
                        raise from_oserror(OSError(code, os.strerror(code)), what)
                    return replies
                if mtype == NLMSG_DONE:
                    return replies
                replies.append((mtype, payload))

    # ------------------------------------------------------------ links

    def links(self):
        """[{"index", "name", "kind", "master", "up"}] of every link."""
        out = []
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for mtype, payload in self.request(RTM_GETLINK, body, NLM_F_DUMP, "list links"):
            if mtype != RTM_NEWLINK:
                continue
            _, _, index, flags, _ = _IFINFO.unpack_from(payload)
            attrs = parse_attrs(payload[_IFINFO.size:])
            kind = parse_attrs(attrs.get(IFLA_LINKINFO, b"")).get(IFLA_INFO_KIND, b"")
            master = attrs.get(IFLA_MASTER)
            out.append({"index": index, "name": _cstr(attrs.get(IFLA_IFNAME, b"")),
                        "kind": _cstr(kind), "up": bool(flags & IFF_UP),
                        "master": struct.unpack("=I", master)[0] if master else 0})
        return out

    def index(self, name):
        """The index of link ``name``, or None when there is none."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, name)
        replies = self.request(RTM_GETLINK, body, 0, f"find link {name}", ok=(errno.ENODEV,))
        for _, payload in replies or ():
            return _IFINFO.unpack_from(payload)[2]
        return None

    def add_bridge(self, name, mtu=None, mac=None):
        attrs = [attr(IFLA_IFNAME, name),
                 attr(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, "bridge")])]
        if mtu:
            attrs.append(attr(IFLA_MTU, mtu))
        if mac:
            attrs.append(attr(IFLA_ADDRESS, mac_bytes(mac)))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL, f"create bridge {name}")
        return self.index(name)

    def add_veth(self, name, peer, peer_netns_fd=None, mtu=None, peer_mac=None, master=None):
        """A veth pair ``name`` (here, on bridge ``master`` index) and ``peer`` (moved
        into the namespace of ``peer_netns_fd`` in the same message)."""
        peer_attrs = [attr(IFLA_IFNAME, peer)]
        if peer_netns_fd is not None:
            peer_attrs.append(attr(IFLA_NET_NS_FD, peer_netns_fd))
        if mtu:
            peer_attrs.append(attr(IFLA_MTU, mtu))
        if peer_mac:
            peer_attrs.append(attr(IFLA_ADDRESS, mac_bytes(peer_mac)))
        peer_body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(peer_attrs)
        info = [attr(IFLA_INFO_KIND, "veth"),
                attr(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, peer_body)])]
        attrs = [attr(IFLA_IFNAME, name), attr(IFLA_LINKINFO, info)]
        if mtu:
            attrs.append(attr(IFLA_MTU, mtu))
        if master:
            attrs.append(attr(IFLA_MASTER, master))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(attrs)
        self.request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL,
                     f"create veth pair {name}/{peer}")
        return self.index(name)

    def set_link(self, name, *, up=None, mtu=None, mac=None, new_name=None, master=None,
                 netns_fd=None):
        index = self.index(name)
        if index is None:
            raise from_oserror(OSError(errno.ENODEV, os.strerror(errno.ENODEV)),
                               f"set link {name}")
        flags = change = 0
        if up is not None:
            change = IFF_UP
            flags = IFF_UP if up else 0
        attrs = []
        if mtu:
            attrs.append(attr(IFLA_MTU, mtu))
        if mac:
            attrs.append(attr(IFLA_ADDRESS, mac_bytes(mac)))
        if new_name:
            attrs.append(attr(IFLA_IFNAME, new_name))
        if master is not None:
            attrs.append(attr(IFLA_MASTER, master))
        if netns_fd is not None:
            attrs.append(attr(IFLA_NET_NS_FD, netns_fd))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change) + b"".join(attrs)
        self.request(RTM_NEWLINK, body, 0, f"configure link {name}")

    def delete_link(self, name):
        """Delete link ``name``; True if it was there (a missing link is no error)."""
        index = self.index(name)
        if index is None:
            return False
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        # ENODEV: gone meanwhile (the namespace of its peer died).
        return self.request(RTM_DELLINK, body, 0, f"delete link {name}",
                            ok=(errno.ENODEV,)) is not None

    # ------------------------------------------------------------ addresses, routes

    def add_address(self, name, address, prefixlen):
        index = self.index(name)
        if index is None:
            raise from_oserror(OSError(errno.ENODEV, os.strerror(errno.ENODEV)),
                               f"add address {address} to {name}")
        ip = ipaddress.IPv4Address(address)
        net = ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False)
        attrs = attr(IFA_LOCAL, ip.packed) + attr(IFA_ADDRESS, ip.packed)
        if prefixlen < 31:
            attrs += attr(IFA_BROADCAST, net.broadcast_address.packed)
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + attrs
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL,
                     f"add address {address}/{prefixlen} to {name}")

    def add_route(self, dst, gateway=None, dev=None):
        """Add an IPv4 route (``dst`` "0.0.0.0/0" for the default) via ``gateway``/``dev``."""
        net = ipaddress.IPv4Network(dst)
        attrs = attr(RTA_TABLE, RT_TABLE_MAIN)
        if net.prefixlen:
            attrs += attr(RTA_DST, net.network_address.packed)
        if gateway:
            attrs += attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed)
        if dev:
            index = self.index(dev)
            if index is None:
                raise from_oserror(OSError(errno.ENODEV, os.strerror(errno.ENODEV)),
                                   f"add route {dst} dev {dev}")
            attrs += attr(RTA_OIF, index)
        # family, dst_len, src_len, tos, table, protocol (boot), scope (universe), unicast
        body = _RTMSG.pack(socket.AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, 3, 0, 1, 0)
        self.request(RTM_NEWROUTE, body + attrs, NLM_F_CREATE | NLM_F_EXCL,
                     f"add route {dst}" + (f" via {gateway}" if gateway else ""))

    def routes(self):
        """The IPv4 destinations (IPv4Network) of every route but the default ones."""
        out = []
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for mtype, payload in self.request(RTM_GETROUTE, body, NLM_F_DUMP, "list routes"):
            if mtype != RTM_NEWROUTE:
                continue
            family, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(payload)
            attrs = parse_attrs(payload[_RTMSG.size:])
            table = struct.unpack("=I", attrs[RTA_TABLE])[0] if RTA_TABLE in attrs else table
            if family != socket.AF_INET or dst_len == 0 or rtype != 1 or table == 255:
                continue  # the local table's routes are the host's own addresses
            dst = attrs.get(RTA_DST)
            if dst:
                out.append(ipaddress.IPv4Network(f"{socket.inet_ntoa(dst)}/{dst_len}",
                                                 strict=False))
        return out

    def addresses(self):
        """[(link index, IPv4Interface)] of every IPv4 address."""
        out = []
        body = _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        for mtype, payload in self.request(RTM_GETADDR, body, NLM_F_DUMP, "list addresses"):
            if mtype != RTM_NEWADDR:
                continue
            family, plen, _, _, index = _IFADDR.unpack_from(payload)
            attrs = parse_attrs(payload[_IFADDR.size:])
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if family == socket.AF_INET and raw:
                out.append((index, ipaddress.IPv4Interface(f"{socket.inet_ntoa(raw)}/{plen}")))
        return out
