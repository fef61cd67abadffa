"""Volumes, as Docker's ``local`` driver keeps them: table ``volumes`` in the metadata
database, data in <root>/volumes/<name>/_data.

A volume record is Docker's Volume object (Name, Driver, Mountpoint, Labels, Options, Scope,
CreatedAt). A row and its directory are made inside one transaction (the directory is
renamed into place last), so a crash leaves at most a directory no row owns, which
``prune`` removes. Anonymous volumes carry Docker's label ``com.docker.volume.anonymous``.

``-o type=... device=... o=...`` volumes (tmpfs, a bind of a host directory, any mount the
kernel knows) are mounted by the container's runtime straight from those options instead of
on <Mountpoint> first: two containers on one tmpfs volume each get their own tmpfs.

``plan``/``VolumeService.attach`` turn a container's -v, --mount and image VOLUMEs into OCI
mounts: a volume is made when missing and, while its _data is empty, filled from the image's
content at the destination (owners, modes, times, xattrs; not with nocopy), as Docker does.
"""

import os
import time

from berth.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from berth.spec.jsonio import dumps, loads
from berth.sys.tree import remove_tree

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_OPTION_KEYS = ("type", "device", "o", "size")


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_name(name):
    if len(name) < 2 or not (name[0].isalnum() and name.isascii()
                             and all(c.isalnum() or c in "_.-" for c in name)):
        raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a '
                              f'local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are '
                              f"allowed. If you intended to pass a host directory, use "
                              f"absolute path")


def check_options(options):
    for key in options:
        if key not in _OPTION_KEYS:
            raise InvalidArgument(f'invalid option: "{key}"')
    if (options.get("type") or options.get("o")) and not options.get("device"):
        raise InvalidArgument('missing required option: "device"')
    if options.get("device") and not options.get("type"):
        raise InvalidArgument('missing required option: "type"')
    if "bind" in (options.get("o") or "").split(",") and \
            not os.path.isdir(options["device"]):
        raise InvalidArgument(f"invalid option: \"device\": {options['device']}: "
                              f"no such file or directory")


class VolumeService:
    def __init__(self, root, metadata):
        self.root = os.path.join(root, "volumes")
        self.md = metadata
        self.md.execute("CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, "
                        "created TEXT NOT NULL, record TEXT NOT NULL)")

    def data_dir(self, name):
        return os.path.join(self.root, name, "_data")

    # ------------------------------------------------------------ records

    def create(self, name="", driver="local", labels=None, options=None, anonymous=False):
        """A new volume's record (an existing one's, when ``name`` is taken, as Docker)."""
        if driver not in ("", "local"):
            raise NotFound(f"create {name}: error looking up volume plugin {driver}: plugin "
                           f'"{driver}" not found')
        options = dict(options or {})
        check_options(options)
        labels = dict(labels or {})
        if anonymous or not name:
            name = os.urandom(32).hex()
        if anonymous:  # `volume create` without a name makes a named one (Docker 23+)
            labels.setdefault(ANONYMOUS_LABEL, "")
        check_name(name)
        record = {"CreatedAt": _now(), "Driver": "local", "Labels": labels,
                  "Mountpoint": self.data_dir(name), "Name": name, "Options": options,
                  "Scope": "local"}
        os.makedirs(self.root, 0o701, exist_ok=True)
        with self.md.transaction():
            rows = self.md.query("SELECT record FROM volumes WHERE name = ?", (name,))
            if rows:
                return loads(rows[0][0])
            self.md.execute("INSERT INTO volumes (name, created, record) VALUES (?, ?, ?)",
                            (name, record["CreatedAt"], dumps(record)))
            tmp = os.path.join(self.root, f".new-{name}")
            remove_tree(tmp, ignore_errors=True)
            try:
                os.mkdir(tmp, 0o701)
                os.mkdir(os.path.join(tmp, "_data"), 0o755)
                remove_tree(os.path.join(self.root, name), ignore_errors=True)
                os.rename(tmp, os.path.join(self.root, name))
            except OSError as err:
                remove_tree(tmp, ignore_errors=True)
                raise SystemFailure(f"create {name}: {err.strerror}", errno=err.errno) \
                    from None
        return record

    def get(self, name):
        rows = self.md.query("SELECT record FROM volumes WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"get {name}: no such volume")
        return loads(rows[0][0])

    def list(self):
        return [loads(r[0]) for r in
                self.md.query("SELECT record FROM volumes ORDER BY name")]

    def users(self):
        """{volume name: [ids of the containers that mount it]}."""
        out = {}
        try:
            rows = self.md.query("SELECT id, record FROM containers")
        except SystemFailure:
            return out  # no containers table yet
        for cid, raw in rows:
            for m in loads(raw).get("mounts") or ():
                if m.get("Type") == "volume":
                    out.setdefault(m["Name"], []).append(cid)
        return out

    def remove(self, name, force=False):
        """Drop a volume and its data; refused while a container uses it."""
        try:
            self.get(name)
        except NotFound:
            if force:
                return
            raise
        users = self.users().get(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        with self.md.transaction():
            self.md.execute("DELETE FROM volumes WHERE name = ?", (name,))
            doomed = os.path.join(self.root, f".rm-{name}")
            try:
                os.rename(os.path.join(self.root, name), doomed)
            except FileNotFoundError:
                return
        remove_tree(doomed, ignore_errors=True)

    def prune(self, all_volumes=False, filters=None):
        """Remove unused volumes (anonymous ones only unless ``all_volumes``) and
        directories no row owns; (names removed, bytes freed)."""
        users = self.users()
        removed, freed = [], 0
        for rec in self.list():
            if rec["Name"] in users or not match(rec, filters or {}, users):
                continue
            if not all_volumes and ANONYMOUS_LABEL not in (rec.get("Labels") or {}):
                continue
            size = self.usage(rec["Name"])
            try:
                self.remove(rec["Name"])
            except (Conflict, NotFound):
                continue
            removed.append(rec["Name"])
            freed += size
        with self.md.transaction():
            names = {r[0] for r in self.md.query("SELECT name FROM volumes")}
            for entry in os.listdir(self.root) if os.path.isdir(self.root) else ():
                if entry not in names and not entry.startswith(".new-"):
                    remove_tree(os.path.join(self.root, entry), ignore_errors=True)
        return removed, freed

    def usage(self, name):
        from berth.snapshots._base import _disk_usage

        return _disk_usage(os.path.join(self.root, name))

    # ------------------------------------------------------------ containers

    def attach(self, planned, image_root, created):
        """OCI mounts and Docker's MountPoints for ``planned`` (from ``plan``); volumes are
        made when missing (their names appended to ``created``) and filled from the image
        tree at ``image_root`` (a path, or None) while empty."""
        oci, points = [], []
        for p in planned:
            name = p["name"]
            if not name or not self._exists(name):
                labels = p.get("labels") or {}
                rec = self.create(name, labels=labels, anonymous=not name)
                created.append(rec["Name"])
            else:
                rec = self.get(name)
            name = rec["Name"]
            opts = rec.get("Options") or {}
            if opts.get("device"):
                oci.append(_device_mount(opts, p["dest"], p["ro"]))
            else:
                if not p["nocopy"] and image_root:
                    self._fill(name, image_root, p["dest"])
                oci.append({"destination": p["dest"], "type": "bind",
                            "source": self.data_dir(name),
                            "options": ["rbind", "rprivate", "ro" if p["ro"] else "rw"]})
            points.append({"Type": "volume", "Name": name, "Source": self.data_dir(name),
                           "Destination": p["dest"], "Driver": "local", "Mode": p["mode"],
                           "RW": not p["ro"], "Propagation": ""})
        return oci, points

    def _exists(self, name):
        return bool(self.md.query("SELECT 1 FROM volumes WHERE name = ?", (name,)))

    def _fill(self, name, image_root, dest):
        from berth.engine import fstree

        data = self.data_dir(name)
        if os.listdir(data):
            return
        root = os.open(image_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                src = fstree.open_in_root(root, dest, os.O_PATH | os.O_DIRECTORY)
            except (NotFound, InvalidArgument):
                return  # nothing (or no directory) there in the image
            except SystemFailure as err:
                if err.errno == 20:  # ENOTDIR: a file in the image
                    return
                raise
            dst = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fstree.copy_entry(src, ".", dst, ".", into=True)
            finally:
                os.close(dst)
                os.close(src)
        finally:
            os.close(root)


def _device_mount(opts, dest, ro):
    kind = opts.get("type") or "none"
    options = [o for o in (opts.get("o") or "").split(",") if o]
    if opts.get("size"):
        options.append(f"size={opts['size']}")
    if kind == "none" or "bind" in options or "rbind" in options:
        kind = "bind"
        options = [o for o in options if o not in ("bind", "rbind")] + ["rbind"]
    if ro:
        options.append("ro")
    return {"destination": dest, "type": kind, "source": opts["device"], "options": options}


def match(rec, filters, users):
    """Whether volume ``rec`` passes `volume ls --filter`s ({key: [values]})."""
    for key, values in filters.items():
        if key == "dangling":
            want = values[-1].lower() in ("1", "true")
            if (rec["Name"] not in users) != want:
                return False
        elif key == "name":
            if not any(v in rec["Name"] for v in values):
                return False
        elif key == "label":
            labels = rec.get("Labels") or {}
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        elif key == "driver":
            if "local" not in values:
                return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def plan(config, host_config):
    """The volume mounts of a container: [{name ("" = a new anonymous one), dest, ro,
    nocopy, mode}] from -v, --mount type=volume and the image's VOLUMEs not mounted over;
    Docker's "Duplicate mount point" for a destination given twice."""
    from berth.engine.runopts import parse_bind

    out, seen = [], set()

    def taken(dest):
        dest = os.path.normpath(dest)
        if dest in seen:
            raise InvalidArgument(f"Duplicate mount point: {dest}")
        seen.add(dest)
        return dest

    for spec in host_config.get("Binds") or ():
        src, dst, ro, _ = parse_bind(spec)
        dst = taken(dst)
        if not src.startswith("/"):
            mode = spec.split(":")[2] if spec.count(":") == 2 else ""
            out.append({"name": src, "dest": dst, "ro": ro, "nocopy": "nocopy" in mode,
                        "mode": mode})
    for m in host_config.get("Mounts") or ():
        dst = taken(m["Target"])
        if m["Type"] == "volume":
            vo = m.get("VolumeOptions") or {}
            out.append({"name": m.get("Source") or "", "dest": dst,
                        "ro": bool(m.get("ReadOnly")), "nocopy": bool(vo.get("NoCopy")),
                        "mode": "", "labels": vo.get("Labels") or {}})
    for dest in host_config.get("Tmpfs") or {}:
        taken(dest)
    for dest in sorted((config.get("Volumes") or {})):
        norm = os.path.normpath(dest)
        if norm not in seen:
            seen.add(norm)
            out.append({"name": "", "dest": norm, "ro": False, "nocopy": False, "mode": ""})
    return out


def bind_points(host_config):
    """Docker's MountPoints of a container's bind mounts (-v /host:/ctr, --mount type=bind)."""
    from berth.engine.runopts import parse_bind

    out = []
    for spec in host_config.get("Binds") or ():
        src, dst, ro, prop = parse_bind(spec)
        if src.startswith("/"):
            mode = spec.split(":")[2] if spec.count(":") == 2 else ""
            out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": mode,
                        "RW": not ro, "Propagation": prop})
    for m in host_config.get("Mounts") or ():
        if m["Type"] == "bind":
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            out.append({"Type": "bind", "Source": m["Source"], "Destination": m["Target"],
                        "Mode": "", "RW": not m.get("ReadOnly"), "Propagation": prop})
    return out
