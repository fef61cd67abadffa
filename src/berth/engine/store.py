"""The containers' records: table ``containers`` in <root>/metadata.db, and per-container locks.

A record is a JSON dict (id, name, image, created, config, host_config, state, ...) kept in
one row beside its id, name and created time, which are columns so lookups and the name's
uniqueness are SQLite's work. Every change is a read-modify-write inside BEGIN IMMEDIATE, so
the CLI, monitors and the daemon, each in its own process, never lose each other's fields.

The engine's tables carry their own schema version in ``engine_schema`` (the metadata
module owns PRAGMA user_version for its tables).
"""

import fcntl
import os
import time

from berth.engine.names import is_id, random_name, validate_name
from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unsupported
from berth.errors import SystemFailure, from_oserror
from berth.spec.jsonio import dumps, loads

SCHEMA_VERSION = 1

# version -> statements that bring the engine's tables from that version to the next one.
_MIGRATIONS = {
    0: (
        """CREATE TABLE IF NOT EXISTS containers (
               id      TEXT PRIMARY KEY,
               name    TEXT UNIQUE,
               created TEXT,
               record  TEXT)""",
    ),
}

_COLUMNS = ("id", "name", "created")


def _now():
    """RFC 3339 with nanoseconds in UTC, as Docker writes Created."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        f".{ns % 1_000_000_000:09d}Z"


def _conflict(name, cid):
    return AlreadyExists(
        f'Conflict. The container name "/{name}" is already in use by container "{cid}". '
        "You have to remove (or rename) that container to be able to reuse that name.")


class ContainerStore:
    """The records of the containers of one berth root."""

    def __init__(self, metadata):
        self.md = metadata
        self.root = os.path.dirname(metadata.path)
        self._migrate()

    def _migrate(self):
        try:
            rows = self.md.query("SELECT version FROM engine_schema WHERE name = 'containers'")
            if rows and rows[0][0] == SCHEMA_VERSION:
                return  # the common case: no write transaction just to open the store
        except SystemFailure:
            pass  # no engine_schema table yet
        with self.md.transaction():
            self.md.execute("CREATE TABLE IF NOT EXISTS engine_schema "
                            "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            rows = self.md.query("SELECT version FROM engine_schema WHERE name = 'containers'")
            version = rows[0][0] if rows else 0
            if version > SCHEMA_VERSION:
                raise Unsupported(f"metadata database {self.md.path}: containers table has "
                                  f"schema version {version}, newer than this berth's "
                                  f"{SCHEMA_VERSION}")
            while version < SCHEMA_VERSION:
                for sql in _MIGRATIONS[version]:
                    self.md.execute(sql)
                version += 1
            self.md.execute("INSERT INTO engine_schema (name, version) VALUES ('containers', ?) "
                            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                            (version,))

    # ---------------------------------------------------------------- helpers
    def _row(self, id_or_name):
        """The row of a full id, an exact name ("/" optional) or a unique id prefix."""
        if not isinstance(id_or_name, str) or not id_or_name:
            raise NotFound(f"No such container: {id_or_name}")
        rows = self.md.query("SELECT * FROM containers WHERE id = ?", (id_or_name,))
        if rows:
            return rows[0]
        name = id_or_name[1:] if id_or_name.startswith("/") else id_or_name
        rows = self.md.query("SELECT * FROM containers WHERE name = ?", (name,))
        if rows:
            return rows[0]
        if len(id_or_name) < 64 and all(c in "0123456789abcdef" for c in id_or_name):
            rows = self.md.query("SELECT * FROM containers WHERE substr(id, 1, ?) = ? LIMIT 2",
                                 (len(id_or_name), id_or_name))
            if len(rows) > 1:
                raise Conflict(f"multiple containers found with provided prefix: {id_or_name}")
            if rows:
                return rows[0]
        raise NotFound(f"No such container: {id_or_name}")

    def _check_name_free(self, name, cid):
        rows = self.md.query("SELECT id FROM containers WHERE name = ? AND id != ?", (name, cid))
        if rows:
            raise _conflict(name, rows[0][0])

    # ---------------------------------------------------------------- API
    def create(self, record):
        """Store a new container's record; return it as stored.

        ``id`` must be a full id (names.new_id()). ``name`` is checked against Docker's rule
        and stored without a leading "/"; an empty or missing name gets a generated one.
        ``created`` defaults to now.
        """
        if not isinstance(record, dict):
            raise InvalidArgument("container record must be a dict")
        cid = record.get("id")
        if not is_id(cid):
            raise InvalidArgument(f"invalid container id {cid!r}: want 64 lowercase hex")
        record = dict(record)
        record.setdefault("created", _now())
        with self.md.transaction():
            if self.md.query("SELECT 1 FROM containers WHERE id = ?", (cid,)):
                raise AlreadyExists(f"container {cid} already exists")
            if record.get("name"):
                record["name"] = validate_name(record["name"])
                self._check_name_free(record["name"], cid)
            else:
                taken = {row[0] for row in self.md.query("SELECT name FROM containers")}
                record["name"] = random_name(taken)
            self.md.execute(
                "INSERT INTO containers (id, name, created, record) VALUES (?, ?, ?, ?)",
                (cid, record["name"], record["created"], dumps(record)))
        return record

    def get(self, id_or_name):
        """The record of a full id, an exact name ("/" optional) or a unique id prefix."""
        return loads(self._row(id_or_name)["record"])

    def list(self):
        """All records, newest first."""
        rows = self.md.query("SELECT record FROM containers ORDER BY created DESC, id")
        return [loads(row[0]) for row in rows]

    def update(self, cid, replace=(), **fields):
        """Merge ``fields`` into a record atomically; return the new record.

        A dict field merges one level into the stored dict (update(state={"Running": False})
        keeps the other state keys) unless its name is in ``replace``; other values replace. ``name`` renames (Docker's rule,
        conflict checked); ``id`` cannot change.
        """
        if "id" in fields:
            raise InvalidArgument("update container: the id cannot change")
        with self.md.transaction():
            row = self._row(cid)
            record = loads(row["record"])
            for key, value in fields.items():
                old = record.get(key)
                if isinstance(old, dict) and isinstance(value, dict) and key not in replace:
                    record[key] = {**old, **value}
                else:
                    record[key] = value
            if "name" in fields:
                record["name"] = validate_name(record["name"])
                self._check_name_free(record["name"], row["id"])
            self.md.execute("UPDATE containers SET name = ?, created = ?, record = ? "
                            "WHERE id = ?",
                            (record["name"], record.get("created"), dumps(record),
                             row["id"]))
        return record

    def delete(self, cid):
        """Remove a record (NotFound if there is none); the directory is the caller's."""
        with self.md.transaction():
            row = self._row(cid)
            self.md.execute("DELETE FROM containers WHERE id = ?", (row["id"],))

    def lock(self, cid, *, wait=True):
        """An exclusive lock on one container across processes: ``with store.lock(id):``.

        flock on <root>/containers/<id>/.lock (the directory is made if missing). With
        wait=False a lock another holder has raises Conflict instead of waiting. Not
        re-entrant: a second lock() on the same id blocks even in the same process.
        """
        if not is_id(cid):
            raise InvalidArgument(f"lock container: invalid container id {cid!r}")
        return _Lock(os.path.join(self.root, "containers", cid), wait)


class _Lock:
    def __init__(self, directory, wait):
        self.path = os.path.join(directory, ".lock")
        self.wait = wait
        self.fd = -1

    def __enter__(self):
        try:
            os.makedirs(os.path.dirname(self.path), 0o711, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise from_oserror(err, f"open lock {self.path}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            cid = os.path.basename(os.path.dirname(self.path))
            raise Conflict(f"container {cid} is locked by another operation") from None
        except OSError as err:
            os.close(fd)
            raise from_oserror(err, f"lock {self.path}") from err
        self.fd = fd
        return self

    def __exit__(self, *exc):
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)  # closing the only descriptor releases the flock
        return False
