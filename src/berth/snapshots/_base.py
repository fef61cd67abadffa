"""What the overlay and copy snapshotters share: the metadata table and the directories.

A snapshot is a row (key, id, parent, kind, created, labels) and a directory
<root>/snapshots/<driver>/<id>. kind is "active" (writable, from prepare), "view" (read-only)
or "committed" (an immutable parent for others). Rows change inside a metadata transaction;
directories are made inside it too, and ``cleanup`` removes any directory without a row,
which is all a crash (kill -9 included) can leave behind.
"""

import os
import stat
import time

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, SystemFailure
from berth.spec.jsonio import dumps, loads
from berth.sys.tree import remove_tree

ACTIVE = "active"
VIEW = "view"
COMMITTED = "committed"


class Snapshotter:
    driver = ""        # directory name under <root>/snapshots
    table = ""         # metadata table

    def __init__(self, root, metadata):
        self.root = os.path.join(root, "snapshots", self.driver)
        self.md = metadata
        os.makedirs(self.root, 0o700, exist_ok=True)
        self.md.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, id TEXT NOT NULL "
            "UNIQUE, parent TEXT, kind TEXT NOT NULL, created REAL NOT NULL, labels TEXT NOT "
            "NULL DEFAULT '{}')")

    # ---------------------------------------------------------------- hooks
    def _make_dirs(self, path, parent_row, kind):
        """Fill a new snapshot's directory ``path`` (it exists, empty)."""
        os.mkdir(os.path.join(path, "fs"), 0o755)

    def _mounts(self, row):
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _row(self, key):
        rows = self.md.query(f"SELECT * FROM {self.table} WHERE key = ?", (key,))
        return rows[0] if rows else None

    def _must(self, key):
        row = self._row(key)
        if row is None:
            raise NotFound(f"snapshot {key} does not exist")
        return row

    def _dir(self, row_or_id, *parts):
        sid = row_or_id if isinstance(row_or_id, str) else row_or_id["id"]
        return os.path.join(self.root, sid, *parts)

    def _parents(self, row):
        """Rows of ``row``'s parents, nearest first."""
        out = []
        key = row["parent"]
        while key:
            parent = self._must(key)
            out.append(parent)
            key = parent["parent"]
        return out

    @staticmethod
    def _stat(row):
        return {"key": row["key"], "id": row["id"], "parent": row["parent"],
                "kind": row["kind"], "created": row["created"],
                "labels": loads(row["labels"] or "{}")}

    # ---------------------------------------------------------------- API
    def prepare(self, key, parent=None, labels=None):
        """A new writable (active) snapshot on top of committed ``parent``; its mounts."""
        return self._create(key, parent, ACTIVE, labels)

    def view(self, key, parent=None, labels=None):
        """A new read-only snapshot of committed ``parent``; its mounts."""
        return self._create(key, parent, VIEW, labels)

    def _create(self, key, parent, kind, labels):
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        with self.md.transaction():
            if self._row(key) is not None:
                raise AlreadyExists(f"snapshot {key}: already exists")
            parent_row = None
            if parent:
                parent_row = self._must(parent)
                if parent_row["kind"] != COMMITTED:
                    raise InvalidArgument(f"snapshot {key}: parent {parent} is not committed")
            rows = self.md.query(f"SELECT MAX(CAST(id AS INTEGER)) AS n FROM {self.table}")
            sid = str((rows[0]["n"] or 0) + 1)
            self.md.execute(
                f"INSERT INTO {self.table} (key, id, parent, kind, created, labels) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, sid, parent or None, kind, time.time(), dumps(labels or {})))
            path = self._dir(sid)
            if os.path.lexists(path):
                _rmtree(path)  # left by a crash; no row owned it
            tmp = self._dir(f"new-{sid}")
            _rmtree(tmp)
            try:
                os.mkdir(tmp, 0o700)
                self._make_dirs(tmp, parent_row, kind)
                os.rename(tmp, path)
            except OSError as err:
                _rmtree(tmp)
                raise SystemFailure(f"snapshot {key}: creating {path}: {err.strerror}",
                                    errno=err.errno) from None
            except BaseException:
                _rmtree(tmp)
                raise
            row = self._row(key)
            return self._mounts(row)

    def mounts(self, key):
        return self._mounts(self._must(key))

    def layer_dirs(self, key):
        """The directories whose union (overlay's rules: whiteouts, opaque directories) is
        committed snapshot ``key``'s tree, top first: reading a few files needs no mount."""
        row = self._must(key)
        return [self._dir(r, "fs") for r in [row] + self._layers_below(row)]

    def _layers_below(self, row):
        return []  # a snapshot's directory holds its whole tree

    def commit(self, name, key, labels=None):
        """Turn active snapshot ``key`` into committed snapshot ``name``."""
        with self.md.transaction():
            row = self._must(key)
            if row["kind"] != ACTIVE:
                raise Conflict(f"snapshot {key} is {row['kind']}, not active")
            if self._row(name) is not None:
                raise AlreadyExists(f"snapshot {name}: already exists")
            merged = loads(row["labels"] or "{}")
            merged.update(labels or {})
            self.md.execute(f"UPDATE {self.table} SET key = ?, kind = ?, labels = ? "
                            "WHERE key = ?", (name, COMMITTED, dumps(merged), key))

    def remove(self, key):
        """Drop a snapshot and its directory; Conflict while others have it as parent."""
        doomed = self.detach(key)
        if doomed:
            _rmtree(doomed)

    def detach(self, key):
        """remove()'s first half, for a caller that drops the row inside its own
        transaction: the row goes and the directory is moved aside; returns where it is
        now (the caller removes it once committed; cleanup() does after a crash), or None.
        """
        self._must(key)  # a missing snapshot costs a read, not the write lock
        with self.md.transaction():
            row = self._must(key)
            if self.md.query(f"SELECT key FROM {self.table} WHERE parent = ? LIMIT 1", (key,)):
                raise Conflict(f"snapshot {key} has children; remove them first")
            self.md.execute(f"DELETE FROM {self.table} WHERE key = ?", (key,))
            # Out of the way first, so a new snapshot given the same id starts clean.
            doomed = self._dir(f"rm-{row['id']}")
            _rmtree(doomed)
            try:
                os.rename(self._dir(row), doomed)
            except FileNotFoundError:
                return None
            except OSError as err:
                raise SystemFailure(f"snapshot {key}: removing {self._dir(row)}: "
                                    f"{err.strerror}", errno=err.errno) from None
        return doomed

    def remove_detached(self, path):
        """Remove a directory ``detach`` returned."""
        _rmtree(path)

    def stat(self, key):
        return self._stat(self._must(key))

    def list(self):
        return [self._stat(r) for r in self.md.query(f"SELECT * FROM {self.table} ORDER BY "
                                                     "CAST(id AS INTEGER)")]

    def usage(self, key):
        """Bytes on disk of the snapshot's own directory (hard links counted once)."""
        return _disk_usage(self._dir(self._must(key)))

    def upper_dir(self, key):
        """The directory a layer is applied into for active snapshot ``key``."""
        row = self._must(key)
        if row["kind"] != ACTIVE:
            raise Conflict(f"snapshot {key} is {row['kind']}, not active")
        return self._dir(row, "fs")

    def prune(self, keep, *, include_active=False):
        """Remove snapshots not in ``keep`` nor parent of a kept one; list of keys removed.

        Active and view snapshots (containers, extractions under way) are kept unless
        ``include_active``. Directories with no row (crash leftovers) go too.
        """
        rows = {r["key"]: r for r in self.md.query(f"SELECT * FROM {self.table}")}
        needed = set()
        for key, row in rows.items():
            if key in keep or (row["kind"] != COMMITTED and not include_active):
                while key and key not in needed and key in rows:
                    needed.add(key)
                    key = rows[key]["parent"]
        doomed = [k for k in rows if k not in needed]
        depth = {}
        for key in doomed:
            d, k = 0, key
            while rows.get(k) is not None and rows[k]["parent"]:
                d, k = d + 1, rows[k]["parent"]
            depth[key] = d
        removed = []
        for key in sorted(doomed, key=lambda k: -depth[k]):
            try:
                self.remove(key)
            except (NotFound, Conflict):
                continue  # changed under us
            removed.append(key)
        self.cleanup()
        return removed

    def cleanup(self):
        """Remove directories no row owns (what a crash leaves); how many."""
        with self.md.transaction():  # creators make their directories inside one
            ids = {r["id"] for r in self.md.query(f"SELECT id FROM {self.table}")}
            strays = [e for e in os.listdir(self.root) if e not in ids]
            for entry in strays:
                if not entry.startswith("rm-"):
                    _rmtree(os.path.join(self.root, f"rm-{entry}"))
                    os.rename(os.path.join(self.root, entry),
                              os.path.join(self.root, f"rm-{entry}"))
        for entry in strays:
            _rmtree(os.path.join(self.root, entry if entry.startswith("rm-") else f"rm-{entry}"))
        return len(strays)


def _rmtree(path):
    try:
        remove_tree(path)
        return
    except PermissionError:
        pass  # a read-only directory (non-root callers): the slow way below fixes modes
    except OSError as err:
        raise SystemFailure(f"removing {err.filename or path}: {err.strerror}") from None
    import shutil

    def onerror(func, p, exc_info):
        err = exc_info[1]
        if isinstance(err, FileNotFoundError):
            return
        # A read-only directory (non-root callers): make it writable and retry once.
        if isinstance(err, PermissionError):
            try:
                os.chmod(os.path.dirname(p), 0o700)
                func(p)
                return
            except OSError:
                pass
        raise SystemFailure(f"removing {p}: {err}")

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)


def _disk_usage(top):
    seen = set()
    total = 0
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            st = e.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
    return total
