"""Container name resolution: the records, the lookup rules, and the server's life.

The engine keeps ``<root>/network/dns.json`` (``write_records``)::

    {"networks": {NET_ID: {"gateway": "172.18.0.1", "name": "mynet", "internal": false,
                           "entries": [{"container": CID, "ip": "172.18.0.2",
                                        "names": ["web", "nginx", "0123456789ab"],
                                        "ip6": "fd00::2", "dns": ["1.1.1.1"]}]}},
     "upstreams": ["192.0.2.53", "192.0.2.54:5353"], "search": ["corp.example"]}

(``name``, ``internal``, ``ip6``, ``dns``, ``upstreams`` and ``search`` are optional; a
container whose networks are all ``internal`` gets REFUSED for names that are not ours: no
way out, not even by DNS). One server process per
root (``ensure_server``; ``dnsserver.py`` is its loop) listens on port 53 of every gateway
and answers, for the container that asks (found by the query's source address), the names of
the containers it shares a network with (``Records.lookup``); everything else goes to the
upstream resolvers: the asker's own ``dns`` list, else the table's ``upstreams``, else the
host's (``host_resolvers``).

Server bookkeeping under ``<root>/network/``: ``dns.pid`` holds the server's pid and is
flock'ed by the server for its whole life (so a pid is trusted only while the lock is held:
no signal ever reaches a recycled pid), ``dns.lock`` serialises the callers that start it.
"""

import fcntl
import os

from berth.errors import SystemFailure
from berth.network._files import write_atomic
from berth.sys import spawn

PYTHON = spawn.PYTHON
_BOOT = ("import sys;sys.path.insert(0,%r);"
         "from berth.network.dnsserver import main;main(%r,%d)")
_SIGHUP = 1
_STUB = "127.0.0.53"
HOST_RESOLV = "/etc/resolv.conf"
SYSTEMD_RESOLV = "/run/systemd/resolve/resolv.conf"


def _dir(root):
    return os.path.join(os.path.abspath(root), "network")


def records_path(root):
    return os.path.join(_dir(root), "dns.json")


def write_records(root, table):
    """Replace ``<root>/network/dns.json`` with ``table`` atomically (temp, rename) and tell
    a running server to read it now rather than at its next look. Not fsynced: the table
    is derived from the endpoints in the database and rewritten at every change (an fsync
    here cost 0.2-4 ms of each networked start and stop on this disk)."""
    from berth.spec import jsonio

    write_atomic(records_path(root), jsonio.dumps(table).encode(), sync=False)
    pid = server_pid(root)
    if pid:
        try:
            os.kill(pid, _SIGHUP)
        except ProcessLookupError:
            pass


def read_records(root):
    """The table ``write_records`` last wrote ({"networks": {}} when none)."""
    from berth.spec import jsonio

    try:
        return jsonio.load_file(records_path(root))
    except FileNotFoundError:
        return {"networks": {}}


# ---------------------------------------------------------------- the lookup rules

class Records:
    """The table, indexed for the server. Names are compared in lower case."""

    def __init__(self, table, host_search=()):
        table = table if isinstance(table, dict) else {}
        networks = table.get("networks")
        networks = networks if isinstance(networks, dict) else {}
        self.gateways = set()
        self.names = {}        # net_id -> {name: [entry, ...]}
        self.by_ip = {}        # container ip -> [entry, ...] (one per network it is on)
        self.nets_of = {}      # container id -> {net_id, ...}
        self.net_names = {}    # network name -> net_id
        self.internal = set()  # net_ids with no way out
        search = list(host_search) + list(table.get("search") or ())
        self.search = [d.strip(".").lower() for d in search if isinstance(d, str) and d]
        self.upstreams = [u for u in table.get("upstreams") or () if isinstance(u, str)]
        for net_id, net in networks.items():
            if not isinstance(net, dict):
                continue
            if parse_server(str(net.get("gateway") or "")):  # IPv4 only: we bind AF_INET
                self.gateways.add(net["gateway"])
            if net.get("internal") is True:
                self.internal.add(net_id)
            if net.get("name"):
                self.net_names[str(net["name"]).lower()] = net_id
            index = self.names.setdefault(net_id, {})
            entries = net.get("entries")
            for entry in entries if isinstance(entries, list) else ():
                if not isinstance(entry, dict) or not isinstance(entry.get("ip"), str):
                    continue
                cid = str(entry.get("container") or "")
                names = entry.get("names")
                names = [n.lower().strip(".") for n in names
                         if isinstance(n, str)] if isinstance(names, list) else []
                entry = dict(entry, network=net_id, names=[n for n in names if n])
                if len(cid) >= 12 and all(c in "0123456789abcdef" for c in cid[:12]):
                    names.append(cid[:12])
                for name in dict.fromkeys(n for n in names if n):
                    index.setdefault(name, []).append(entry)
                self.by_ip.setdefault(entry["ip"], []).append(entry)
                self.nets_of.setdefault(cid, set()).add(net_id)

    def allowed(self, source_ip):
        """Whether a query from ``source_ip`` is served at all: containers in the table and the
        host through a gateway address; anyone else (a routed stranger) is refused, so the
        server is never an open resolver."""
        return source_ip in self.by_ip or source_ip in self.gateways

    def visible(self, source_ip):
        """The networks the asker is on (empty for the host or a stranger)."""
        nets = set()
        for entry in self.by_ip.get(source_ip, ()):
            nets |= self.nets_of.get(str(entry.get("container") or ""), set())
        return nets

    def lookup(self, source_ip, qname):
        """The entries ``qname`` names for the asker at ``source_ip``, or None when the name
        is not one of ours for it. ``qname`` matches a container name, alias or short id, as
        is, followed by a search domain, or followed by the network's name."""
        qname = qname.lower().rstrip(".")
        nets = self.visible(source_ip)
        if not nets:
            return None
        found = []
        for net_id in sorted(nets):
            index = self.names.get(net_id) or {}
            for candidate in self._candidates(qname, net_id):
                for entry in index.get(candidate, ()):
                    if entry not in found:
                        found.append(entry)
        return found or None

    def _candidates(self, qname, net_id):
        yield qname
        for domain in self.search:
            if qname.endswith("." + domain):
                yield qname[:-len(domain) - 1]
        head, _, tail = qname.rpartition(".")
        if head and self.net_names.get(tail) == net_id:
            yield head

    def reverse(self, source_ip, ip):
        """The first name of the container at ``ip`` if the asker shares a network with it."""
        nets = self.visible(source_ip)
        for entry in self.by_ip.get(ip, ()):
            if entry["network"] in nets:
                for name in entry["names"]:
                    return name
        return None

    def may_forward(self, source_ip):
        """Whether queries for other names may leave: the host may, a container only when
        one of its networks is not internal."""
        if source_ip in self.gateways and source_ip not in self.by_ip:
            return True
        return bool(self.visible(source_ip) - self.internal)

    def upstreams_for(self, source_ip, host):
        """Where to forward the asker's other queries: its own ``dns`` servers, else the
        table's, else the host's; never one of our own gateways (that would loop)."""
        own = []
        for entry in self.by_ip.get(source_ip, ()):
            own.extend(s for s in entry.get("dns") or () if isinstance(s, str))
        chosen = own or self.upstreams or list(host)
        out = []
        for server in chosen:
            addr = parse_server(server)
            if addr and addr[0] not in self.gateways and addr not in out:
                out.append(addr)
        return out


def parse_server(text):
    """``"1.2.3.4"`` or ``"1.2.3.4:5353"`` as (ip, port); None for what we cannot use (IPv6
    upstreams are not used: the server forwards over IPv4)."""
    host, sep, port = text.strip().partition(":")
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    if sep and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    return host, int(port) if sep else 53


def parse_resolv_conf(text):
    """(nameservers, search domains) of a resolv.conf."""
    servers, search = [], []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(words[1])
        elif words and words[0] in ("search", "domain"):
            search = words[1:]
    return servers, search


def host_resolvers(path=HOST_RESOLV, stub_path=SYSTEMD_RESOLV):
    """The host's (nameservers, search domains); when the host uses systemd-resolved's stub
    (127.0.0.53) the real upstreams from ``stub_path`` instead, if it is there."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            servers, search = parse_resolv_conf(f.read())
    except OSError:
        return [], []
    if _STUB in servers:
        try:
            with open(stub_path, encoding="utf-8", errors="replace") as f:
                real, _ = parse_resolv_conf(f.read())
            servers = real
        except OSError:
            pass
    return servers, search


# ---------------------------------------------------------------- the server's life

def _lock_state(root):
    """The running server's pid, or 0. The pid file is trusted only while it is locked."""
    try:
        fd = os.open(os.path.join(_dir(root), "dns.pid"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() and _is_server(int(text)) else 0
        return 0
    finally:
        os.close(fd)


def _is_server(pid):
    # The lock says a server runs; this says the pid read is still that server's (the file
    # is rewritten just after a new server takes the lock).
    return b"berth.network.dnsserver" in spawn.cmdline(pid)


def server_pid(root):
    """The pid of the server running for ``root``, or 0."""
    return _lock_state(root)


def ensure_server(root):
    """Start the DNS server for ``root`` unless one runs; return its pid. The server is
    detached (own session, stdio on /dev/null, not our child) and outlives the caller."""
    import berth

    directory = _dir(root)
    os.makedirs(directory, exist_ok=True)
    lock = os.open(os.path.join(directory, "dns.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pid = server_pid(root)
        if pid:
            return pid
        src = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
        ready_r, ready_w = os.pipe()
        try:
            argv = [PYTHON, "-IS", "-c", _BOOT % (src, os.path.abspath(root), ready_w)]
            first = spawn.spawn_detached(argv, {"PATH": spawn.PATH}, (ready_w,))
        except OSError as err:
            os.close(ready_r)
            os.close(ready_w)
            raise SystemFailure(f"cannot start the DNS server ({PYTHON}): {err.strerror}") \
                from None
        os.close(ready_w)
        said = spawn.collect(ready_r, first)
        word, _, rest = said.decode(errors="replace").strip().partition(" ")
        if word == "ready" and rest.isdigit():
            return int(rest)
        raise SystemFailure(f"the DNS server did not start: {rest or 'no word from it'}")
    finally:
        os.close(lock)


def stop_server(root, timeout=10.0):
    """Stop the server for ``root`` (SIGTERM, then SIGKILL after ``timeout``); return once the
    process has exited (watched through a pidfd, so a recycled pid is never signalled).
    True if there was one."""
    import select
    import signal

    pid = server_pid(root)
    if not pid:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not poller.poll(int(timeout * 1000)):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            poller.poll()
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    return True
