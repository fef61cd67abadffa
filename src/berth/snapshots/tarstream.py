"""A streaming reader of layer tars: ustar, GNU long names and links, PAX (global too).

Why not ``tarfile``: its stream mode keeps a 1 MB buffer and copies the rest of it on every
read, so each 512-byte header costs a megabyte of copying (3 s of a 20,000-file layer), and
its per-member object costs another 35 µs. Here one buffer is sliced by offset, file data is
handed to the writer as memoryviews, and a header is parsed with one ``struct`` call.

Errors are ``TarError`` with one line; the caller turns them into its own words. Sparse files
and other exotic types are reported as members of that type, for the caller to refuse.
"""

import struct

BLOCK = 512
_READ = 1 << 20
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")

REGULAR = (b"0", b"\0", b"7")
HARDLINK, SYMLINK, CHR, BLK, DIR, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
_PAX, _GLOBAL, _LONGNAME, _LONGLINK = b"x", b"g", b"L", b"K"
_MAX_META = 1 << 20  # PAX and GNU long-name records larger than this are refused


class TarError(Exception):
    pass


def _kind(typ):
    return lambda self: self.type == typ


class Member:
    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "linkname",
                 "devmajor", "devminor", "pax_headers")

    def isreg(self):
        return self.type in REGULAR

    isdir = _kind(DIR)
    issym = _kind(SYMLINK)
    islnk = _kind(HARDLINK)
    ischr = _kind(CHR)
    isblk = _kind(BLK)
    isfifo = _kind(FIFO)


def _str(raw):
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _num(raw, what):
    if raw and raw[0] & 0x80:
        # GNU base-256: big-endian, the first byte's top bit the marker (0xff: negative).
        value = int.from_bytes(raw[1:], "big")
        if raw[0] == 0xff:
            return value - (1 << (8 * (len(raw) - 1)))
        return value | ((raw[0] & 0x7f) << (8 * (len(raw) - 1)))
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"bad {what} field {raw!r}") from None


def _checksum_ok(block):
    try:
        want = _num(block[148:156], "checksum")
    except TarError:
        return False
    unsigned = sum(block[:148]) + 256 + sum(block[156:512])
    if want == unsigned:
        return True
    signed = sum(struct.unpack_from("148b", block)) + 256 + \
        sum(struct.unpack_from("356b", block, 156))
    return want == signed


def _pax_records(data):
    out = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] in (b"\0", b""):
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError("bad PAX record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError("bad PAX record length") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1:end] != b"\n":
            raise TarError("bad PAX record length")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise TarError("bad PAX record")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return out


def _pax_int(fields, key):
    try:
        value = int(fields[key])
    except ValueError:
        raise TarError(f"bad PAX {key} {fields[key]!r}") from None
    if value < 0:
        raise TarError(f"bad PAX {key} {value}")
    return value


def _mtime_ns(text):
    whole, _, frac = text.strip().partition(".")
    try:
        sec = int(whole or "0")
        frac_ns = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        raise TarError(f"bad PAX mtime {text!r}") from None
    return sec * 1_000_000_000 + (-frac_ns if text.strip().startswith("-") else frac_ns)


class TarReader:
    """Members of the tar read from ``stream`` (anything with ``read(n)``), in order.

    After ``next()`` returns a member, its data must be consumed with ``copy_to`` or
    ``skip`` before the next call (``next`` skips what is left).
    """

    def __init__(self, stream):
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self._left = 0        # data bytes of the current member not consumed yet
        self._pad = 0         # padding after them
        self._global = {}
        self._started = False

    # ------------------------------------------------------------ buffer
    def _avail(self):
        return len(self._buf) - self._pos

    def _fill(self, n):
        """Make at least ``n`` bytes available (fewer only at the end of the stream)."""
        if self._avail() >= n:
            return True
        parts = [self._buf[self._pos:]]
        have = len(parts[0])
        while have < n:
            data = self._stream.read(max(_READ, n - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        self._buf = b"".join(parts) if len(parts) > 1 else parts[0]
        self._pos = 0
        return have >= n

    def _take(self, n):
        if not self._fill(n):
            raise TarError("unexpected end of data")
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def _discard(self, n):
        while n:
            if not self._avail() and not self._fill(1):
                raise TarError("unexpected end of data")
            k = min(n, self._avail())
            self._pos += k
            n -= k

    # ------------------------------------------------------------ members
    def next(self):
        """The next member, or None at the end of the archive."""
        if self._left or self._pad:
            self.skip()
        pax = {}
        longname = longlink = None
        while True:
            if not self._fill(BLOCK):
                if self._avail() == 0 and self._started:
                    return None  # no end-of-archive blocks: accepted, as tar does
                raise TarError("empty or truncated archive" if not self._started
                               else "unexpected end of data")
            block = self._buf[self._pos:self._pos + BLOCK]
            self._pos += BLOCK
            if block.count(0) == BLOCK:
                return None  # the end-of-archive marker (alone: an empty layer)
            if not _checksum_ok(block):
                raise TarError("bad header checksum" if self._started else "not a tar header")
            self._started = True
            (name, mode, uid, gid, size, mtime, _, typ, linkname, magic, _, _, _,
             devmajor, devminor, prefix) = _HEADER.unpack(block)
            size = _num(size, "size")
            if size < 0:
                raise TarError("negative size")
            if typ in (_PAX, _GLOBAL, _LONGNAME, _LONGLINK):
                if size > _MAX_META:
                    raise TarError(f"metadata record of {size} bytes")
                data = self._take(size)
                self._discard(-size % BLOCK)
                if typ == _PAX:
                    pax.update(_pax_records(data))
                elif typ == _GLOBAL:
                    self._global.update(_pax_records(data))
                elif typ == _LONGNAME:
                    longname = _str(data)
                else:
                    longlink = _str(data)
                continue
            m = Member()
            m.type = typ
            fields = dict(self._global)
            fields.update(pax)
            m.pax_headers = fields
            if "path" in fields:
                m.name = fields["path"]
            elif longname is not None:
                m.name = longname
            elif magic == b"ustar\x00" and prefix[:1] not in (b"\0", b""):
                m.name = _str(prefix) + "/" + _str(name)
            else:
                m.name = _str(name)
            if "linkpath" in fields:
                m.linkname = fields["linkpath"]
            elif longlink is not None:
                m.linkname = longlink
            else:
                m.linkname = _str(linkname)
            m.mode = _num(mode, "mode")
            m.uid = _pax_int(fields, "uid") if "uid" in fields else _num(uid, "uid")
            m.gid = _pax_int(fields, "gid") if "gid" in fields else _num(gid, "gid")
            if "size" in fields:
                size = _pax_int(fields, "size")
            m.size = size
            m.mtime_ns = (_mtime_ns(fields["mtime"]) if "mtime" in fields
                          else _num(mtime, "mtime") * 1_000_000_000)
            m.devmajor = _num(devmajor, "devmajor")
            m.devminor = _num(devminor, "devminor")
            if typ == b"\0" and m.name.endswith("/"):
                m.type = DIR
            if m.type in (HARDLINK, SYMLINK, CHR, BLK, DIR, FIFO):
                m.size = size = 0  # header-only types, as Go's archive/tar reads them
            self._left = size
            self._pad = -size % BLOCK
            return m

    def copy_to(self, write):
        """Hand the current member's data to ``write`` (called with memoryviews)."""
        while self._left:
            if not self._avail() and not self._fill(1):
                raise TarError("unexpected end of data")
            k = min(self._left, self._avail())
            write(memoryview(self._buf)[self._pos:self._pos + k])
            self._pos += k
            self._left -= k
        self.skip()

    def skip(self):
        """Skip what is left of the current member's data and padding."""
        n, self._left = self._left + self._pad, 0
        self._pad = 0
        self._discard(n)
