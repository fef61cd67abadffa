"""The embedded DNS server's message codec and lookup rules (no sockets)."""

import struct

import pytest

from berth.network import dns, dnsmsg


def query(name, qtype=dnsmsg.A, ident=0x1234, flags=dnsmsg.RD, edns=None, raw_name=None):
    wire = raw_name if raw_name is not None else b"".join(
        bytes((len(p),)) + p.encode() for p in name.split(".") if p) + b"\0"
    ar = 1 if edns else 0
    out = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, ar) + wire + struct.pack("!HH", qtype, 1)
    if edns:
        out += b"\0" + struct.pack("!HHIH", dnsmsg.OPT, edns, 0, 0)
    return out


def answers(data):
    """(id, flags, [(type, rdata)]) of a response (tests/integration uses it too)."""
    ident, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    pos = 12
    if qd:
        _, pos = dnsmsg.read_name(data, pos)
        pos += 4
    out = []
    for _ in range(an):
        _, pos = dnsmsg.read_name(data, pos)
        rtype, _cls, _ttl, size = struct.unpack_from("!HHIH", data, pos)
        out.append((rtype, data[pos + 10:pos + 10 + size]))
        pos += 10 + size
    return ident, flags, out


def test_parse_query_keeps_case_and_reads_edns():
    q = dnsmsg.parse_query(query("WeB.Example.", edns=4096))
    assert q.name == "web.example" and q.qtype == dnsmsg.A and q.id == 0x1234
    assert q.question.startswith(b"\x03WeB\x07Example\x00")
    assert q.edns and q.udp_size == dnsmsg.UDP_MAX
    assert dnsmsg.parse_query(query("x")).udp_size == 512


def test_answer_echoes_question_and_id():
    q = dnsmsg.parse_query(query("Web", ident=7))
    resp = dnsmsg.build_answer(q, [(dnsmsg.A, dnsmsg.ipv4("10.0.0.2"))], 600)
    ident, flags, recs = answers(resp)
    assert ident == 7 and flags & dnsmsg.QR and flags & dnsmsg.RD and not flags & 0xF
    assert recs == [(dnsmsg.A, bytes([10, 0, 0, 2]))]
    assert b"\x03Web\x00" in resp


def test_answer_too_big_for_udp_is_truncated_not_amplified():
    q = dnsmsg.parse_query(query("many"))
    recs = [(dnsmsg.A, dnsmsg.ipv4(f"10.0.{i // 256}.{i % 256}")) for i in range(100)]
    resp = dnsmsg.build_answer(q, recs, 600)
    ident, flags, got = answers(resp)
    assert flags & dnsmsg.TC and got == [] and len(resp) <= 512
    big = dnsmsg.build_answer(q, recs, 600, max_size=65535)
    assert len(answers(big)[2]) == 100


def test_compression_pointers_are_followed_backwards_only():
    # question name "a" then a pointer to it in a second name: fine
    data = b"\x01a\x00\xc0\x00"
    assert dnsmsg.read_name(data, 3) == ("a", 5)
    for bad in (b"\xc0\x00", b"\x01a\xc0\x00", b"\xc0\x05", b"\x05ab", b"\x40", b"\xc0"):
        with pytest.raises(dnsmsg.Malformed):
            dnsmsg.read_name(bad, 0)
    with pytest.raises(dnsmsg.Malformed):  # a name over 255 bytes
        dnsmsg.read_name(b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 +
                         b"\x3f" + b"d" * 63 + b"\0", 0)


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 11, query("x")[:-2],
    struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\0" + b"\0\1\0\1" * 2,
    struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 1) + b"\0\0\1\0\1" + b"\0\0\x29",
    query("x", raw_name=b"\xc0\x0c"),
])
def test_malformed_queries_raise(data):
    with pytest.raises(dnsmsg.Malformed):
        dnsmsg.parse_query(data)


def test_error_reply_is_never_longer_than_the_query():
    data = query("x")[:14]
    resp = dnsmsg.build_error(data, dnsmsg.FORMERR)
    assert len(resp) == 12 and resp[:2] == data[:2]
    assert struct.unpack_from("!H", resp, 2)[0] & 0xF == dnsmsg.FORMERR


def test_response_matches_checks_id_and_question():
    q = dnsmsg.parse_query(query("example.com"))
    resp = dnsmsg.build_answer(q, [], 0)
    assert dnsmsg.response_matches(dnsmsg.with_id(resp, 99), 99, q.question)
    assert not dnsmsg.response_matches(dnsmsg.with_id(resp, 98), 99, q.question)
    other = dnsmsg.parse_query(query("example.org"))
    assert not dnsmsg.response_matches(dnsmsg.build_answer(other, [], 0), 0x1234, q.question)
    assert not dnsmsg.response_matches(query("example.com"), 0x1234, q.question)  # not a reply


def test_reverse_name():
    assert dnsmsg.reverse_name("2.0.18.172.in-addr.arpa") == "172.18.0.2"
    assert dnsmsg.reverse_name("example.com") is None
    assert dnsmsg.reverse_name("300.0.18.172.in-addr.arpa") is None


TABLE = {"networks": {
    "n1": {"gateway": "10.1.0.1", "name": "front", "entries": [
        {"container": "0123456789abcdef" * 4, "ip": "10.1.0.2", "names": ["Web", "nginx"]},
        {"container": "1111111111112222" * 4, "ip": "10.1.0.3", "names": ["client"],
         "dns": ["9.9.9.9"]},
        {"container": "3333333333334444" * 4, "ip": "10.1.0.4", "names": ["nginx"]}]},
    "n2": {"gateway": "10.2.0.1", "entries": [
        {"container": "1111111111112222" * 4, "ip": "10.2.0.3", "names": ["client"]},
        {"container": "5555555555556666" * 4, "ip": "10.2.0.5", "names": ["db"]}]},
    "n3": {"gateway": "10.3.0.1", "entries": [
        {"container": "7777777777778888" * 4, "ip": "10.3.0.7", "names": ["secret"]}]}},
    "search": ["corp.example"]}


def ips(found):
    return sorted(e["ip"] for e in found) if found else found


def test_lookup_sees_only_shared_networks():
    r = dns.Records(TABLE, host_search=["home.lan"])
    assert ips(r.lookup("10.1.0.3", "web")) == ["10.1.0.2"]
    assert ips(r.lookup("10.1.0.3", "WEB.")) == ["10.1.0.2"]
    assert ips(r.lookup("10.1.0.3", "nginx")) == ["10.1.0.2", "10.1.0.4"]
    assert ips(r.lookup("10.1.0.3", "0123456789ab")) == ["10.1.0.2"]
    # the client is on n1 and n2: from either address it sees both
    assert ips(r.lookup("10.1.0.3", "db")) == ["10.2.0.5"]
    assert ips(r.lookup("10.2.0.3", "web")) == ["10.1.0.2"]
    # web is not on n2: db is invisible to it; nobody sees n3
    assert r.lookup("10.1.0.2", "db") is None
    assert r.lookup("10.1.0.3", "secret") is None
    assert r.lookup("10.3.0.7", "web") is None
    assert ips(r.lookup("10.3.0.7", "secret")) == ["10.3.0.7"]
    # the host (a gateway) and strangers see no names
    assert r.lookup("10.1.0.1", "web") is None
    assert r.lookup("192.0.2.1", "web") is None


def test_lookup_with_search_domains_and_network_name():
    r = dns.Records(TABLE, host_search=["home.lan"])
    assert ips(r.lookup("10.1.0.3", "web.home.lan")) == ["10.1.0.2"]
    assert ips(r.lookup("10.1.0.3", "web.corp.example")) == ["10.1.0.2"]
    assert ips(r.lookup("10.1.0.3", "web.front")) == ["10.1.0.2"]
    assert r.lookup("10.1.0.3", "web.elsewhere") is None
    assert r.lookup("10.1.0.3", "db.front") is None


def test_reverse_and_allowed_and_upstreams():
    r = dns.Records(TABLE)
    assert r.reverse("10.1.0.3", "10.1.0.2") == "web"
    assert r.reverse("10.1.0.3", "10.3.0.7") is None
    assert r.allowed("10.1.0.2") and r.allowed("10.2.0.1") and not r.allowed("192.0.2.9")
    host = ["10.1.0.1", "192.0.2.53", "127.0.0.1:5353", "::1"]
    assert r.upstreams_for("10.1.0.2", host) == [("192.0.2.53", 53), ("127.0.0.1", 5353)]
    assert r.upstreams_for("10.1.0.3", host) == [("9.9.9.9", 53)]
    r2 = dns.Records(dict(TABLE, upstreams=["198.51.100.1"]))
    assert r2.upstreams_for("10.1.0.2", host) == [("198.51.100.1", 53)]


def test_records_tolerate_junk():
    r = dns.Records({"networks": {"x": "nope", "y": {"entries": [1, {"names": ["a"]}]}}})
    assert r.gateways == set() and r.lookup("1.2.3.4", "a") is None
    assert dns.Records("garbage").gateways == set()


def test_host_resolvers_follow_the_systemd_stub(tmp_path):
    main = tmp_path / "resolv.conf"
    real = tmp_path / "real.conf"
    main.write_text("# hi\nnameserver 127.0.0.53\nsearch a.example b.example\n")
    real.write_text("nameserver 192.0.2.1\nnameserver 192.0.2.2 # x\n")
    assert dns.host_resolvers(str(main), str(real)) == (["192.0.2.1", "192.0.2.2"],
                                                        ["a.example", "b.example"])
    main.write_text("nameserver 192.0.2.9\ndomain lan\n")
    assert dns.host_resolvers(str(main), str(real)) == (["192.0.2.9"], ["lan"])
    assert dns.host_resolvers(str(tmp_path / "none"), str(real)) == ([], [])


def test_write_records_is_atomic_and_readable(tmp_path):
    dns.write_records(str(tmp_path), TABLE)
    assert dns.read_records(str(tmp_path)) == TABLE
    assert sorted(p.name for p in (tmp_path / "network").iterdir()) == ["dns.json"]
    assert dns.read_records(str(tmp_path / "other")) == {"networks": {}}
    assert dns.server_pid(str(tmp_path)) == 0


def test_random_and_mutated_packets_only_raise_malformed():
    import random

    rng = random.Random(5)
    seeds = [query("web.example", edns=1232), query("a" * 63 + ".b"),
             query("x", raw_name=b"\x01x\xc0\x0c")]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data) + 1)]
        try:
            q = dnsmsg.parse_query(bytes(data))
        except dnsmsg.Malformed:
            continue
        resp = dnsmsg.build_answer(q, [(dnsmsg.A, b"\1\2\3\4")], 60)
        assert len(resp) <= max(q.udp_size, 512)


def test_internal_networks_do_not_forward():
    t = {"networks": {
        "in": {"gateway": "10.5.0.1", "internal": True, "entries": [
            {"container": "a" * 64, "ip": "10.5.0.2", "names": ["a"]},
            {"container": "b" * 64, "ip": "10.5.0.3", "names": ["b"]}]},
        "out": {"gateway": "10.6.0.1", "entries": [
            {"container": "b" * 64, "ip": "10.6.0.3", "names": ["b"]}]},
        "v6": {"gateway": "fd00::1", "entries": []}}}
    r = dns.Records(t)
    assert not r.may_forward("10.5.0.2") and ips(r.lookup("10.5.0.2", "b")) == ["10.5.0.3"]
    assert r.may_forward("10.5.0.3") and r.may_forward("10.5.0.1")
    assert not r.may_forward("192.0.2.1")
    assert r.gateways == {"10.5.0.1", "10.6.0.1"}
