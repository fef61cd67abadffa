"""berth's metadata database: <root>/metadata.db, SQLite in WAL mode.

Owns the schema version (PRAGMA user_version, with migrations keyed by it) and the tables
``images`` and ``leases``/``lease_content``. Other modules keep their own tables here through
execute()/query() (snapshots does), creating them with CREATE TABLE IF NOT EXISTS.

Several processes may open the same file: WAL lets readers run beside one writer, and
busy_timeout (10 s) makes a writer wait for another instead of failing at once. One Metadata
object may be shared by threads: a lock serialises its connection.
"""

import _thread
import os
import time

# The C module itself: the `sqlite3` package adds only datetime adapters (which berth does
# not use: times are stored as text or numbers) and costs every command ~1 ms of imports.
import _sqlite3 as sqlite3

from berth.errors import InvalidArgument, NotFound, SystemFailure, Unsupported
from berth.spec.jsonio import loads

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000

# user_version -> statements that bring the schema from that version to the next one.
_MIGRATIONS = {
    0: (
        """CREATE TABLE IF NOT EXISTS images (
               name    TEXT PRIMARY KEY,
               target  TEXT NOT NULL,
               created TEXT NOT NULL,
               updated TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS leases (
               id      TEXT PRIMARY KEY,
               created REAL NOT NULL,
               expires REAL)""",
        """CREATE TABLE IF NOT EXISTS lease_content (
               lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
               digest   TEXT NOT NULL,
               PRIMARY KEY (lease_id, digest))""",
    ),
}


def _now():
    return _timestamp(time.time())


def _timestamp(value):
    """RFC 3339 in UTC, as Docker prints times: from a datetime, epoch seconds or a string."""
    if isinstance(value, str):
        return value
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(value, timezone.utc)
    else:
        raise InvalidArgument(f"invalid image created time {value!r}")
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sorted_json(value):
    import json  # writing image records is a rare path (pull, tag, import)

    return json.dumps(value, sort_keys=True)


def _check_digest(what, digest):
    # Loose on purpose: metadata does not import content/; the store parses digests strictly.
    alg, _, hexpart = digest.partition(":") if isinstance(digest, str) else ("", "", "")
    if not alg or not hexpart:
        raise InvalidArgument(f"{what}: invalid checksum digest format: {digest!r}")


def _check_target(name, target):
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"invalid image name {name!r}")
    if not isinstance(target, dict):
        raise InvalidArgument(f"image {name}: target must be a descriptor (dict)")
    if not isinstance(target.get("mediaType"), str) or not target["mediaType"]:
        raise InvalidArgument(f"image {name}: target has no mediaType")
    _check_digest(f"image {name}", target.get("digest"))
    size = target.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"image {name}: target size {size!r} is not a non-negative integer")


def database_path(root):
    """Where a berth root keeps its metadata database."""
    return os.path.join(root, "metadata.db")


class Metadata:
    """The metadata database of one berth root."""

    def __init__(self, root):
        self.path = database_path(root)
        self._lock = _thread.RLock()
        self._depth = 0  # nesting of transaction() on the connection
        try:
            os.makedirs(root, 0o755, exist_ok=True)
            # isolation_level=None: no implicit BEGINs; transaction() says where they are.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            # connect(timeout=) is the busy timeout; WAL, once set, stays with the file.
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.Error as err:
            raise SystemFailure(f"open metadata database {self.path}: {err}") from err
        except OSError as err:
            raise SystemFailure(f"open metadata database {self.path}: {err}",
                                errno=err.errno) from err

    def _migrate(self):
        if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return  # the common case: no write transaction just to open the database
        with self.transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise Unsupported(f"metadata database {self.path} has schema version "
                                  f"{version}, newer than this berth's {SCHEMA_VERSION}")
            while version < SCHEMA_VERSION:
                for sql in _MIGRATIONS[version]:
                    self._db.execute(sql)
                version += 1
                self._db.execute(f"PRAGMA user_version = {version}")

    def close(self):
        with self._lock:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # --- general ------------------------------------------------------------------------

    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception; nested ones are savepoints.

        The thread holds the connection for the whole block, and IMMEDIATE takes SQLite's
        write lock at the start, so reads inside see what no other writer can change.
        """
        return _Transaction(self)

    def _sql(self, sql, params=()):
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as err:
            first = " ".join(sql.split())[:60]
            raise SystemFailure(f"metadata database {self.path}: {err} (in {first!r})") from err

    def execute(self, sql, params=()):
        """Run one statement; return its cursor (rowcount, lastrowid)."""
        with self._lock:
            return self._sql(sql, params)

    def query(self, sql, params=()):
        """Run one statement; return all its rows as sqlite3.Row."""
        with self._lock:
            return self._sql(sql, params).fetchall()

    # --- images -------------------------------------------------------------------------

    def put_image(self, name, target, created=None):
        """Create or update image ``name``; an update keeps ``created`` unless one is given."""
        _check_target(name, target)
        now = _now()
        stamp = _timestamp(created) if created is not None else now
        with self.transaction():
            self._sql(
                "INSERT INTO images (name, target, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET target = excluded.target, "
                "updated = excluded.updated"
                + (", created = excluded.created" if created is not None else ""),
                (name, _sorted_json(target), stamp, now))

    def get_image(self, name):
        with self._lock:
            row = self._sql("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
        return _image(row) if row else None

    def list_images(self):
        return [_image(row) for row in self.query("SELECT * FROM images ORDER BY name")]

    def delete_image(self, name):
        if self.execute("DELETE FROM images WHERE name = ?", (name,)).rowcount == 0:
            raise NotFound(f"No such image: {name}")

    # --- leases -------------------------------------------------------------------------

    def add_lease(self, lease_id, digests=(), *, expires_in=None):
        """Create lease ``lease_id`` if missing and add ``digests`` to it.

        ``expires_in`` (seconds): after that the lease no longer protects anything, so content
        a crashed pull leased becomes collectable; collect() deletes expired leases.
        """
        if not isinstance(lease_id, str) or not lease_id:
            raise InvalidArgument(f"invalid lease id {lease_id!r}")
        now = time.time()
        expires = None if expires_in is None else now + expires_in
        with self.transaction():
            self._sql("INSERT OR IGNORE INTO leases (id, created, expires) VALUES (?, ?, ?)",
                      (lease_id, now, expires))
            for digest in digests:
                self.lease_add(lease_id, digest)

    def lease_add(self, lease_id, digest):
        """Add ``digest`` to an existing lease (NotFound if there is no such lease)."""
        _check_digest(f"lease {lease_id}", digest)
        with self.transaction():
            if not self._sql("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone():
                raise NotFound(f"lease {lease_id}: not found")
            self._sql("INSERT OR IGNORE INTO lease_content (lease_id, digest) VALUES (?, ?)",
                      (lease_id, digest))

    def remove_lease(self, lease_id):
        """Remove a lease and what it holds; removing one that is not there is no error."""
        self.execute("DELETE FROM leases WHERE id = ?", (lease_id,))

    def leased(self):
        """The digests that unexpired leases hold."""
        rows = self.query(
            "SELECT DISTINCT c.digest FROM lease_content c JOIN leases l ON l.id = c.lease_id "
            "WHERE l.expires IS NULL OR l.expires > ?", (time.time(),))
        return {row[0] for row in rows}

    def list_leases(self):
        """[{"id", "created", "expires", "digests"}], expired ones included."""
        out = []
        for row in self.query("SELECT * FROM leases ORDER BY id"):
            digests = [r[0] for r in self.query(
                "SELECT digest FROM lease_content WHERE lease_id = ? ORDER BY digest",
                (row["id"],))]
            out.append({"id": row["id"], "created": row["created"], "expires": row["expires"],
                        "digests": digests})
        return out

    def remove_expired_leases(self):
        """Delete leases past their expiry; return how many."""
        return self.execute("DELETE FROM leases WHERE expires IS NOT NULL AND expires <= ?",
                            (time.time(),)).rowcount


class _Transaction:
    """What ``Metadata.transaction()`` returns (a class: contextlib costs the CLI ~0.5 ms)."""

    def __init__(self, md):
        self.md = md
        self.depth = -1

    def __enter__(self):
        md = self.md
        md._lock.acquire()
        try:
            self.depth = md._depth
            md._sql("BEGIN IMMEDIATE" if self.depth == 0 else f"SAVEPOINT berth_{self.depth}")
        except BaseException:
            md._lock.release()
            raise
        md._depth += 1
        return md

    def __exit__(self, kind, value, tb):
        md, depth = self.md, self.depth
        try:
            md._depth -= 1
            if kind is None:
                md._sql("COMMIT" if depth == 0 else f"RELEASE berth_{depth}")
            elif depth == 0:
                md._sql("ROLLBACK")
            else:
                md._sql(f"ROLLBACK TO berth_{depth}")
                md._sql(f"RELEASE berth_{depth}")
        finally:
            md._lock.release()
        return False


def _image(row):
    return {"name": row["name"], "target": loads(row["target"], "image record"),
            "created": row["created"], "updated": row["updated"]}
