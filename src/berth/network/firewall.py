"""berth's nftables rules: one table of its own, rendered whole and replaced atomically.

Every change (a bridge up or down, a container's ports) re-renders the table from the
state the caller passes and hands nft one buffer that deletes the old table and adds the
new one: one netlink batch, so the kernel never sees half a rule set, and whatever is no
longer in the state is gone. No berth state means no table. berth never touches other
tables; docs/NETWORKING.md says how this meets the host's firewall.
"""

import os

from berth.errors import SystemFailure
from berth.network.driver import _Positional, sha256_hex

DEFAULT_ROOT = "/var/lib/berth"


class BridgeRules(_Positional):
    bridge: str          # the Linux bridge
    subnet: str          # "172.18.0.0/16"
    gateway: str
    internal: bool = False


class PortRule(_Positional):
    bridge: str
    host_ip: str         # "" for every address
    host_port: int
    proto: str           # "tcp" | "udp"
    ip: str              # the container's address
    port: int


def table_name(root):
    """"berth" for the default root; another root gets its own table."""
    if root.rstrip("/") == DEFAULT_ROOT:
        return "berth"
    return "berth_" + sha256_hex(root)[:8]


def _q(name):
    return '"' + name + '"'


def _is_loopback(ip):
    return ip.startswith("127.")


def render(table, bridges, ports):
    """The nft text that replaces table ``inet <table>`` by the rules for ``bridges``
    (BridgeRules) and ``ports`` (PortRule); only the deletion when there is neither."""
    head = f"table inet {table} {{}}\ndelete table inet {table}\n"
    if not bridges:
        return head
    names = ", ".join(_q(b.bridge) for b in bridges)
    dnat = []
    for p in sorted(ports, key=lambda p: (p.proto, p.host_port, p.host_ip)):
        match = f"ip daddr {p.host_ip} " if p.host_ip not in ("", "0.0.0.0") else ""
        rule = f"{match}{p.proto} dport {p.host_port} dnat ip to {p.ip}:{p.port}"
        # A port bound to loopback is reachable from this host only: it is never
        # translated for packets that arrive on an interface.
        dnat.append(("out", rule) if _is_loopback(p.host_ip) else ("any", rule))
    post, forward, guard = [], [], []
    for b in bridges:
        br = _q(b.bridge)
        if b.internal:
            forward.append(f"iifname {br} oifname != {br} drop")
            forward.append(f"oifname {br} iifname != {br} drop")
            guard.append(f"iifname {br} ip daddr != {b.gateway} fib daddr type local drop")
        else:
            post.append(f"ip saddr {b.subnet} oifname != {br} masquerade")
        # Published on 127.0.0.1 and answered on the bridge: the source must be rewritten
        # (route_localnet lets such packets leave on it; the guard keeps the rest out).
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        # A container reaching a published port on the host's address, served by a
        # container of the same bridge: the answer must come back through the host.
        post.append(f"iifname {br} oifname {br} ct status dnat masquerade")
    # Bridges and veths have a 64 KiB MTU (driver.DEFAULT_MTU): a TCP connection leaving
    # the host through a smaller one is told the route's MTU in its SYN and SYN-ACK, so
    # it works where ICMP "fragmentation needed" is lost. Before the accepts below: a
    # SYN-ACK is already "established". Only ever lowers the MSS.
    forward.insert(0, "iifname @bridges tcp flags syn tcp option maxseg size set rt mtu")
    forward.append("ct status dnat accept")
    forward.append("ct state established,related accept")
    for b in bridges:
        br = _q(b.bridge)
        forward.append(f"iifname {br} oifname @bridges oifname != {br} drop")
    lines = [
        f"table inet {table} {{",
        "  set bridges { type ifname; elements = { " + names + " } }",
        "  chain guard {",
        "    type filter hook prerouting priority raw; policy accept;",
        # route_localnet is on for the bridges: never let a container reach 127/8 itself.
        "    iifname @bridges ip daddr 127.0.0.0/8 drop",
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *(f"    {r}" for r in guard),
        "  }",
        "  chain ports {",
        *(f"    {r}" for kind, r in dnat if kind == "any"),
        "  }",
        "  chain ports_local {",
        *(f"    {r}" for _, r in dnat),
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump ports",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    fib daddr type local jump ports_local",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        *(f"    {r}" for r in post),
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        *(f"    {r}" for r in forward),
        "  }",
        "}",
    ]
    return head + "\n".join(lines) + "\n"


# What was last applied to a table, for this boot: a reboot empties nftables, and /run is not
# a tmpfs everywhere (it is a disk on this machine), so the boot id is in the name.
_APPLIED = "/run/berth-nft-{}-{}.rules"


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def apply(text, table=None):
    """Replace the table by ``text``. With ``table`` given, nothing is done when ``text`` is
    what was last applied to it in this boot (kept in /run): loading libnftables costs
    ~11 ms and most container starts and stops leave the rules as they were. Called with
    the host lock."""
    record = _APPLIED.format(table, _boot_id()) if table else None
    if record:
        try:
            with open(record) as f:
                if f.read() == text:
                    return
        except OSError:
            pass
        try:
            os.unlink(record)  # rules being changed: unknown until the new ones are in
        except FileNotFoundError:
            pass
    from berth.sys import nft

    try:
        nft.run(text)
    except OSError as err:
        raise SystemFailure(f"apply firewall rules: {err.strerror}") from None
    if record:
        # The table's records of earlier boots go; a deleted table (no chain left) keeps
        # none, so removed roots leave nothing in /run.
        base = os.path.dirname(record)
        stale = os.path.basename(_APPLIED.format(table, ""))
        for name in os.listdir(base):
            if name.startswith(stale[:-len(".rules")]) and os.path.join(base, name) != record:
                try:
                    os.unlink(os.path.join(base, name))
                except FileNotFoundError:
                    pass
        if "chain" in text:
            from berth.network._files import write_atomic
            write_atomic(record, text.encode())


def exists(table):
    from berth.sys import nft

    try:
        nft.run(f"list table inet {table}")
        return True
    except OSError:
        return False
