"""DNS messages (RFC 1035, EDNS0 of RFC 6891): just what the embedded server needs.

``parse_query`` reads a query's header, its one question and the client's EDNS payload size;
``build_answer`` and ``build_error`` make responses that echo the question. Names are read
defensively: a compression pointer must point backwards (so no loops), labels are at most
63 bytes and names 255; anything else raises ``Malformed``. Only ``struct``: the server
imports this module and should stay small.
"""

import struct

QUERY = 0
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, OPT, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 41, 255
IN = 1

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080

UDP_MIN = 512          # what a client without EDNS accepts
UDP_MAX = 1232         # the EDNS size we offer and accept at most (the 2020 flag day's)

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")


class Malformed(ValueError):
    """The bytes are not a DNS message we can read."""


class Query:
    """One parsed query: ``id``, ``flags``, ``opcode``, ``name`` (lower case, no trailing dot),
    ``qtype``, ``qclass``, ``question`` (its raw bytes, name uncompressed), ``udp_size`` (what
    the client accepts over UDP) and ``edns`` (the query carried an OPT record)."""

    __slots__ = ("id", "flags", "opcode", "qdcount", "name", "qtype", "qclass", "question",
                 "udp_size", "edns")


def header(data):
    """``(id, flags, qdcount, ancount, nscount, arcount)``; Malformed when shorter than 12."""
    if len(data) < 12:
        raise Malformed("shorter than a header")
    return _HEADER.unpack_from(data, 0)


def read_name(data, offset):
    """The name at ``offset`` as lower-case labels joined by dots, and the offset after it."""
    labels, end = read_labels(data, offset)
    return b".".join(labels).decode("latin-1").lower(), end


def read_labels(data, offset):
    """The raw labels of the name at ``offset`` (pointers followed) and the offset after it."""
    labels = []
    length = 0
    end = None
    pos = offset
    lowest = offset  # pointers must go strictly below every place already read
    while True:
        if pos >= len(data):
            raise Malformed("name runs past the end")
        size = data[pos]
        if size & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise Malformed("truncated compression pointer")
            target = ((size & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= lowest:
                raise Malformed("compression pointer does not point backwards")
            pos = lowest = target
            continue
        if size & 0xC0:
            raise Malformed("unknown label type")
        if size == 0:
            break
        if pos + 1 + size > len(data):
            raise Malformed("label runs past the end")
        length += size + 1
        if length > 254:
            raise Malformed("name longer than 255 bytes")
        labels.append(data[pos + 1:pos + 1 + size])
        pos += 1 + size
    if end is None:
        end = pos + 1
    return labels, end


def _wire(labels):
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\0"


def encode_name(name):
    """Wire form of a dotted name (no compression)."""
    out = bytearray()
    for label in name.strip(".").split(".") if name.strip(".") else ():
        raw = label.encode("ascii", "replace")
        if not raw or len(raw) > 63:
            raise Malformed(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise Malformed(f"name too long: {name!r}")
    return bytes(out)


def _skip_record(data, offset):
    _, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise Malformed("record runs past the end")
    rtype, rclass, _ttl, rdlen = _RR.unpack_from(data, offset)
    offset += 10 + rdlen
    if offset > len(data):
        raise Malformed("record data runs past the end")
    return offset, rtype, rclass


def parse_query(data):
    """Parse a query; Malformed if it cannot be read (the caller answers FORMERR when at least
    the header could be read, see ``header``)."""
    ident, flags, qd, an, ns, ar = header(data)
    q = Query()
    q.id, q.flags, q.qdcount = ident, flags, qd
    q.opcode = (flags >> 11) & 0xF
    if flags & QR:
        raise Malformed("a response, not a query")
    if qd != 1:
        raise Malformed(f"{qd} questions")
    labels, pos = read_labels(data, 12)
    if pos + 4 > len(data):
        raise Malformed("question runs past the end")
    q.qtype, q.qclass = struct.unpack_from("!HH", data, pos)
    q.name = b".".join(labels).decode("latin-1").lower()
    # Echoed as asked (0x20 case randomisation), uncompressed so 0xc00c points at it.
    q.question = _wire(labels) + bytes(data[pos:pos + 4])
    pos += 4
    q.udp_size, q.edns = UDP_MIN, False
    for index in range(an + ns + ar):
        pos, rtype, rclass = _skip_record(data, pos)
        if rtype == OPT and index >= an + ns:
            q.edns = True
            q.udp_size = min(max(rclass, UDP_MIN), UDP_MAX)
    return q


def _opt():
    return b"\0" + _RR.pack(OPT, UDP_MAX, 0, 0)


def _header_for(query, rcode, qd, an, ar, extra_flags=0):
    flags = QR | (query.flags & (RD | 0x7800)) | RA | extra_flags | rcode
    return _HEADER.pack(query.id, flags, qd, an, 0, ar)


def build_answer(query, records, ttl, rcode=NOERROR, max_size=None):
    """A response to ``query`` with ``records`` (``(rtype, rdata)`` pairs for the question's
    name), authoritative. When it would not fit ``max_size`` (the client's UDP size by
    default) the answers are dropped and TC set, so the client asks again over TCP."""
    limit = query.udp_size if max_size is None else max_size
    opt = _opt() if query.edns else b""
    body = bytearray()
    for rtype, rdata in records:
        body += b"\xc0\x0c" + _RR.pack(rtype, IN, ttl, len(rdata)) + rdata
    count = len(records)
    if 12 + len(query.question) + len(body) + len(opt) > limit:
        body, count, tc = bytearray(), 0, TC
    else:
        tc = 0
    head = _header_for(query, rcode, 1, count, 1 if opt else 0, AA | tc)
    return head + query.question + bytes(body) + opt


def build_error(data_or_query, rcode):
    """A bare error response (FORMERR, SERVFAIL, REFUSED, NOTIMP) echoing the question when the
    query could be parsed; never longer than the query it answers."""
    if isinstance(data_or_query, Query):
        q = data_or_query
        opt = _opt() if q.edns else b""
        return _header_for(q, rcode, 1, 0, 1 if opt else 0) + q.question + opt
    ident, flags = struct.unpack_from("!HH", data_or_query, 0)
    q = Query()
    q.id, q.flags = ident, flags
    return _header_for(q, rcode, 0, 0, 0)


def response_matches(data, ident, question):
    """Whether ``data`` is a response with ``ident`` to the same question (a relayed answer
    must be checked before it is passed on: anyone can send a UDP packet)."""
    try:
        rid, flags, qd, _an, _ns, _ar = header(data)
        if rid != ident or not flags & QR or qd != 1:
            return False
        name, pos = read_name(data, 12)
        if pos + 4 > len(data):
            return False
        mine, mpos = read_name(question, 0)
        return name == mine and data[pos:pos + 4] == question[mpos:mpos + 4]
    except Malformed:
        return False


def with_id(data, ident):
    """``data`` with its id replaced."""
    return struct.pack("!H", ident) + bytes(data[2:])


def ipv4(text):
    """rdata of an A record."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(int(p) for p in parts)


def ipv6(text):
    """rdata of an AAAA record."""
    import ipaddress  # rare: only for entries with an IPv6 address

    return ipaddress.IPv6Address(text).packed


def reverse_name(name):
    """The IPv4 address a name under in-addr.arpa stands for, or None."""
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[:-len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return ".".join(str(int(p)) for p in reversed(parts))
