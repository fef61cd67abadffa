"""The overlayfs snapshotter: each snapshot is an upper directory over its parents' ones.

<root>/snapshots/overlay/<id>/fs is the snapshot's own layer (overlay upperdir), and
<id>/work its workdir. Mounts, as containerd gives them:

  active, no parent       bind <fs> [rbind, rw]
  active, parents         overlay [lowerdir=P1:P2:..., upperdir=<fs>, workdir=<work>]
  view, no parent         bind <fs> [rbind, ro]
  view, one parent        bind <P1 fs> [rbind, ro]
  view, several parents   overlay [lowerdir=P1:P2:...]

mount(2) takes its options in one page, which holds about 100 lowerdirs under
/var/lib/berth; a longer chain is given as one "lowerdir+=<dir>" option per layer (Linux
6.8+), which only the new mount API (fsconfig) accepts: ``Mount.mount`` uses it then.
overlayfs stacks at most 500 lower layers.
"""

import os

from berth.errors import Conflict, Unsupported
from berth.snapshots import Mount
from berth.snapshots._base import ACTIVE, COMMITTED, VIEW, Snapshotter, _rmtree
from berth.sys.tree import remove_tree

MAX_LOWER = 500


def _esc(path):
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


class OverlaySnapshotter(Snapshotter):
    driver = "overlay"
    table = "snapshots"
    # An overlay upper directory does not depend on the layers below it, so a pull may
    # unpack layers side by side and commit them in chain order afterwards.
    independent_layers = True

    def _layers_below(self, row):
        return self._parents(row)

    def _make_dirs(self, path, parent_row, kind):
        os.mkdir(os.path.join(path, "fs"), 0o755)
        os.mkdir(os.path.join(path, "work"), 0o700)

    def _mounts(self, row):
        kind = row["kind"]
        if kind == COMMITTED:
            raise Conflict(f"snapshot {row['key']} is committed; mounts are for active and "
                           "view snapshots (make a view of it)")
        parents = self._parents(row)
        fs = self._dir(row, "fs")
        if not parents:
            return [Mount("bind", fs, ["rbind", "rw" if kind == ACTIVE else "ro"])]
        if kind == VIEW and len(parents) == 1:
            return [Mount("bind", self._dir(parents[0], "fs"), ["rbind", "ro"])]
        if len(parents) > MAX_LOWER:
            raise Unsupported(f"snapshot {row['key']}: {len(parents)} layers; overlayfs "
                              f"stacks at most {MAX_LOWER}")
        lowers = [self._dir(p, "fs") for p in parents]
        rest = []
        if kind == ACTIVE:
            rest = [f"upperdir={_esc(fs)}", f"workdir={_esc(self._dir(row, 'work'))}"]
        lowerdir = "lowerdir=" + ":".join(_esc(p) for p in lowers)
        if len(lowerdir) + sum(len(o) + 1 for o in rest) < _page_size() - 1:
            return [Mount("overlay", "overlay", [lowerdir, *rest])]
        # Too long for mount(2)'s one page: one option per layer (fsconfig, Linux 6.8+).
        return [Mount("overlay", "overlay",
                      [*(f"lowerdir+={p}" for p in lowers), *rest])]


def _page_size():
    return os.sysconf("SC_PAGE_SIZE")


def supported(base):
    """Whether an overlay with whiteouts mounts with its directories under ``base``."""
    import tempfile

    from berth.sys import linux

    if os.geteuid() != 0:
        return False
    probe = tempfile.mkdtemp(prefix="probe-", dir=base)
    merged = os.path.join(probe, "merged")
    try:
        for d in ("l1", "l2", "upper", "work", "merged"):
            os.mkdir(os.path.join(probe, d))
        with open(os.path.join(probe, "l2", "gone"), "w"):
            pass
        os.mknod(os.path.join(probe, "upper", "gone"), 0o20600, os.makedev(0, 0))
        opts = (f"lowerdir={_esc(probe)}/l1:{_esc(probe)}/l2,upperdir={_esc(probe)}/upper,"
                f"workdir={_esc(probe)}/work")
        linux.mount("overlay", merged, "overlay", 0, opts)
        try:
            with open(os.path.join(merged, "new"), "w"):
                pass
            ok = not os.path.lexists(os.path.join(merged, "gone"))
        finally:
            linux.umount(merged, 2)
        return ok
    except OSError:
        return False
    finally:
        remove_tree(probe, ignore_errors=True)
        _rmtree(probe)
