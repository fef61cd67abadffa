"""The content store: immutable blobs addressed by digest, and resumable ingests.

Layout under <root>/content:

    blobs/<alg>/<hex>       a complete, verified blob, mode 0444
    ingest/<key>/data       the bytes written so far for ingest <key>
    ingest/<key>/ref        the key, for people reading the directory
    ingest/<key>/expected   the expected digest and size, one per line ("" when unknown)
    ingest/.put-*           put()'s temporary files

A blob reaches blobs/ only by rename(2) of a file that was written completely, hashed, compared
with the expected digest and fsync'd; the directory is fsync'd after the rename. So a kill -9
at any moment leaves only whole, verified blobs, plus ingest directories that a later writer
with the same key resumes (or that abort() drops).

Concurrency: a writer holds flock(LOCK_EX) on its ingest directory for as long as it is open.
A second writer for the same key fails at once with Conflict('ingest <key> is in use'), unless
it asked to ``wait``: then it blocks until the first one commits, closes or aborts, and finds
either the committed blob (``committed`` is True) or the partial data to resume.
"""

import fcntl
import os

from berth.content.digest import ALGORITHMS, DigestMismatch, digest_bytes, hasher, parse_digest
from berth.errors import Conflict, InvalidArgument, NotFound, from_oserror

_CHUNK = 1 << 20
_TEMP_PREFIX = ".put-"


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_fd(fd, h, start=0):
    """Feed ``fd``'s bytes from ``start`` to its end into ``h``; return how many were read."""
    total = 0
    while True:
        chunk = os.pread(fd, _CHUNK, start + total)
        if not chunk:
            return total
        h.update(chunk)
        total += len(chunk)


def _check_key(key):
    if (not isinstance(key, str) or not key or len(key.encode()) > 255 or key.startswith(".")
            or any(c in key for c in "/\0\n")):
        raise InvalidArgument(f"invalid ingest key {key!r}: want 1-255 bytes, no '/', "
                              "no leading '.'")


def _check_size(size):
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InvalidArgument(f"invalid content size {size!r}: want a non-negative integer")


def _remove_tree(path):
    """Remove an ingest directory (flat: files only)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


class ContentStore:
    """Blobs under <root>/content, addressed by "sha256:..." or "sha512:..." digests."""

    def __init__(self, root):
        self.root = os.path.join(root, "content")
        self._blobs = os.path.join(self.root, "blobs")
        self._ingest = os.path.join(self.root, "ingest")
        try:
            for alg in ALGORITHMS:
                os.makedirs(os.path.join(self._blobs, alg), 0o755, exist_ok=True)
            os.makedirs(self._ingest, 0o700, exist_ok=True)
        except OSError as err:
            raise from_oserror(err, f"create content store {self.root}") from err

    # --- blobs -------------------------------------------------------------------------

    def _blob_path(self, digest):
        alg, hexpart = parse_digest(digest)
        return os.path.join(self._blobs, alg, hexpart)

    def has(self, digest):
        return os.path.isfile(self._blob_path(digest))

    def path(self, digest):
        p = self._blob_path(digest)
        if not os.path.isfile(p):
            raise NotFound(f"content digest {digest}: not found")
        return p

    def size(self, digest):
        try:
            return os.stat(self._blob_path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def open(self, digest):
        """The blob as a binary file object (not verified: use read() or verify() for that)."""
        try:
            return open(self._blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def read(self, digest):
        """The whole blob, checked against its digest (DigestMismatch if the file is corrupt)."""
        with self.open(digest) as f:
            data = f.read()
        got = digest_bytes(data, parse_digest(digest)[0])
        if got != digest:
            raise DigestMismatch(f"blob {self._blob_path(digest)}", digest, got)
        return data

    def verify(self, digest):
        """Re-hash the blob's file: True when it still matches its digest."""
        try:
            fd = os.open(self._blob_path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None
        try:
            h = hasher(digest)
            _hash_fd(fd, h)
        finally:
            os.close(fd)
        return f"{parse_digest(digest)[0]}:{h.hexdigest()}" == digest

    def put(self, data, expected=None):
        """Store ``data``; return its digest (``expected``'s algorithm, else sha256)."""
        alg = parse_digest(expected)[0] if expected else "sha256"
        digest = digest_bytes(data, alg)
        if expected and digest != expected:
            raise DigestMismatch("content", expected, digest)
        if self.has(digest):
            return digest
        tmp = os.path.join(self._ingest, f"{_TEMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._install(tmp, digest)
        except OSError as err:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise from_oserror(err, f"store blob {digest}") from err
        return digest

    def _install(self, tmp, digest):
        """Rename the complete, verified, fsync'd file ``tmp`` into blobs/."""
        final = self._blob_path(digest)
        os.rename(tmp, final)
        _fsync_dir(os.path.dirname(final))

    def delete(self, digest):
        try:
            os.unlink(self._blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None
        except OSError as err:
            raise from_oserror(err, f"delete blob {digest}") from err

    def digests(self):
        """Every blob's digest (files with names that are not digests are skipped)."""
        for alg in ALGORITHMS:
            try:
                entries = sorted(os.listdir(os.path.join(self._blobs, alg)))
            except FileNotFoundError:
                continue
            for name in entries:
                digest = f"{alg}:{name}"
                try:
                    parse_digest(digest)
                except InvalidArgument:
                    continue
                yield digest

    # --- ingests -----------------------------------------------------------------------

    def writer(self, key, expected=None, size=None, *, wait=False):
        """A Writer for ingest ``key``; see Writer. ``wait``: block while another holds it."""
        _check_key(key)
        if expected is not None:
            parse_digest(expected)
        _check_size(size)
        w = Writer(self, key, expected, size)
        if expected and self.has(expected):
            w._done(expected, self.size(expected))
            self._drop_leftover(key, expected)
            return w
        w._open(wait)
        return w

    def ingests(self):
        """The keys of the ingests present (open, or left by a writer that closed or died)."""
        try:
            names = os.listdir(self._ingest)
        except FileNotFoundError:
            return []
        return sorted(n for n in names
                      if not n.startswith(".") and os.path.isdir(os.path.join(self._ingest, n)))

    def ingest_status(self, key):
        """{"key", "offset", "expected", "size", "updated"} of an ingest, read without locking."""
        _check_key(key)
        d = os.path.join(self._ingest, key)
        try:
            updated = os.stat(d).st_mtime
        except FileNotFoundError:
            raise NotFound(f"ingest {key}: not found") from None
        offset = 0
        try:
            st = os.stat(os.path.join(d, "data"))
            offset, updated = st.st_size, max(updated, st.st_mtime)
        except FileNotFoundError:
            pass
        expected, size = _read_expected(d)
        return {"key": key, "offset": offset, "expected": expected, "size": size,
                "updated": updated}

    def abort(self, key):
        """Drop ingest ``key``; Conflict while a writer holds it, NotFound if there is none."""
        _check_key(key)
        d = os.path.join(self._ingest, key)
        try:
            dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"ingest {key}: not found") from None
        try:
            try:
                fcntl.flock(dirfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(f"ingest {key} is in use") from None
            _remove_tree(d)
        finally:
            os.close(dirfd)

    def _drop_leftover(self, key, expected):
        """Remove what a writer killed in the middle of commit() left of ingest ``key``."""
        d = os.path.join(self._ingest, key)
        if os.path.isdir(d) and _read_expected(d)[0] == expected:
            try:
                self.abort(key)
            except (NotFound, Conflict):
                pass

    def _temps(self):
        """(path, mtime) of put()'s temporary files: a live put's, or a dead one's leftovers."""
        out = []
        for name in sorted(os.listdir(self._ingest)):
            if name.startswith(_TEMP_PREFIX):
                p = os.path.join(self._ingest, name)
                try:
                    out.append((p, os.stat(p).st_mtime))
                except FileNotFoundError:
                    pass
        return out


def _read_expected(d):
    try:
        with open(os.path.join(d, "expected"), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return None, None
    expected = lines[0] or None
    size = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
    return expected, size


class Writer:
    """Writes one blob through ingest/<key>/, resumable after close() or a crash.

    ``offset`` is how many bytes the ingest holds (write the rest from there); ``committed``
    is True once the blob is in the store, also when it was there before the writer opened.
    An ingest whose stored expected digest differs from the one asked for is started over, and
    so is one holding more bytes than ``size``. As a context manager, leaving without commit()
    closes the writer and keeps the partial data.
    """

    def __init__(self, store, key, expected, size):
        self.key = key
        self.expected = expected
        self.size = size
        self.offset = 0
        self.committed = False
        self.digest = None
        self._store = store
        self._dir = os.path.join(store._ingest, key)
        self._dirfd = None
        self._fd = None
        self._hash = None
        self._alg = None

    def _done(self, digest, size):
        self.committed = True
        self.digest = digest
        self.offset = size

    def _lock(self, wait):
        while True:
            try:
                os.makedirs(self._dir, 0o700, exist_ok=True)
                dirfd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # removed by a committing writer between mkdir and open
            try:
                fcntl.flock(dirfd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                # The holder may have committed and removed the directory meanwhile.
                here = os.stat(self._dir)
                mine = os.fstat(dirfd)
                if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                    self._dirfd = dirfd
                    return
            except BlockingIOError:
                os.close(dirfd)
                raise Conflict(f"ingest {self.key} is in use") from None
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(dirfd)
                raise
            os.close(dirfd)

    def _open(self, wait):
        try:
            self._lock(wait)
            try:
                self._open_locked()
            except BaseException:
                self.close()
                raise
        except OSError as err:
            raise from_oserror(err, f"open ingest {self.key}") from err

    def _open_locked(self):
        if self.expected and self._store.has(self.expected):
            _remove_tree(self._dir)  # stale: the blob came in through another key
            self.close()
            self._done(self.expected, self._store.size(self.expected))
            return
        stored, stored_size = _read_expected(self._dir)
        restart = bool(self.expected and stored and stored != self.expected)
        if self.expected is None and not restart:
            self.expected = stored
        if self.size is None and self.expected == stored:
            self.size = stored_size
        if (stored, stored_size) != (self.expected, self.size):
            tmp = os.path.join(self._dir, "expected.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(f"{self.expected or ''}\n{'' if self.size is None else self.size}\n")
            os.rename(tmp, os.path.join(self._dir, "expected"))
        if not os.path.exists(os.path.join(self._dir, "ref")):
            with open(os.path.join(self._dir, "ref"), "w", encoding="utf-8") as f:
                f.write(self.key + "\n")
        data = os.path.join(self._dir, "data")
        try:
            os.chmod(data, 0o600)  # a writer killed in commit() may have made it 0444
        except FileNotFoundError:
            pass
        self._fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._alg = parse_digest(self.expected)[0] if self.expected else "sha256"
        self._hash = hasher(self._alg)
        if restart:
            os.ftruncate(self._fd, 0)
        self.offset = _hash_fd(self._fd, self._hash)
        if self.size is not None and self.offset > self.size:
            os.ftruncate(self._fd, 0)
            self._hash = hasher(self._alg)
            self.offset = 0

    def _need_open(self):
        if self.committed:
            raise Conflict(f"ingest {self.key} is already committed")
        if self._fd is None:
            raise Conflict(f"ingest {self.key} is closed")

    def write(self, data):
        self._need_open()
        if self.size is not None and self.offset + len(data) > self.size:
            raise InvalidArgument(f"ingest {self.key}: {self.offset + len(data)} bytes is more "
                                  f"than the expected size {self.size}")
        try:
            os.lseek(self._fd, self.offset, os.SEEK_SET)
            _write_all(self._fd, data)
        except OSError as err:
            try:  # keep data, offset and hash in step for a later resume
                os.ftruncate(self._fd, self.offset)
            except OSError:
                pass
            raise from_oserror(err, f"write ingest {self.key}") from err
        self._hash.update(data)
        self.offset += len(data)

    def commit(self, expected=None, size=None):
        """Verify size and digest, then move the data into blobs/; return the digest.

        A short ingest raises InvalidArgument and stays resumable; wrong bytes (a digest
        mismatch, or more bytes than ``size``) drop the ingest and raise.
        """
        if expected is not None:
            parse_digest(expected)
        _check_size(size)
        if self.committed:
            if expected and expected != self.digest:
                raise DigestMismatch(f"ingest {self.key}", expected, self.digest)
            return self.digest
        self._need_open()
        expected = expected or self.expected
        size = self.size if size is None else size
        if size is not None and self.offset != size:
            if self.offset < size:
                raise InvalidArgument(f"ingest {self.key} is incomplete: {self.offset} of "
                                      f"{size} bytes")
            self.abort()
            raise InvalidArgument(f"ingest {self.key} has {self.offset} bytes, expected {size}")
        alg = parse_digest(expected)[0] if expected else self._alg
        h = self._hash
        if alg != self._alg:
            h = hasher(alg)
            _hash_fd(self._fd, h)
        got = f"{alg}:{h.hexdigest()}"
        if expected and got != expected:
            self.abort()
            raise DigestMismatch(f"ingest {self.key}", expected, got)
        try:
            if not self._store.has(got):
                os.fsync(self._fd)
                os.fchmod(self._fd, 0o444)
                self._store._install(os.path.join(self._dir, "data"), got)
            _remove_tree(self._dir)
        except OSError as err:
            raise from_oserror(err, f"commit ingest {self.key} as {got}") from err
        finally:
            self.close()
        self._done(got, self.offset)
        return got

    def close(self):
        """Release the ingest, keeping its data for a later writer with the same key."""
        fd, self._fd = self._fd, None
        dirfd, self._dirfd = self._dirfd, None
        if fd is not None:
            os.close(fd)
        if dirfd is not None:
            os.close(dirfd)  # drops the flock

    def abort(self):
        """Drop the ingest and its data."""
        if self.committed:
            return
        if self._dirfd is not None:
            _remove_tree(self._dir)
            self.close()
            return
        try:
            self._store.abort(self.key)
        except NotFound:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
