"""The copy snapshotter: every snapshot is a full tree, for hosts where overlayfs fails.

prepare copies the parent's tree (``cp -a --reflink=auto``: owners, modes, times, xattrs,
hard links, devices; shared extents where the filesystem can) into <id>/fs. Layers are
applied there with whiteouts carried out in place (apply_layer(..., overlay=False)).
Mounts: a bind of the snapshot's own tree, read-write for active, read-only for a view
(a view of a committed snapshot binds the parent's tree itself: it never changes).
"""

import os

from berth.errors import Conflict, SystemFailure
from berth.snapshots import Mount
from berth.snapshots._base import ACTIVE, COMMITTED, Snapshotter


class CopySnapshotter(Snapshotter):
    driver = "copy"
    table = "snapshots_copy"

    def _make_dirs(self, path, parent_row, kind):
        fs = os.path.join(path, "fs")
        os.mkdir(fs, 0o755)
        if parent_row is None or kind != ACTIVE:
            return
        src = self._dir(parent_row, "fs")
        import subprocess

        proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", f"{src}/.", fs],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemFailure(f"snapshot: copying {src}: {proc.stderr.strip()}")

    def _mounts(self, row):
        if row["kind"] == COMMITTED:
            raise Conflict(f"snapshot {row['key']} is committed; mounts are for active and "
                           "view snapshots (make a view of it)")
        if row["kind"] == ACTIVE:
            return [Mount("bind", self._dir(row, "fs"), ["rbind", "rw"])]
        src = self._dir(self._must(row["parent"]), "fs") if row["parent"] else \
            self._dir(row, "fs")
        return [Mount("bind", src, ["rbind", "ro"])]
