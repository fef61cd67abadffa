"""From `berth run` options and an image's config to a container's config.json.

``merge_image_config`` applies dockerd's rules for what the image's config gives a container
that the user did not; the result is the record's Docker-shaped ``config``. ``oci_spec`` reads a
container record (``config`` + ``host_config``) and builds a complete runtime-spec config.json
as Docker's daemon would hand it to runc: Docker's capabilities, mounts, masked paths, device
rules and resources, berth's default seccomp profile, and the user resolved against the
image's own /etc/passwd and /etc/group (read below the rootfs with RESOLVE_IN_ROOT, so a
symlink in the image cannot make us read the host's). ``etc_files`` writes the per-container
/etc/hostname, /etc/hosts and /etc/resolv.conf that the spec bind-mounts.
"""

import os
import stat

from berth.engine import seccomp_default
from berth.engine.fstree import _opaque
from berth.engine.runopts import normalize_caps, parse_bind
from berth.errors import InvalidArgument, NotFound, from_oserror
from berth.spec.caps import CAPS, DEFAULT_CAPS, host_last_cap
from berth.spec.defaults import MASKED_PATHS, READONLY_PATHS
from berth.spec.runtime import OCI_VERSION

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

INIT_PATH = "/sbin/docker-init"
# Where --init finds a static init on the host (Debian: tini's tini-static, Docker's own).
INIT_CANDIDATES = ("/usr/libexec/berth/init", "/usr/bin/tini-static", "/usr/bin/docker-init",
                   "/usr/libexec/docker/docker-init", "/usr/bin/catatonit",
                   "/usr/libexec/podman/catatonit")

_MAX_ETC_FILE = 16 << 20

# The device rules a container gets: nothing, then the nodes every program expects (null,
# zero, full, random, urandom, tty, console, ptmx, the pty slaves, tun) and mknod of any.
_DEFAULT_DEVICE_RULES = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"),
    ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"),
)

_HOSTS = ("127.0.0.1\tlocalhost\n"
          "::1\tlocalhost ip6-localhost ip6-loopback\n"
          "fe00::0\tip6-localnet\n"
          "ff00::0\tip6-mcastprefix\n"
          "ff02::1\tip6-allnodes\n"
          "ff02::2\tip6-allrouters\n")

_FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


# ---------------------------------------------------------------- image config + options

def _attached(opts, stream):
    if opts.detach:
        return False
    if opts.attach:
        return stream in opts.attach
    return opts.interactive if stream == "stdin" else True


def user_config(opts):
    """The Config a `docker run` client sends for ``opts`` (before the image is merged in)."""
    entrypoint = None
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint]  # one word, not split; "" clears the image's
    return {
        "Hostname": opts.hostname,
        "Domainname": "",
        "User": opts.user,
        "AttachStdin": _attached(opts, "stdin"),
        "AttachStdout": _attached(opts, "stdout"),
        "AttachStderr": _attached(opts, "stderr"),
        "ExposedPorts": dict(opts.exposed_ports),
        "Tty": opts.tty,
        "OpenStdin": opts.interactive,
        "StdinOnce": opts.interactive and not opts.detach,
        "Env": list(opts.env),
        "Cmd": list(opts.args) or None,
        "Healthcheck": dict(opts.healthcheck) if opts.healthcheck else None,
        "Image": opts.image,
        "Volumes": {},
        "WorkingDir": opts.workdir,
        "Entrypoint": entrypoint,
        "Labels": dict(opts.labels),
        "StopSignal": opts.stop_signal,
        "StopTimeout": opts.stop_timeout,
    }


def merge_image_config(image_config, opts):
    """The container's Config: ``opts`` (RunOptions, or a Config dict from ``user_config``)
    over the image's ``config`` object, by dockerd's rules."""
    conf = user_config(opts) if not isinstance(opts, dict) else dict(opts)
    img = image_config or {}
    if not conf.get("User"):
        conf["User"] = img.get("User") or ""
    ports = dict(img.get("ExposedPorts") or {})
    ports.update(conf.get("ExposedPorts") or {})
    conf["ExposedPorts"] = ports
    # Env: the user's entries first; image entries whose name the user did not set follow.
    env = list(conf.get("Env") or ())
    names = {e.partition("=")[0] for e in env}
    env.extend(e for e in img.get("Env") or () if e.partition("=")[0] not in names)
    conf["Env"] = env
    labels = dict(img.get("Labels") or {})
    labels.update(conf.get("Labels") or {})
    conf["Labels"] = labels
    # An entrypoint given on the command line drops the image's Cmd (only the user's args
    # follow it); without one, the image's Cmd fills in for missing args and its Entrypoint
    # stays.
    if not conf.get("Entrypoint"):
        if not conf.get("Cmd"):
            conf["Cmd"] = _list_or_none(img.get("Cmd"))
        if conf.get("Entrypoint") is None:
            conf["Entrypoint"] = _list_or_none(img.get("Entrypoint"))
    if conf.get("Entrypoint") == [""]:
        conf["Entrypoint"] = None
    if not conf.get("Entrypoint") and not conf.get("Cmd"):
        raise InvalidArgument("No command specified")
    conf["Healthcheck"] = _merge_health(conf.get("Healthcheck"), img.get("Healthcheck"))
    if not conf.get("WorkingDir"):
        conf["WorkingDir"] = img.get("WorkingDir") or ""
    if conf["WorkingDir"] and not conf["WorkingDir"].startswith("/"):
        raise InvalidArgument(f"the working directory '{conf['WorkingDir']}' is invalid, it "
                              f"needs to be an absolute path")
    volumes = dict(img.get("Volumes") or {})
    volumes.update(conf.get("Volumes") or {})
    conf["Volumes"] = volumes
    conf["StopSignal"] = conf.get("StopSignal") or img.get("StopSignal") or "SIGTERM"
    if conf.get("Healthcheck") is None:
        conf.pop("Healthcheck", None)
    if conf.get("StopTimeout") is None:
        conf.pop("StopTimeout", None)
    return conf


def _list_or_none(value):
    return list(value) if value is not None else None


def _merge_health(user, image):
    if not image:
        return dict(user) if user else None
    if not user:
        return dict(image)
    out = dict(user)
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
        if not out.get(key):
            out[key] = image.get(key) or ([] if key == "Test" else 0)
    return out


# ---------------------------------------------------------------- users and groups

class NeedsMount(Exception):
    """A file of an image's layers that only the mounted union can tell (a symlink)."""


class LayerTree:
    """An image's tree read from its snapshot's layer directories (top first) without
    mounting them: `berth run` reads /etc/passwd and /etc/group this way.

    A path is found as overlayfs finds it: each component is looked up in each layer from
    the top, through directory fds opened with O_NOFOLLOW (nothing outside a layer is
    reachable); a whiteout (0/0 character device) hides the path in every lower layer, an
    opaque directory (trusted.overlay.opaque=y) ends the search below its layer. A symbolic
    link on the way raises NeedsMount: where it leads depends on the union, and the caller
    mounts the layers instead. ``preload`` reads the files first, so that choice is made
    before anything else is done."""

    def __init__(self, layers):
        self.layers = list(layers)
        self._files = {}

    def preload(self, paths):
        for path in paths:
            self._files[path] = self._find(path)
        return self

    def read(self, path):
        if path not in self._files:
            self._files[path] = self._find(path)
        return self._files[path]

    def _find(self, path):
        parts = [p for p in path.split("/") if p]
        for layer in self.layers:
            found, stop = self._in_layer(layer, parts)
            if found is not None or stop:
                return found
        return None

    def _in_layer(self, layer, parts):
        """(bytes or None, whether lower layers are hidden) for ``parts`` in one layer."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(layer, flags)
        except OSError as err:
            raise from_oserror(err, f"open layer {layer}") from None
        try:
            opaque = False
            for i, name in enumerate(parts):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except (FileNotFoundError, NotADirectoryError):
                    return None, opaque
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    return None, True  # a whiteout
                if stat.S_ISLNK(st.st_mode):
                    raise NeedsMount(f"{layer}: {'/'.join(parts[:i + 1])} is a symlink")
                last = i == len(parts) - 1
                if not last and not stat.S_ISDIR(st.st_mode):
                    return None, True  # a file hides the directories below it
                if last:
                    if not stat.S_ISREG(st.st_mode):
                        return None, True
                    file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                                      os.O_NOCTTY | os.O_CLOEXEC, dir_fd=fd)
                    return _read_all(file_fd), True
                sub = os.open(name, flags, dir_fd=fd)
                os.close(fd)
                fd = sub
                opaque = opaque or _opaque(fd)
            return None, opaque
        except OSError as err:
            raise from_oserror(err, f"read {'/'.join(parts)} in layer {layer}") from None
        finally:
            os.close(fd)


def _read_all(fd):
    try:
        chunks, size = [], 0
        while size <= _MAX_ETC_FILE:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_in_root(rootfs, path):
    """The bytes of ``path`` inside ``rootfs`` (a directory, or a LayerTree), every symlink
    resolved inside it; None when the file is not there."""
    if isinstance(rootfs, LayerTree):
        return rootfs.read(path)
    from berth.sys.linux import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    try:
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise from_oserror(err, f"open rootfs {rootfs}") from None
    try:
        fd = openat2(root, path.lstrip("/"), os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK,
                     resolve=RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as err:
        if err.errno in (2, 20, 40):  # ENOENT, ENOTDIR, ELOOP: treat as absent
            return None
        raise from_oserror(err, f"open {path} in {rootfs}") from None
    finally:
        os.close(root)
    try:
        is_file = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not is_file:
        os.close(fd)
        return None
    return _read_all(fd)


def _entries(data, fields):
    out = []
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        parts += [""] * (fields - len(parts))
        out.append(parts)
    return out


def _num(text):
    return int(text) if text.isdigit() and text.isascii() else None


def _bare_id(text, kind, table):
    """A user or group given by a number with no entry in the file: taken as is."""
    number = _num(text)
    if number is None:
        raise InvalidArgument(f"unable to find {kind} {text}: no matching entries in {table} "
                              f"file")
    if number >= 1 << 31:
        raise InvalidArgument(f"uids and gids must be in range 0-{(1 << 31) - 1}")
    return number


def resolve_user(rootfs, spec="", group_add=()):
    """(uid, gid, additional gids, home) for ``-u spec`` from the rootfs' passwd and group.

    ``name``, ``uid``, ``name:group`` and ``uid:gid`` work as in runc/Docker: a number not
    in passwd is used as is (gid 0, home /); a name must be found. With no group given, the
    groups listing the user by name are its additional groups; ``group_add`` (--group-add)
    adds names or numbers."""
    user_arg, _, group_arg = spec.partition(":")
    passwd = _entries(_read_in_root(rootfs, "/etc/passwd"), 7)
    groups = _entries(_read_in_root(rootfs, "/etc/group"), 4)
    user_arg = user_arg or "0"
    uid, gid, home, name = None, 0, None, None
    for entry in passwd:
        if entry[0] == user_arg or entry[2] == user_arg:
            uid, gid = _num(entry[2]), _num(entry[3]) or 0
            if uid is None:
                continue
            home, name = entry[5] or "/", entry[0]
            break
    if uid is None:
        uid = _bare_id(user_arg, "user", "passwd")
        home = "/root" if uid == 0 else "/"
    extra = []
    if group_arg:
        match = next((g for g in groups if _num(g[2]) is not None
                      and (g[0] == group_arg or g[2] == group_arg)), None)
        if match is not None:
            gid = _num(match[2])
        else:
            gid = _bare_id(group_arg, "group", "group")
    elif name is not None:
        for g in groups:
            if name in g[3].split(",") and _num(g[2]) is not None:
                extra.append(_num(g[2]))
    for item in group_add:
        match = next((g for g in groups if g[0] == item), None)
        if match is not None and _num(match[2]) is not None:
            extra.append(_num(match[2]))
        elif _num(item) is not None:
            extra.append(_num(item))
        else:
            raise InvalidArgument(f"unable to find group {item}: no matching entries in group "
                                  f"file")
    seen = []
    for g in extra:
        if g not in seen:
            seen.append(g)
    return uid, gid, seen, home


# ---------------------------------------------------------------- /etc files

def etc_files(container_dir, hostname, dns=None, *, dns_search=(), dns_options=(),
              extra_hosts=(), host_network=False, resolv_conf="/etc/resolv.conf",
              hosts_file="/etc/hosts", addresses=(), nameservers=()):
    """Write ``hostname``, ``hosts`` and ``resolv.conf`` into ``container_dir`` as Docker
    does; returns {container path: host path} for ``oci_spec(etc=...)``.

    ``addresses`` are (ip, names) lines after the --add-host ones (the container's own
    address on each network first, as Docker writes it); ``nameservers`` replace the
    host's (the embedded DNS server) unless --dns was given."""
    files = {}
    # --network host shares the host's view of names; otherwise Docker's fixed entries.
    hosts = _read_host(hosts_file) if host_network else _HOSTS
    if hosts and not hosts.endswith("\n"):
        hosts += "\n"
    hosts += "".join(f"{ip}\t{name}\n" for name, _, ip in
                     (h.partition(":") for h in extra_hosts))
    hosts += "".join(f"{ip}\t{' '.join(names)}\n" for ip, names in addresses)
    resolv = _resolv_conf(_host_resolv(resolv_conf), dns or list(nameservers) or None,
                          dns_search, dns_options, host_network)
    for name, text in (("hostname", hostname + "\n"), ("hosts", hosts),
                       ("resolv.conf", resolv)):
        path = os.path.join(container_dir, name)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as err:
            raise from_oserror(err, f"write {path}") from None
        files["/etc/" + name] = path
    return files


def _read_host(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _host_resolv(path):
    text = _read_host(path)
    servers = [line.split()[1] for line in text.splitlines()
               if line.startswith("nameserver") and len(line.split()) > 1]
    # systemd-resolved's stub listens on the host's loopback only; its upstream list is here.
    if servers and all(s == "127.0.0.53" for s in servers):
        upstream = _read_host("/run/systemd/resolve/resolv.conf")
        if upstream:
            return upstream
    return text


def _resolv_conf(text, dns, search, options, host_network):
    lines = text.splitlines()
    out = []
    servers = []
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if host_network or not _is_local(words[1]):
                servers.append(words[1])
            continue
        if words[:1] in (["search"], ["domain"]) and search:
            continue
        if words[:1] == ["options"] and options:
            continue
        out.append(line)
    if dns:
        servers = list(dns)
    elif not servers:
        servers = list(_FALLBACK_DNS)
    # Docker's order when it builds the file from flags: search, nameservers, options.
    if search:
        out.append("search " + " ".join(search))
    out.extend(f"nameserver {s}" for s in servers)
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out).strip("\n") + "\n"


def _is_local(address):
    return address.startswith("127.") or address == "::1"


# ---------------------------------------------------------------- the runtime spec

def container_caps(host_config):
    """The capability list Docker gives: its default set tweaked by --cap-add/--cap-drop,
    every capability the kernel knows when privileged or with --cap-add ALL."""
    bounding = _bounding_set()
    everything = [name for name, number in sorted(CAPS.items(), key=lambda kv: kv[1])
                  if number <= host_last_cap() and bounding >> number & 1]
    if host_config.get("Privileged"):
        return everything
    adds = normalize_caps(host_config.get("CapAdd") or ())
    drops = normalize_caps(host_config.get("CapDrop") or ())
    for field, names in (("CapAdd", adds), ("CapDrop", drops)):
        for name in names:
            if name != "ALL" and name not in CAPS:
                raise InvalidArgument(f'invalid {field}: unknown capability: "{name}"')
    if "ALL" in adds:
        caps = [c for c in everything if c not in drops]
    elif "ALL" in drops:
        caps = list(adds)
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drops] + adds
    out = []
    for c in caps:
        if c not in out:
            out.append(c)
    return out


def _bounding_set():
    """This process's capability bounding set: "all capabilities" can only be what we hold
    (podman's rule; inside a restricted host asking for more makes the runtime's capset
    fail)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return (1 << (host_last_cap() + 1)) - 1


def _security(host_config):
    """{key: value} of the container's --security-opt list."""
    out = {}
    for opt in host_config.get("SecurityOpt") or ():
        key, _, value = opt.partition("=")
        out[key] = value
    return out


def oci_spec(container, rootfs, *, hostname=None, etc=None, extra_mounts=(), init_path=None,
             host_devices=None, machine=None):
    """config.json (a dict) for ``container`` - a record with ``id``, ``config`` (from
    ``merge_image_config``) and ``host_config`` - whose user is resolved against ``rootfs``,
    the image's tree (a directory, or a LayerTree of its layers).

    ``etc`` is ``etc_files()``'s result; ``extra_mounts`` are OCI mounts appended last;
    ``init_path`` overrides where --init's binary is found; ``host_devices`` (a list of OCI
    devices) replaces the /dev scan a privileged container gets."""
    cid = container["id"]
    conf = container.get("config") or {}
    hc = container.get("host_config") or {}
    privileged = bool(hc.get("Privileged"))
    security = _security(hc)
    net_mode = hc.get("NetworkMode") or "default"
    if hostname is None:
        hostname = conf.get("Hostname") or (os.uname().nodename if net_mode == "host"
                                            else cid[:12])
    caps = container_caps(hc)

    args = list(conf.get("Entrypoint") or ()) + list(conf.get("Cmd") or ())
    if not args:
        raise InvalidArgument("No command specified")
    mounts = _default_mounts(hc, privileged, security)
    if hc.get("Init"):
        init = init_path or find_init()
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": init,
                       "options": ["bind", "ro", "nosuid", "nodev", "rprivate"]})
        args = [INIT_PATH, "--"] + args

    uid, gid, groups, home = resolve_user(rootfs, conf.get("User") or "",
                                          hc.get("GroupAdd") or ())
    env = _process_env(conf, hostname, home)
    process = {
        "terminal": bool(conf.get("Tty")),
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": conf.get("WorkingDir") or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": security.get("no-new-privileges", "false").lower()
        in ("1", "t", "true"),
        "oomScoreAdj": int(hc.get("OomScoreAdj") or 0),
    }
    if groups:
        process["user"]["additionalGids"] = groups
    rlimits = [{"type": "RLIMIT_" + u["Name"].upper(), "soft": _rlim(u["Soft"]),
                "hard": _rlim(u["Hard"])} for u in hc.get("Ulimits") or ()]
    if rlimits:
        process["rlimits"] = rlimits

    user_mounts = _user_mounts(hc, etc or {}, bool(hc.get("ReadonlyRootfs")))
    user_mounts.extend(extra_mounts)
    mounts = _merge_mounts(mounts, user_mounts)

    linux = {
        "namespaces": _namespaces(hc, container.get("netns_path")),
        "resources": _resources(hc, privileged),
        "cgroupsPath": f"/berth/{cid}",
    }
    devices = _devices(hc, privileged, host_devices)
    if devices:
        linux["devices"] = devices
    linux["resources"]["devices"].extend(
        {"allow": True, "type": d["type"], "major": d["major"], "minor": d["minor"],
         "access": d.pop("_access")} for d in devices if "_access" in d)
    for d in devices:
        d.pop("_access", None)
    if hc.get("Sysctls"):
        linux["sysctl"] = dict(hc["Sysctls"])
    if not privileged and security.get("systempaths") != "unconfined":
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    seccomp = _seccomp(security, privileged, caps, machine)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    propagation = _rootfs_propagation(mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation

    spec = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if hc.get("UTSMode") == "host":
        del spec["hostname"]
    return spec


def _rlim(value):
    return (1 << 64) - 1 if value < 0 else value


def _process_env(conf, hostname, home):
    env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if conf.get("Tty"):
        env.append("TERM=xterm")
    index = {e.partition("=")[0]: i for i, e in enumerate(env)}
    for item in conf.get("Env") or ():
        key, eq, _ = item.partition("=")
        if not eq:  # a bare name unsets
            if key in index:
                env[index[key]] = None
            continue
        if key in index and env[index[key]] is not None:
            env[index[key]] = item
        else:
            index[key] = len(env)
            env.append(item)
    env = [e for e in env if e is not None]
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home}")
    return env


def find_init():
    """A static init binary on the host for --init."""
    for path in INIT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise NotFound("--init needs a static init on the host: none of "
                   f"{', '.join(INIT_CANDIDATES)} exists (apt-get install tini)")


def _default_mounts(hc, privileged, security):
    shm = int(hc.get("ShmSize") or 64 * 1024 * 1024)
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    writable_cgroups = privileged or security.get("writable-cgroups", "").lower() in (
        "1", "t", "true")
    cgroup_opts = ["nosuid", "noexec", "nodev", "relatime"] + ([] if writable_cgroups
                                                               else ["ro"])
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": cgroup_opts},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]
    ipc = hc.get("IpcMode") or "private"
    if ipc == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "nosuid", "noexec", "nodev"]})
    elif ipc != "none":
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777",
                                   f"size={shm // 1024}k"]})
    return mounts


def _user_mounts(hc, etc, readonly_root):
    mounts = []
    for dest in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
        if dest in etc:
            opts = ["rbind", "rprivate"] + (["ro"] if readonly_root else [])
            mounts.append({"destination": dest, "type": "bind", "source": etc[dest],
                           "options": opts})
    for spec in hc.get("Binds") or ():
        src, dst, ro, prop = parse_bind(spec)
        if not src.startswith("/"):
            continue  # a volume: engine/volumes.py gives its mount (extra_mounts)
        if not os.path.exists(src):
            # -v creates a missing host directory, as Docker does (--mount refuses).
            try:
                os.makedirs(src, 0o755, exist_ok=True)
            except OSError as err:
                raise from_oserror(err, f"create bind source {src}") from None
        mounts.append(_bind(src, dst, ro, prop))
    for m in hc.get("Mounts") or ():
        if m["Type"] == "bind":
            if not os.path.exists(m["Source"]):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path '
                                      f'does not exist: {m["Source"]}')
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            mounts.append(_bind(m["Source"], m["Target"], m.get("ReadOnly"), prop))
        elif m["Type"] == "tmpfs":
            tmp = m.get("TmpfsOptions") or {}
            opts = []
            if tmp.get("SizeBytes"):
                opts.append(f"size={tmp['SizeBytes'] // 1024}k")
            if tmp.get("Mode"):
                opts.append(f"mode={tmp['Mode']:o}")
            if m.get("ReadOnly"):
                opts.append("ro")
            mounts.append(_tmpfs(m["Target"], opts))
    for dest, data in (hc.get("Tmpfs") or {}).items():
        mounts.append(_tmpfs(dest, [o for o in data.split(",") if o]))
    return mounts


def _bind(src, dst, ro, prop):
    return {"destination": dst, "type": "bind", "source": src,
            "options": ["rbind", prop] + (["ro"] if ro else ["rw"])}


def _tmpfs(dest, user_opts):
    """Docker's tmpfs options: noexec,nosuid,nodev unless the user says otherwise; for each
    flag pair and key=value the last word wins."""
    opposite = {"exec": "noexec", "noexec": "exec", "suid": "nosuid", "nosuid": "suid",
                "dev": "nodev", "nodev": "dev", "ro": "rw", "rw": "ro"}
    merged = {}
    for opt in ["noexec", "nosuid", "nodev"] + list(user_opts):
        key = opt.partition("=")[0] if "=" in opt else opt
        merged.pop(opposite.get(key), None)
        merged.pop(key, None)
        merged[key] = opt
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs",
            "options": list(merged.values())}


def _merge_mounts(defaults, user):
    """Docker's rule: a user mount replaces the default one at the same destination (and one
    on /dev replaces everything below /dev); user mounts go parents first."""
    targets = {m["destination"] for m in user}
    keep = [m for m in defaults if m["destination"] not in targets
            and not ("/dev" in targets and m["destination"].startswith("/dev/"))]
    ordered = sorted(user, key=lambda m: len([p for p in m["destination"].split("/") if p]))
    return keep + ordered


def _rootfs_propagation(mounts):
    props = {o for m in mounts if m["type"] == "bind" for o in m.get("options", ())}
    # The root is always remounted recursively; the schema names the mode without the "r".
    if props & {"shared", "rshared"}:
        return "shared"
    if props & {"slave", "rslave"}:
        return "slave"
    return ""


def _namespaces(hc, netns_path=None):
    out = []
    if hc.get("PidMode") != "host":
        out.append({"type": "pid"})
    if (hc.get("IpcMode") or "private") != "host":
        out.append({"type": "ipc"})
    if hc.get("UTSMode") != "host":
        out.append({"type": "uts"})
    out.append({"type": "mount"})
    if (hc.get("NetworkMode") or "default") != "host":
        # A network the engine set up: a namespace file it keeps (network/netns.py).
        out.append({"type": "network", "path": netns_path} if netns_path
                   else {"type": "network"})
    out.append({"type": "cgroup"})
    return out


def _resources(hc, privileged):
    res = {}
    memory = {}
    limit = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    if limit:
        memory["limit"] = limit
        # dockerd: no --memory-swap means as much swap as memory again.
        memory["swap"] = swap if swap else 2 * limit
    elif swap == -1:
        memory["swap"] = -1
    if hc.get("MemoryReservation"):
        memory["reservation"] = int(hc["MemoryReservation"])
    if memory:
        res["memory"] = memory
    cpu = {}
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(hc["NanoCpus"]) * 100000 // 1_000_000_000
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids is not None and pids > 0:
        res["pids"] = {"limit": int(pids)}
    if privileged:
        res["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        rules = [{"allow": False, "access": "rwm"}]
        for kind, major, minor, access in _DEFAULT_DEVICE_RULES:
            rule = {"allow": True, "type": kind}
            if major is not None:
                rule["major"] = major
            if minor is not None:
                rule["minor"] = minor
            rule["access"] = access
            rules.append(rule)
        res["devices"] = rules
    return res


def _device(path, ctr_path, access=None):
    try:
        st = os.stat(path)
    except OSError as err:
        raise InvalidArgument(f'error gathering device information while adding custom '
                              f'device "{path}": {(err.strerror or str(err)).lower()}') from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    dev = {"path": ctr_path, "type": kind, "major": os.major(st.st_rdev),
           "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
           "uid": st.st_uid, "gid": st.st_gid}
    if access:
        dev["_access"] = access
    return dev


def _devices(hc, privileged, host_devices):
    out = []
    if privileged:
        out.extend(dict(d) for d in (host_devices if host_devices is not None
                                     else scan_host_devices()))
    for mapping in hc.get("Devices") or ():
        host, ctr = mapping["PathOnHost"], mapping["PathInContainer"]
        perms = mapping.get("CgroupPermissions") or "rwm"
        if os.path.isdir(host):
            for base, _, files in os.walk(host):
                for name in sorted(files):
                    full = os.path.join(base, name)
                    dev = _device(full, ctr + full[len(host):], perms)
                    if dev:
                        out.append(dev)
            continue
        dev = _device(host, ctr, perms)
        if dev is None:
            raise InvalidArgument(f'error gathering device information while adding custom '
                                  f'device "{host}": not a device node')
        out.append(dev)
    seen, unique = set(), []
    for d in out:
        if d["path"] not in seen:
            seen.add(d["path"])
            unique.append(d)
    return unique


_SKIP_DEV_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def scan_host_devices(root="/dev"):
    """Every character and block device under ``root`` as OCI devices (for --privileged)."""
    out = []
    for base, dirs, files in os.walk(root):
        if base == root:
            dirs[:] = [d for d in dirs if d not in _SKIP_DEV_DIRS]
        for name in sorted(files):
            full = os.path.join(base, name)
            if full == os.path.join(root, "console"):
                continue
            try:
                dev = _device(full, "/dev" + full[len(root):])
            except InvalidArgument:
                continue
            if dev:
                out.append(dev)
    return out


def _seccomp(security, privileged, caps, machine):
    value = security.get("seccomp", "")
    if privileged or value == "unconfined":
        return None
    if value and value != "builtin":
        import json

        try:
            raw = json.loads(value)
        except ValueError as err:
            raise InvalidArgument(f"decoding seccomp profile failed: {err}") from None
        return seccomp_default.from_docker(raw, caps, machine)
    return seccomp_default.profile(caps, machine)
