"""Streaming decompression of layer blobs, chosen by media type or by magic bytes.

gzip uses ``isal`` (PyPI, much faster) when importable, else zlib; zstd uses Debian's
``zstandard`` module when importable, else the ``zstd -dc`` program. Everything streams in
constant memory. ``DigestReader`` hashes what passes through it, so one pass over a blob
yields both its digest and the digest of the uncompressed tar (the layer's diff id).
"""

import hashlib
import os

from berth.errors import InvalidArgument, SystemFailure, Unsupported

GZIP = "gzip"
ZSTD = "zstd"
NONE = "none"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


def compression_of(media_type):
    """GZIP, ZSTD or NONE for a layer media type; None when the type does not say."""
    if not media_type:
        return None
    if media_type.endswith(("+gzip", ".gzip")):
        return GZIP
    if media_type.endswith(("+zstd", ".zstd")):
        return ZSTD
    if media_type.endswith(("tar", ".tar")):
        return NONE
    return None


def detect(head):
    """The compression a blob's first bytes announce."""
    if head.startswith(_GZIP_MAGIC):
        return GZIP
    if head.startswith(_ZSTD_MAGIC):
        return ZSTD
    return NONE


class DigestReader:
    """A read-only stream that hashes (sha256 by default) and counts every byte read."""

    def __init__(self, raw, alg="sha256", *, owns=True):
        self._raw = raw
        self._owns = owns  # close() closes ``raw`` too
        self._hash = hashlib.new(alg) if alg else None  # None: count only
        self._alg = alg
        self.size = 0

    def read(self, n=-1):
        data = self._raw.read(n)
        if data:
            if self._hash is not None:
                self._hash.update(data)
            self.size += len(data)
        return data

    def drain(self):
        """Read to the end, so the digest covers the whole stream."""
        while self.read(_CHUNK):
            pass

    @property
    def digest(self):
        if self._hash is None:
            return None
        return f"{self._alg}:{self._hash.hexdigest()}"

    def close(self):
        close = getattr(self._raw, "close", None) if self._owns else None
        if close is not None:
            close()


class _Peek:
    """Lets the first bytes of a stream be looked at and then read again."""

    def __init__(self, raw, head):
        self._raw = raw
        self._head = head

    def read(self, n=-1):
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)

    def close(self):
        pass


class _Inflate:
    """gzip (possibly several concatenated members) -> bytes, through zlib or isal."""

    def __init__(self, raw):
        try:
            from isal import isal_zlib as zlib
        except ImportError:
            import zlib
        self._zlib = zlib
        self._raw = raw
        self._obj = zlib.decompressobj(31)
        self._pending = b""
        self._fed = False
        self._eof = False

    def _fill(self, n):
        out = []
        got = 0
        while got < n and not self._eof:
            data = self._pending or self._raw.read(_CHUNK)
            self._pending = b""
            if not data:
                if self._fed:
                    raise InvalidArgument("layer: gzip data ends early")
                self._eof = True
                break
            self._fed = True
            try:
                chunk = self._obj.decompress(data, max(n - got, 1 << 16))
            except self._zlib.error as err:
                raise InvalidArgument(f"layer: bad gzip data: {err}") from None
            self._pending = self._obj.unconsumed_tail
            if self._obj.eof:
                # Another gzip member may follow (as `cat a.gz b.gz` makes); zeros are padding.
                rest = self._obj.unused_data
                self._pending = rest if rest.strip(b"\0") else b""
                self._obj = self._zlib.decompressobj(31)
                self._fed = False
            if chunk:
                out.append(chunk)
                got += len(chunk)
        return b"".join(out)

    def read(self, n=-1):
        if n is None or n < 0:
            parts = []
            while True:
                part = self._fill(_CHUNK)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        return self._fill(n) if n else b""

    def close(self):
        pass


class _ZstdProcess:
    """zstd through the `zstd -dc` program: a thread feeds it, we read its output."""

    def __init__(self, raw):
        import subprocess
        import threading

        try:
            self._proc = subprocess.Popen(["zstd", "-dcq"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise Unsupported("layer: zstd layers need the zstandard module or the zstd "
                              "program") from None
        self._feed_error = None
        self._thread = threading.Thread(target=self._feed, args=(raw,), daemon=True)
        self._thread.start()

    def _feed(self, raw):
        try:
            while True:
                data = raw.read(_CHUNK)
                if not data:
                    break
                self._proc.stdin.write(data)
        except (BrokenPipeError, OSError) as err:
            self._feed_error = err
        except BaseException as err:  # kept and re-raised on the reading side
            self._feed_error = err
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def read(self, n=-1):
        data = self._proc.stdout.read(n if n is not None else -1)
        if not data:
            self._finish()
        return data

    def _finish(self):
        self._thread.join()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        code = self._proc.wait()
        if isinstance(self._feed_error, Exception) and not isinstance(self._feed_error, OSError):
            raise self._feed_error
        if code != 0:
            raise InvalidArgument(f"layer: bad zstd data: {err or f'zstd exited {code}'}")

    def close(self):
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._thread.join()
        for f in (self._proc.stdout, self._proc.stderr):
            f.close()


class _ZstdModule:
    def __init__(self, raw, zstandard):
        self._zstd = zstandard
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=_CHUNK, read_across_frames=True, closefd=False)

    def read(self, n=-1):
        try:
            return self._reader.read(n if n is not None else -1)
        except self._zstd.ZstdError as err:
            raise InvalidArgument(f"layer: bad zstd data: {err}") from None

    def close(self):
        self._reader.close()


def decompressor(raw, compression):
    """A reader of ``raw`` decompressed with ``compression`` (GZIP, ZSTD or NONE)."""
    if compression == GZIP:
        return _Inflate(raw)
    if compression == ZSTD:
        if os.environ.get("BERTH_ZSTD_CLI") != "1":
            try:
                import zstandard
            except ImportError:
                pass
            else:
                return _ZstdModule(raw, zstandard)
        return _ZstdProcess(raw)
    if compression == NONE:
        return raw
    raise Unsupported(f"layer: unsupported compression {compression!r}")


def open_layer(stream, media_type=None, *, hash_compressed=True):
    """(compressed, plain): two DigestReaders over one pass of ``stream``.

    Read the tar from ``plain``; afterwards ``plain.drain()`` then ``compressed.drain()``
    and read ``.digest`` / ``.size`` of each (``compressed.digest`` is None unless
    ``hash_compressed``). The compression comes from the media type when it names one, else
    from the magic bytes.
    """
    # The caller's to close.
    compressed = DigestReader(stream, "sha256" if hash_compressed else None, owns=False)
    kind = compression_of(media_type)
    source = compressed
    if kind is None:
        head = b""
        while len(head) < 4:
            more = compressed.read(4 - len(head))
            if not more:
                break
            head += more
        kind = detect(head)
        source = _Peek(compressed, head)
    try:
        plain = DigestReader(decompressor(source, kind))
    except OSError as err:
        raise SystemFailure(f"layer: starting the {kind} decompressor: {err}") from err
    return compressed, plain
