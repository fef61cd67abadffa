"""The embedded DNS server as a real process on loopback addresses (127/8 is all local, so
127.77.N.1 works as a "gateway" without configuring anything), with a fake upstream."""

import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from berth.network import dns, dnsmsg
from tests.unit.test_network_dns import answers, query

N = os.getpid() % 250 + 1
GW = f"127.77.{N}.1"
GW2 = f"127.77.{N}.129"
WEB, CLIENT, LONER, STRANGER = (f"127.77.{N}.2", f"127.77.{N}.3", f"127.77.{N}.130",
                                f"127.77.{N}.99")
UPSTREAM = f"127.78.{N}.1"
CID = "0123456789abcdef" * 4


def table(**extra):
    return dict({"networks": {
        "front": {"gateway": GW, "name": "front", "entries": [
            {"container": CID, "ip": WEB, "names": ["web", "nginx"]},
            {"container": "c" * 64, "ip": CLIENT, "names": ["client"]}]},
        "other": {"gateway": GW2, "entries": [
            {"container": "d" * 64, "ip": LONER, "names": ["loner"]}]}},
        "upstreams": [UPSTREAM]}, **extra)


def make_query(name, qtype=dnsmsg.A):
    ident = int.from_bytes(os.urandom(2), "big")
    return ident, query(name, qtype, ident=ident)


def decode(data):
    ident, flags, recs = answers(data)
    addrs = [socket.inet_ntoa(rdata) for rtype, rdata in recs if rtype == dnsmsg.A]
    return ident, flags & 0xF, flags, addrs


def ask(name, source=CLIENT, server=GW, qtype=dnsmsg.A, tcp=False, raw=None):
    ident, data = make_query(name, qtype)
    data = raw if raw is not None else data
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(20)
        s.bind((source, 0))
        if tcp:
            s.connect((server, 53))
            s.sendall(len(data).to_bytes(2, "big") + data)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                chunk = s.recv(65535)
                assert chunk, "server closed the connection"
                buf += chunk
            reply = buf[2:]
        else:
            s.sendto(data, (server, 53))
            reply, _ = s.recvfrom(65535)
    got = decode(reply)
    if raw is None:
        assert got[0] == ident
    return got + (reply,)


class FakeUpstream:
    """Answers example.test (A 192.0.2.7), nx.test (NXDOMAIN), fail.test (SERVFAIL),
    big.test (truncated over UDP, 60 addresses over TCP); ignores silent.test."""

    def __init__(self, ip):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((ip, 53))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((ip, 53))
        self.tcp.listen(8)
        self.seen = []
        self.stop = False
        self.threads = [threading.Thread(target=self._udp, daemon=True),
                        threading.Thread(target=self._tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def respond(self, data, tcp):
        q = dnsmsg.parse_query(data)
        self.seen.append((q.name, q.id))
        if q.name == "silent.test":
            return None
        if q.name == "example.test":
            return dnsmsg.build_answer(q, [(dnsmsg.A, dnsmsg.ipv4("192.0.2.7"))], 30)
        if q.name == "big.test":
            recs = [(dnsmsg.A, dnsmsg.ipv4(f"192.0.2.{i}")) for i in range(1, 61)]
            return dnsmsg.build_answer(q, recs, 30, max_size=65535 if tcp else None)
        rcode = dnsmsg.NXDOMAIN if q.name == "nx.test" else dnsmsg.SERVFAIL
        return dnsmsg.build_answer(q, [], 30, rcode=rcode)

    def _udp(self):
        while not self.stop:
            try:
                data, addr = self.udp.recvfrom(65535)
            except OSError:
                return
            if self.stop:
                return
            try:
                reply = self.respond(data, False)
            except dnsmsg.Malformed:
                continue
            if reply:
                self.udp.sendto(reply, addr)

    def _tcp(self):
        while not self.stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            if self.stop:
                conn.close()
                return
            with conn:
                buf = b""
                while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                    chunk = conn.recv(65535)
                    if not chunk:
                        break
                    buf += chunk
                reply = self.respond(buf[2:], True) if len(buf) > 2 else None
                if reply:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)

    def close(self):
        self.stop = True
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join()
        for s in (self.udp, self.tcp):
            s.close()


@pytest.fixture
def server(tmp_path):
    root = str(tmp_path)
    upstream = FakeUpstream(UPSTREAM)
    try:
        dns.write_records(root, table())
        pid = dns.ensure_server(root)
        yield root, pid, upstream
    finally:
        dns.stop_server(root)
        upstream.close()


def test_names_on_shared_networks(server):
    root, pid, _ = server
    assert ask("web")[1:4:2] == (dnsmsg.NOERROR, [WEB])
    assert ask("WEB.")[3] == [WEB]
    assert ask("nginx")[3] == [WEB]
    assert ask("0123456789ab")[3] == [WEB]
    assert ask("web.front")[3] == [WEB]
    assert ask("web", tcp=True)[3] == [WEB]
    assert ask("client", source=WEB)[3] == [CLIENT]
    # known name, other type: an empty NOERROR, not forwarded
    rcode, addrs = ask("web", qtype=dnsmsg.AAAA)[1:4:2]
    assert (rcode, addrs) == (dnsmsg.NOERROR, [])
    # loner is on another network: not visible, so forwarded (the fake says SERVFAIL)
    assert ask("loner")[1] == dnsmsg.SERVFAIL
    assert ask("web", source=LONER, server=GW2)[1] == dnsmsg.SERVFAIL
    assert ask("loner", source=LONER, server=GW2)[3] == [LONER]


def test_forwarding_relays_answers_and_errors(server):
    root, pid, upstream = server
    ident, rcode, flags, addrs, _ = ask("example.test")
    assert (rcode, addrs) == (dnsmsg.NOERROR, ["192.0.2.7"])
    # the upstream saw a different id: ours is put back on the way out
    assert ("example.test", ident) not in upstream.seen
    assert ask("nx.test")[1] == dnsmsg.NXDOMAIN
    assert ask("fail.test")[1] == dnsmsg.SERVFAIL
    assert ask("example.test", tcp=True)[3] == ["192.0.2.7"]
    assert ask("nx.test", tcp=True)[1] == dnsmsg.NXDOMAIN
    # too big for UDP: truncated; over TCP: all of it
    _, rcode, flags, addrs, _ = ask("big.test")
    assert flags & dnsmsg.TC and addrs == []
    assert len(ask("big.test", tcp=True)[3]) == 60
    # the upstream never answers: SERVFAIL once it timed out
    assert ask("silent.test")[1] == dnsmsg.SERVFAIL


def test_refuses_strangers_and_bad_packets(server):
    root, pid, upstream = server
    assert ask("web", source=STRANGER)[1] == dnsmsg.REFUSED
    assert ask("example.test", source=STRANGER)[1] == dnsmsg.REFUSED
    # the host through the gateway address: forwarded, no container names
    assert ask("example.test", source=GW)[3] == ["192.0.2.7"]
    # garbage: a short FORMERR, never more bytes than were sent
    bad = struct.pack("!HHHHHH", 77, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1"
    ident, rcode, _flags, _addrs, reply = ask("", raw=bad)
    assert ident == 77 and rcode == dnsmsg.FORMERR and len(reply) <= len(bad)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # too short: ignored
        s.bind((CLIENT, 0))
        s.sendto(b"\1\2\3", (GW, 53))
        s.sendto(dnsmsg.build_error(bad, dnsmsg.NOERROR), (GW, 53))  # a response: ignored
    assert ask("web")[3] == [WEB]  # still alive


def test_table_changes_are_seen(server):
    root, pid, _ = server
    t = table()
    t["networks"]["front"]["entries"].append(
        {"container": "e" * 64, "ip": f"127.77.{N}.4", "names": ["late"]})
    gw3 = f"127.77.{N}.200"
    t["networks"]["third"] = {"gateway": gw3, "internal": True, "entries": [
        {"container": "f" * 64, "ip": f"127.77.{N}.201", "names": ["third"]}]}
    del t["networks"]["other"]
    dns.write_records(root, t)
    assert ask("late")[3] == [f"127.77.{N}.4"]
    # the new gateway answers once bound (SIGHUP makes that prompt; the tick retries)
    for _ in range(200):
        try:
            if ask("third", source=f"127.77.{N}.201", server=gw3)[3]:
                break
        except (ConnectionRefusedError, socket.timeout):
            pass
    assert ask("third", source=f"127.77.{N}.201", server=gw3)[3] == [f"127.77.{N}.201"]
    # an internal network's containers get no answers from outside
    assert ask("example.test", source=f"127.77.{N}.201", server=gw3)[1] == dnsmsg.REFUSED
    # the removed gateway no longer listens
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        assert s.connect_ex((GW2, 53)) != 0
    assert dns.ensure_server(root) == pid


def test_server_outlives_its_starter_and_stops_cleanly(tmp_path):
    root = str(tmp_path)
    src = os.path.join(os.path.dirname(dns.__file__), "..", "..")
    code = ("import sys; from berth.network import dns;"
            f"dns.write_records({root!r}, {table()!r}); print(dns.ensure_server({root!r}))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=os.path.abspath(src)),
                             check=True, timeout=60)
        pid = int(out.stdout)
        assert dns.server_pid(root) == pid
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert fields[1] != str(os.getpid())   # not our child
        assert int(fields[3]) == pid or int(fields[3]) != os.getsid(0)  # its own session
        assert ask("web")[3] == [WEB]
        # two racing starters still make one server
        pids = set()
        threads = [threading.Thread(target=lambda: pids.add(dns.ensure_server(root)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pids == {pid}
    finally:
        assert dns.stop_server(root)
    assert dns.server_pid(root) == 0
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.bind((CLIENT, 0))
        s.connect((GW, 53))
        s.send(make_query("web")[1])
        with pytest.raises(OSError):
            s.recv(512)
