"""The container service: create, start, stop, kill, remove, list, logs, wait.

A container is a record (``store.ContainerStore``), a snapshot of its image's layer chain
(its writable layer), a directory with its bundle, /etc files and json log, and, while it
runs, a monitor process (``monitor``) that owns its stdio and reports its exit. The engine
drives the OCI runtime only through its command line (berth-oci by default), so
``--runtime runc`` works the same. State the monitor reports is merged into the record on
every read: a monitor that died shows its container as exited with the code it recorded.
"""

import os
import time

from berth import events
from berth.engine import monitor as mon
from berth.engine import names
from berth.engine.store import ContainerStore
from berth.engine.zygote import socket_path as zygote_socket
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.sys.tree import remove_tree

DEFAULT_RUNTIME = "/usr/local/bin/berth-oci"


def now_rfc3339():
    t = time.time_ns()
    s, ns = divmod(t, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ns:09d}Z"


def find_runtime(name=""):
    """The OCI runtime's path: a path, a name on PATH, or berth-oci by default."""
    if name and "/" in name:
        return name
    if name in ("", "berth-oci") and os.access(DEFAULT_RUNTIME, os.X_OK):
        return DEFAULT_RUNTIME
    import shutil  # a search of PATH: not the default's path

    if name and name != "berth-oci":
        found = shutil.which(name)
        if not found:
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        return found
    found = shutil.which("berth-oci")
    if not found:
        raise NotFound("berth-oci is not installed (make install-bin)")
    return found


class ContainerService:
    def __init__(self, root, images=None):
        from berth.images.service import ImageService

        self.root = root
        self.images = images or ImageService(root)
        self.store = ContainerStore(self.images.meta)
        self.oci_root = os.path.join(root, "run", "oci")
        self.events_path = events.journal_path(root)
        self._networks = None
        from berth.engine import reconcile
        reconcile.orphans(self)
        reconcile.auto_remove(self)

    def event(self, record, action, **extra):
        """Add a container event to the journal `berth events` reads."""
        events.append(self.events_path, "container", action, record["id"],
                      events.container_attributes(record, **extra))

    @property
    def networks(self):
        """The network service (engine/networks.py), made on first use."""
        if self._networks is None:
            from berth.engine.networks import NetworkService
            self._networks = NetworkService(self.root, self.images.meta)
        return self._networks

    # ------------------------------------------------------------ paths

    def dir(self, cid):
        return os.path.join(self.root, "containers", cid)

    def _runtime_argv(self, record):
        return [record.get("runtime") or find_runtime(), "--root", self.oci_root]

    # ------------------------------------------------------------ create

    def create(self, opts, image_name=None, command=None, progress=None):
        """A created container (record) from RunOptions; pulls the image when missing."""
        from berth.engine import runopts, spec

        image = self._image(image_name or opts.image, opts, progress)
        if command is not None:
            opts.args = list(command)
        cid = names.new_id()
        config = spec.merge_image_config((image.config.get("config") or {}), opts)
        config["Image"] = image_name or opts.image
        hc = runopts.host_config(opts)
        with self.store.lock(cid):  # reconcile.orphans leaves a locked directory alone
            record = self._create_locked(cid, opts, image, image_name, config, hc)
        self.event(record, "create")
        return record

    def _create_locked(self, cid, opts, image, image_name, config, hc):
        from berth.engine import spec, volumes

        planned = volumes.plan(config, hc)
        new_volumes = []
        networks, netns_path = self._network_config(opts, cid)
        cdir = self.dir(cid)
        os.makedirs(cdir, mode=0o711, exist_ok=True)
        snap = self.images.snapshotter()
        key = f"container-{cid}"
        record = None
        try:
            rootfs = os.path.join(cdir, "bundle", "rootfs")
            os.makedirs(rootfs, exist_ok=True)
            record = {
                "id": cid, "name": opts.name or "", "image": image_name or opts.image,
                "image_id": image.id, "created": now_rfc3339(), "config": config,
                "host_config": hc, "snapshot_key": key, "rootfs_mounts": [],
                "log_path": os.path.join(cdir, f"{cid}-json.log"),
                "runtime": find_runtime(opts.runtime),
                "state": {"Status": "created", "Running": False, "Paused": False,
                          "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                          "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
                          "FinishedAt": "0001-01-01T00:00:00Z"},
                "restart_count": 0,
                "networks": networks, "netns_path": netns_path,
            }
            hostname = opts.hostname or cid[:12]
            etc = spec.etc_files(cdir, hostname, opts.dns or None,
                                 dns_search=opts.dns_search, dns_options=opts.dns_options,
                                 extra_hosts=opts.extra_hosts,
                                 host_network=opts.network == "host")
            if opts.network.startswith("container:"):
                # The files of the container whose namespace this one joins.
                other = self.dir(self.get(opts.network.partition(":")[2])["id"])
                etc.update({f"/etc/{n}": os.path.join(other, n)
                            for n in ("hosts", "resolv.conf")})
            # The user is resolved against the image's /etc/passwd and /etc/group, read from
            # its layers; config.json names the bundle's rootfs.
            oci = self._spec_for(record, rootfs, hostname, etc, snap, image,
                                 (planned, new_volumes))
            crash_point("create")
            from berth.spec import jsonio
            with open(os.path.join(cdir, "bundle", "config.json"), "w") as f:
                f.write(jsonio.dumps(oci))
            # The writable snapshot and the record in one transaction (one commit to disk).
            with self.images.meta.transaction():
                mounts = snap.prepare(key, image.chain_id)
                record["rootfs_mounts"] = [m.to_oci() if hasattr(m, "to_oci") else dict(m)
                                           for m in mounts]
                record = self.store.create(record)
        except BaseException:
            try:
                snap.remove(key)
            except NotFound:
                # Its row went with the rolled back transaction, not the directory that
                # was made inside it (a name already taken, say).
                try:
                    snap.cleanup()
                except Exception:  # noqa: BLE001 - the original error is what matters
                    pass
            except Exception:  # noqa: BLE001 - the original error is what matters
                pass
            remove_tree(cdir, ignore_errors=True)
            self._drop_volumes(new_volumes)
            raise
        return record

    def _network_config(self, opts, cid):
        """({network id: settings}, netns path) of a new container (checks networks)."""
        mode = opts.network
        if mode in ("host", "none"):
            return {}, None
        if mode.startswith("container:"):
            other = self.get(mode.partition(":")[2])
            if not other.get("netns_path"):
                from berth.errors import Unsupported
                raise Unsupported(f"--network {mode}: container {other['name']} has no "
                                  f"network namespace of berth's to join")
            return {}, other["netns_path"]
        networks = self.networks.container_networks(opts)
        if not networks:
            return {}, None
        return networks, self.networks.netns_path(cid)

    @property
    def volumes(self):
        if getattr(self, "_volumes", None) is None:
            from berth.engine.volumes import VolumeService
            self._volumes = VolumeService(self.root, self.images.meta)
        return self._volumes

    def _drop_volumes(self, names):
        for name in names:
            try:
                self.volumes.remove(name, force=True)
            except Conflict:
                pass  # another container uses it now

    def _spec_for(self, record, rootfs, hostname, etc, snap, image, volumes=((), [])):
        from berth.engine import spec

        planned, created = volumes
        tree = None
        if not any(not p["nocopy"] for p in planned):  # no volume to fill from the image
            layers = snap.layer_dirs(image.chain_id) if image.chain_id else []
            try:
                tree = spec.LayerTree(layers).preload(("/etc/passwd", "/etc/group"))
            except spec.NeedsMount:
                tree = None
        if tree is None:
            return self._spec_mounted(record, rootfs, hostname, etc, snap, image, volumes)
        from berth.engine.volumes import bind_points

        extra, points = self.volumes.attach(planned, None, created) if planned else ([], [])
        record["mounts"] = points + bind_points(record["host_config"])
        oci = spec.oci_spec(record, tree, hostname=hostname, etc=etc, extra_mounts=extra)
        oci["root"]["path"] = rootfs
        return oci

    def _spec_mounted(self, record, rootfs, hostname, etc, snap, image, volumes):
        """_spec_for with the image's layers mounted read-only: for volumes filled from the
        image, and images whose /etc/passwd or /etc/group only the union can tell."""
        from berth.engine import spec
        from berth.snapshots import mount_all, unmount

        view = f"view-{record['id']}"
        lookup = os.path.join(self.dir(record["id"]), "lookup")
        os.makedirs(lookup, exist_ok=True)
        mounted = False
        try:
            if image.chain_id:
                mount_all(snap.view(view, image.chain_id), lookup)
                mounted = True
            from berth.engine.volumes import bind_points
            extra, points = self.volumes.attach(volumes[0], lookup if mounted else None,
                                                volumes[1])
            record["mounts"] = points + bind_points(record["host_config"])
            oci = spec.oci_spec(record, lookup, hostname=hostname, etc=etc,
                                extra_mounts=extra)
        finally:
            if mounted:
                unmount(lookup)
            if image.chain_id:
                try:
                    snap.remove(view)
                except Exception:  # noqa: BLE001
                    pass
            os.rmdir(lookup)
        oci["root"]["path"] = rootfs
        return oci

    def _image(self, name, opts, progress):
        platform = getattr(opts, "platform", "") or None
        policy = getattr(opts, "pull", "missing")
        if policy != "always":
            try:
                return self.images.get(name, platform)
            except NotFound:
                if policy == "never":
                    raise NotFound(f"No such image: {name}") from None
        from berth.images.pull import pull

        if progress is not None:
            progress.message(f"Unable to find image '{name}' locally")
        pull(self.images, name, platform=platform, progress=progress)
        return self.images.get(name, platform)

    # ------------------------------------------------------------ lifecycle

    def _monitor_spec(self, record):
        hc = record.get("host_config") or {}
        log = (hc.get("LogConfig") or {}).get("Config") or {}
        from berth.units import ram_in_bytes
        cdir = self.dir(record["id"])
        return mon.MonitorSpec(
            record["id"], os.path.join(cdir, "bundle"), self._runtime_argv(record),
            rootfs_mounts=record.get("rootfs_mounts") or (), log_path=record["log_path"],
            log_max_size=ram_in_bytes(log["max-size"]) if log.get("max-size") else 0,
            log_max_file=int(log.get("max-file") or 1),
            tty=bool(record["config"].get("Tty")),
            stdin_open=bool(record["config"].get("OpenStdin")),
            restart_policy=hc.get("RestartPolicy"),
            state_path=os.path.join(cdir, "monitor.json"),
            attach_socket=os.path.join(cdir, "attach.sock"),
            healthcheck=record["config"].get("Healthcheck"),
            health_on_failure=hc.get("HealthOnFailure") or "none",
            stop_signal=record["config"].get("StopSignal") or "SIGTERM",
            stop_timeout=record["config"].get("StopTimeout"),
            events_path=self.events_path,
            event_attrs=events.container_attributes(record))

    def start(self, id_or_name, *, detached=True):
        """Start a created or exited container; returns its record. With ``detached``
        False the process is created but waits for an attach(start=True)."""
        record = self.get(id_or_name)
        with self.store.lock(record["id"]):
            record = self.get(record["id"])
            state = record["state"]
            if state.get("Running"):
                return record
            spec = self._monitor_spec(record)
            for stale in (spec.state_path, spec.state_path + ".stop", spec.attach_socket):
                try:
                    os.unlink(stale)
                except FileNotFoundError:
                    pass
            from berth.engine import reconcile
            reconcile.stale_runtime_state(self, record)
            if (record.get("host_config") or {}).get("AutoRemove"):
                reconcile.mark_auto_remove(self, record["id"])
            token = self._network_up(record, spec)
            try:
                pid = mon.spawn_monitor(spec, start=detached,
                                        zygote=zygote_socket(self.root))
            except BaseException:
                if token:
                    self.networks.teardown(record["id"])
                raise
            crash_point("start")
            # The last run's state file is gone: what it said (FinishedAt, OOMKilled ...)
            # is kept in the record, with the new run's fields over it.
            return self.store.update(record["id"], restart_count=record.get(
                "restart_count", 0), state={
                **state, "Status": "running" if detached else "created", "Running": detached,
                "Pid": pid, "ExitCode": 0, "Error": "",
                "StartedAt": now_rfc3339() if detached else state.get("StartedAt")})

    def _network_up(self, record, spec):
        """Set up the container's networks (and /etc files) before its monitor starts;
        the monitor's exit hook takes them down. Returns the start's token or None."""
        path = record.get("netns_path")
        if path and not record.get("networks"):
            from berth.network import netns
            if not netns.exists(path):
                raise Conflict("cannot join network of a non running container: "
                               f"{record['host_config'].get('NetworkMode', '')[10:]}")
            return None
        if not record.get("networks"):
            return None
        self.reconcile()
        token = self.networks.setup(record)
        try:
            self._write_etc(record)
        except BaseException:
            self.networks.teardown(record["id"])
            raise
        spec.exit_call = ["berth.engine.networks", "exit_hook", self.root, record["id"], token]
        return token

    def _write_etc(self, record):
        from berth.engine import spec
        hc = record.get("host_config") or {}
        hostname = record["config"].get("Hostname") or record["id"][:12]
        eps = self.networks.endpoints(record["id"])
        addresses = [(ep["ipv4"], [hostname]) for _, ep in eps[:1] if ep.get("ipv4")]
        nameservers = []
        if self.networks.dns_available():
            nameservers = [ep["gateway"] or net.gateway for net, ep in eps[:1] if net]
        else:
            addresses += self.networks.peers(record["id"])
        spec.etc_files(self.dir(record["id"]), hostname, hc.get("Dns") or None,
                       dns_search=hc.get("DnsSearch") or (),
                       dns_options=hc.get("DnsOptions") or (),
                       extra_hosts=hc.get("ExtraHosts") or (), addresses=addresses,
                       nameservers=nameservers)

    def connect(self, id_or_name, network, aliases=(), ip=""):
        record = self.get(id_or_name)
        with self.store.lock(record["id"]):
            record = self.get(record["id"])
            networks = self.networks.connect(record, network, aliases, ip)
            self.store.update(record["id"], networks=networks)

    def disconnect(self, id_or_name, network, force=False):
        record = self.get(id_or_name)
        with self.store.lock(record["id"]):
            record = self.get(record["id"])
            networks = self.networks.disconnect(record, network, force)
            self.store.update(record["id"], replace=("networks",), networks=networks)

    def ports(self, id_or_name):
        """Docker's NetworkSettings.Ports: {"80/tcp": [{"HostIp", "HostPort"}] or None}."""
        return self.ports_of(self.get(id_or_name))

    def ports_of(self, record):
        """``ports`` for a record already read."""
        out = {p: None for p in (record["config"].get("ExposedPorts") or {})}
        if not record["state"].get("Running"):
            return out
        for _, ep in self.networks.endpoints(record["id"]):
            for p in ep.get("ports") or ():
                out.setdefault(f"{p['container_port']}/{p['proto']}", None)
                key = f"{p['container_port']}/{p['proto']}"
                out[key] = (out[key] or []) + [{"HostIp": p["host_ip"] or "0.0.0.0",
                                                 "HostPort": str(p["host_port"])}]
        return out

    def network_settings(self, record):
        """Docker's NetworkSettings for inspect."""
        running = record["state"].get("Running")
        eps = {net.id: ep for net, ep in self.networks.endpoints(record["id"]) if net} \
            if running and record.get("networks") else {}
        networks = {}
        mode = (record.get("host_config") or {}).get("NetworkMode") or "default"
        confs = record.get("networks") or {}
        if not confs and mode in ("host", "none"):
            confs = {self.networks.get(mode).id: {"name": mode, "aliases": []}}
        for net_id, conf in confs.items():
            ep = eps.get(net_id) or {}
            networks[conf["name"]] = {
                "IPAMConfig": {"IPv4Address": conf["ip"]} if conf.get("ip") else None,
                "Links": None, "Aliases": list(conf.get("aliases") or []) or None,
                "MacAddress": ep.get("mac") or "", "NetworkID": net_id,
                "EndpointID": ep.get("endpoint_id", ""), "Gateway": ep.get("gateway") or "",
                "IPAddress": ep.get("ipv4") or "", "IPPrefixLen": ep.get("prefixlen") or 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "DriverOpts": None, "DNSNames": [n for n in [record["name"],
                                                              *(conf.get("aliases") or []),
                                                              record["id"][:12]]] if ep
                else None}
        first = next(iter(networks.values()), {})
        return {
            "Bridge": "", "SandboxID": "", "SandboxKey": record.get("netns_path") or "",
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": self.ports(record["id"]),
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": first.get("EndpointID", ""), "Gateway": first.get("Gateway", ""),
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": first.get("IPAddress", ""), "IPPrefixLen": first.get("IPPrefixLen", 0),
            "IPv6Gateway": "", "MacAddress": first.get("MacAddress", ""),
            "Networks": networks}

    def reconcile(self):
        """Take down the networks of containers that do not run (a killed CLI, a crash)."""
        def alive(cid):
            try:
                record = self.get(cid)
            except NotFound:
                return False
            if record["state"].get("Running") or record["state"].get("Restarting"):
                return True
            # A container `run` is about to attach to reads as created until its monitor
            # starts it, with no lock held: a live monitor means its network is in use.
            from berth.engine.reconcile import monitor_alive
            if monitor_alive(mon.read_state(os.path.join(self.dir(cid), "monitor.json"))):
                return True
            try:
                with self.store.lock(cid, wait=False):
                    return False
            except Conflict:
                return True  # being started or stopped right now
        return self.networks.reconcile(alive)

    def attach(self, id_or_name, stdin=None, stdout=None, stderr=None, start=False,
               size=None, detach_keys=b""):
        """Stream the container's stdio until it exits; its exit code, or monitor.DETACHED
        when ``detach_keys`` were typed. ``size``: (rows, cols) of the caller's terminal,
        given to a tty container's as it is attached."""
        record = self.get(id_or_name)
        state = record["state"]
        if not start and state.get("Paused"):
            raise Conflict("You cannot attach to a paused container, unpause it first")
        if not start and not state.get("Running") and not state.get("Restarting"):
            raise Conflict("You cannot attach to a stopped container, start it first")
        sock = os.path.join(self.dir(record["id"]), "attach.sock")
        return mon.attach(sock, stdin=stdin, stdout=stdout, stderr=stderr, start=start,
                          size=size, detach_keys=detach_keys)

    def resize(self, id_or_name, rows, cols):
        """Set the size of a tty container's terminal."""
        record = self.get(id_or_name)
        mon.resize(os.path.join(self.dir(record["id"]), "attach.sock"), rows, cols)

    def kill(self, id_or_name, signal="SIGKILL"):
        from berth.engine.runopts import parse_signal

        number = parse_signal(str(signal))  # Docker checks it before the container
        record = self.get(id_or_name)
        if not record["state"].get("Running"):
            raise Conflict(f"Cannot kill container: {id_or_name}: Container "
                           f"{record['id']} is not running")
        self._signal(record, str(number))
        self.event(record, "kill", signal=number)
        return record

    def _signal(self, record, signal):
        code, _, stderr = _run_runtime(self._runtime_argv(record) +
                                       ["kill", record["id"], str(signal)], 30)
        if code != 0 and "not running" not in stderr and "does not exist" not in stderr:
            raise Conflict(stderr.strip().splitlines()[-1] if stderr.strip()
                           else f"kill {record['id'][:12]} failed")

    def stop(self, id_or_name, timeout=None, signal=None):
        """SIGTERM (or the container's stop signal), then SIGKILL after ``timeout``."""
        record = self.get(id_or_name)
        if not record["state"].get("Running") and not record["state"].get("Restarting"):
            return record
        stop_marker = os.path.join(self.dir(record["id"]), "monitor.json.stop")
        with open(stop_marker, "w"):
            pass
        crash_point("stop")
        if not record["state"].get("Running"):
            # Between two runs of a restart policy: the monitor sees the marker within its
            # poll and gives up the restart, unless it restarted the process just before.
            record = self._wait_settled(record["id"])
            if not record["state"].get("Running"):
                self.event(record, "stop")
                return record
        if timeout is None:
            timeout = record["config"].get("StopTimeout")
            timeout = 10 if timeout is None else timeout
        first = signal or record["config"].get("StopSignal") or "SIGTERM"
        self._signal(record, first)
        self.event(record, "kill", signal=_signal_number(first))
        if not self._wait_stopped(record["id"], timeout):
            if _signal_number(first) != 9:
                self._signal(record, "SIGKILL")
                self.event(record, "kill", signal=9)
            self._wait_stopped(record["id"], 30)
        if record.get("networks"):
            with self.store.lock(record["id"]):
                if not self.get(record["id"])["state"].get("Running"):
                    self.networks.teardown(record["id"])
        record = self.get(record["id"])
        self.event(record, "stop")
        if (record.get("host_config") or {}).get("AutoRemove"):
            from berth.engine import reconcile
            reconcile.auto_remove(self, record["id"], wait_s=10)
        return record

    def _wait_settled(self, cid, timeout=30):
        deadline = time.monotonic() + timeout
        record = self.get(cid)
        while record["state"].get("Restarting") and not record["state"].get("Running"):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
            record = self.get(cid)
        return record

    def _wait_stopped(self, cid, timeout):
        deadline = time.monotonic() + max(0, timeout)
        delay = 0.005
        while True:
            record = self.get(cid)
            if not record["state"].get("Running"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def wait(self, id_or_name, timeout=None):
        """Block until the container has exited; its exit code."""
        record = self.get(id_or_name)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while record["state"].get("Running") or record["state"].get("Restarting"):
            if deadline is not None and time.monotonic() > deadline:
                raise Conflict(f"timed out waiting for {id_or_name}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            record = self.get(record["id"])
        return record["state"].get("ExitCode", 0)

    def remove(self, id_or_name, force=False, volumes=False):
        record = self.get(id_or_name)
        if record["state"].get("Running"):
            if not force:
                raise Conflict(f"cannot remove container \"/{record['name']}\": container is "
                               f"running: stop the container before removing or force remove")
            self.stop(record["id"], timeout=0, signal="SIGKILL")
            from berth.engine import reconcile
            reconcile.monitor_done(self, record["id"], 10)
            record = self.get(record["id"])
        with self.store.lock(record["id"]):
            if record.get("networks"):
                self.networks.teardown(record["id"])
            # The record goes first (with its snapshot's row, in one transaction): a crash
            # after it leaves a directory without a record, which reconcile.orphans finishes
            # removing.
            snap = self.images.snapshotter()
            with self.images.meta.transaction():
                self.store.delete(record["id"])
                try:
                    doomed = snap.detach(record["snapshot_key"])
                except NotFound:
                    doomed = None
            crash_point("rm")
            from berth.engine import reconcile
            if doomed:
                snap.remove_detached(doomed)
            reconcile.remove_leftovers(self, record["id"])
        self.event(record, "destroy")
        if volumes or (record.get("host_config") or {}).get("AutoRemove"):
            from berth.engine.volumes import ANONYMOUS_LABEL
            self._drop_volumes(m["Name"] for m in record.get("mounts") or ()
                               if m.get("Type") == "volume" and ANONYMOUS_LABEL in
                               (self._volume_labels(m["Name"])))
        return record

    def _volume_labels(self, name):
        try:
            return self.volumes.get(name).get("Labels") or {}
        except NotFound:
            return {}

    # ------------------------------------------------------------ views

    def get(self, id_or_name):
        record = self.store.get(id_or_name)
        return self._refresh(record)

    def list(self, all_containers=False):
        out = []
        for record in self.store.list():
            record = self._refresh(record)
            if all_containers or record["state"].get("Running"):
                out.append(record)
        return out

    def _refresh(self, record):
        """Merge the monitor's state file into the record (a dead monitor means exited)."""
        from berth.engine import reconcile
        path = os.path.join(self.dir(record["id"]), "monitor.json")
        try:
            reported = mon.read_state(path)
        except (OSError, ValueError):
            reported = None
        if not reported:
            pid = record["state"].get("Pid") or 0
            if record["state"].get("Running") and (not pid or not _alive(pid)):
                # Marked running by a start whose monitor vanished before it reported.
                from berth.engine import reconcile
                state = reconcile.monitor_gone(self, record, record["state"])
                return self.store.update(record["id"], state=state)
            return record
        state = dict(record["state"])
        for key in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid",
                    "ExitCode", "Error", "StartedAt", "FinishedAt", "Health"):
            if key in reported:
                state[key] = reported[key]
        if record["state"].get("Paused") and state.get("Running"):
            # Pausing is the engine's record; the monitor only sees a running process.
            state.update(Paused=True, Status="paused")
        if (state.get("Running") or state.get("Restarting")) and \
                not reconcile.monitor_alive(reported):
            state = reconcile.monitor_gone(self, record, state)
        # Merged, not written: the state file stays the truth until the next start, which
        # keeps the merged state in the record before it removes the file.
        return dict(record, state=state, restart_count=reported.get("RestartCount", 0))

    def export(self, id_or_name, fileobj):
        """The container's filesystem as a tar stream (`berth export`)."""
        import tarfile
        import tempfile

        from berth.snapshots import mount_all, unmount

        record = self.get(id_or_name)
        snap = self.images.snapshotter()
        target = tempfile.mkdtemp(prefix="export-", dir=self.dir(record["id"]))
        try:
            mount_all(snap.mounts(record["snapshot_key"]), target)
            try:
                with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as t:
                    for name in sorted(os.listdir(target)):
                        t.add(os.path.join(target, name), arcname=name)
            finally:
                unmount(target)
        finally:
            os.rmdir(target)

    def _running(self, id_or_name, verb):
        record = self.get(id_or_name)
        if not record["state"].get("Running"):
            raise Conflict(f"Container {record['id']} is not running")
        return record

    def exec_argv(self, id_or_name, command, *, tty=False, env=(), user="", workdir="",
                  privileged=False, detach=False):
        """The runtime command line that runs ``command`` in the container; the caller
        runs it with its own stdio (so `berth exec` is exactly `berth-oci exec`)."""
        record = self._running(id_or_name, "exec")
        if record["state"].get("Paused"):
            raise Conflict(f"Container {record['id']} is paused, unpause the container "
                           f"before exec")
        _find_command(record, command[0], env, workdir)
        argv = self._runtime_argv(record) + ["exec"]
        self.event(record, "exec_create: " + " ".join(command))
        self.event(record, "exec_start: " + " ".join(command))
        if tty:
            argv.append("--tty")
        if detach:
            argv.append("--detach")
        for item in env:
            argv += ["--env", item]
        if user:
            argv += ["--user", _numeric_user(self, record, user)]
        if workdir:
            argv += ["--cwd", workdir]
        if privileged:
            from berth.spec.caps import CAPS
            for cap in CAPS:
                argv += ["--cap", cap]
        return argv + [record["id"], *command]

    def exec_died(self, id_or_name, code):
        """Journal the end of an exec the caller ran from exec_argv."""
        try:
            record = self.get(id_or_name)
        except NotFound:
            return
        self.event(record, "exec_die", exitCode=code)

    def pause(self, id_or_name):
        record = self._running(id_or_name, "pause")
        self._runtime(record, "pause")
        self.event(record, "pause")
        return self.store.update(record["id"], state={"Paused": True, "Status": "paused"})

    def unpause(self, id_or_name):
        record = self.get(id_or_name)
        if not record["state"].get("Paused"):
            raise Conflict(f"Container {record['id']} is not paused")
        self._runtime(record, "resume")
        self.event(record, "unpause")
        return self.store.update(record["id"], state={"Paused": False, "Status": "running"})

    def top(self, id_or_name, ps_args=()):
        """(header, rows) of `ps` for the container's processes, as `docker top`."""
        import subprocess

        from berth.spec import jsonio
        record = self._running(id_or_name, "top")
        pids = jsonio.loads(self._runtime(record, "ps", "--format", "json")) or []
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                             timeout=30)
        if out.returncode != 0:
            raise InvalidArgument(f"ps: {out.stderr.strip()}")
        lines = out.stdout.splitlines()
        header = lines[0].split()
        if "PID" not in header:
            raise InvalidArgument("Couldn't find PID field in ps output")
        col = header.index("PID")
        rows = [line for line in lines[1:] if len(line.split()) > col
                and line.split()[col].isdigit() and int(line.split()[col]) in pids]
        return lines[0], rows

    def stats(self, id_or_name):
        """The runtime's `events --stats` data for a running container."""
        from berth.spec import jsonio
        record = self._running(id_or_name, "stats")
        out = self._runtime(record, "events", "--stats")
        return record, (jsonio.loads(out.strip().splitlines()[0]).get("data") or {})

    def rename(self, id_or_name, new_name):
        record = self.get(id_or_name)
        old = record["name"]
        record = self.store.update(record["id"], name=new_name)
        self.event(record, "rename", oldName="/" + old)
        return record

    def prune(self, filters=()):
        """Remove every stopped container that ``filters`` (Docker's "until=", "label=",
        "label!=" strings: different keys all hold, one of a key's values does) keep;
        (ids removed, bytes their own layers held)."""
        from berth.engine.logs import parse_time

        wanted = {}
        for f in filters:
            key, _, value = f.partition("=")
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
            wanted.setdefault(key, []).append(value)
        until = [parse_time(v, "until") for v in wanted.get("until", ())]
        removed, freed = [], 0
        for record in self.list(all_containers=True):
            state = record["state"]
            if state.get("Running") or state.get("Restarting"):
                continue
            labels = record["config"].get("Labels") or {}
            if until and not any(_created_ns(record) < t for t in until):
                continue
            if "label" in wanted and not all(has_label(labels, v) for v in wanted["label"]):
                continue
            if any(has_label(labels, v) for v in wanted.get("label!", ())):
                continue
            size = self.sizes(record)[0]
            self.remove(record["id"])
            removed.append(record["id"])
            freed += size
        return removed, freed

    def sizes(self, record):
        """(SizeRw, SizeRootFs): the bytes of the container's own layer, and with its
        image's."""
        try:
            rw = self.images.snapshotter().usage(record["snapshot_key"])
        except Exception:  # noqa: BLE001 - a record without its snapshot counts as empty
            rw = 0
        try:
            image = self.images.get(record["image_id"]).size()
        except Exception:  # noqa: BLE001 - an image removed under the container
            image = 0
        return rw, rw + image

    def _runtime(self, record, *args):
        code, stdout, stderr = _run_runtime(self._runtime_argv(record) + list(args) +
                                            [record["id"]], 60)
        if code != 0:
            lines = stderr.strip().splitlines()
            raise Conflict(lines[-1] if lines else f"{args[0]} failed")
        return stdout

    def inspect(self, id_or_name):
        """Docker's ContainerInspect object (the fields berth has)."""
        r = self.get(id_or_name)
        conf = r["config"]
        args = list(conf.get("Entrypoint") or []) + list(conf.get("Cmd") or [])
        return {
            "Id": r["id"], "Created": r["created"],
            "Path": args[0] if args else "", "Args": args[1:],
            "State": dict(r["state"]), "Image": r["image_id"],
            "ResolvConfPath": os.path.join(self.dir(r["id"]), "resolv.conf"),
            "HostnamePath": os.path.join(self.dir(r["id"]), "hostname"),
            "HostsPath": os.path.join(self.dir(r["id"]), "hosts"),
            "LogPath": r["log_path"], "Name": "/" + r["name"],
            "RestartCount": r.get("restart_count", 0), "Driver": "overlay2",
            "Platform": "linux", "HostConfig": dict(r["host_config"]),
            "Config": dict(conf, Hostname=conf.get("Hostname") or r["id"][:12]),
            "Mounts": list(r.get("mounts") or ()),
            "NetworkSettings": self.network_settings(r),
        }

    def logs(self, id_or_name, **kw):
        from berth.engine.logs import read_logs

        record = self.get(id_or_name)
        running = (lambda: self.get(record["id"])["state"].get("Running"))
        return read_logs(record["log_path"], running=running, **kw)


def _run_runtime(argv, timeout):
    """(exit code, stdout, stderr as text) of one OCI runtime call (sys/execute.py)."""
    from berth.errors import SystemFailure
    from berth.sys import execute

    try:
        code, out, err = execute.run(argv, timeout=timeout)
    except OSError as err:
        raise SystemFailure(f"{argv[0]} {argv[3] if len(argv) > 3 else ''}: "
                            f"{err.strerror or err}") from None
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def _numeric_user(svc, record, user):
    """berth-oci exec takes numeric ids: resolve a name against the container's files."""
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return user
    from berth.engine import spec
    rootfs = os.path.join(svc.dir(record["id"]), "bundle", "rootfs")
    u, g, _, _ = spec.resolve_user(rootfs, user)
    return f"{u}:{g}"


def crash_point(name):
    """Tests' hook for crash safety: with BERTH_CRASH_AT=<name> the process kills itself
    (SIGKILL) there, in the middle of an operation."""
    if os.environ.get("BERTH_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _find_command(record, name, env, workdir):
    """Look ``name`` up in the running container as its exec will (PATH from the
    container's and the exec's environment, a path from the working directory), so that a
    missing command is refused in Docker's words, which `berth exec` turns into 127 (126
    for one that is not an executable file). Anything unclear is left to the runtime."""
    import stat

    from berth.engine import fstree
    from berth.errors import BerthError

    try:
        root = os.open(f"/proc/{int(record['state'].get('Pid') or 0)}/root",
                       os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return
    try:
        if "/" in name:
            base = workdir or record["config"].get("WorkingDir") or "/"
            candidates = [name if name.startswith("/") else base.rstrip("/") + "/" + name]
        else:
            path = _DEFAULT_PATH
            for item in list(record["config"].get("Env") or []) + list(env):
                if item.startswith("PATH="):
                    path = item[5:]
            candidates = [d.rstrip("/") + "/" + name for d in path.split(":") if d]
        for candidate in candidates:
            try:
                fd = fstree.open_in_root(root, candidate)
            except NotFound:
                continue
            except BerthError:
                return
            try:
                mode = os.fstat(fd).st_mode
            finally:
                os.close(fd)
            if stat.S_ISREG(mode) and mode & 0o111:
                return
            if "/" in name:
                raise Conflict(f'exec failed: exec: "{name}": permission denied')
    finally:
        os.close(root)
    if "/" in name:
        raise NotFound(f'exec failed: exec: "{name}": stat {name}: no such file or directory')
    raise NotFound(f'exec failed: exec: "{name}": executable file not found in $PATH')


def has_label(labels, spec):
    """Docker's label filter: "key" (present) or "key=value"."""
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _created_ns(record):
    from berth.engine.logs import time_ns

    try:
        return time_ns(record["created"])
    except (KeyError, ValueError):
        return 0


def _signal_number(signal):
    """Docker's `signal` attribute: the number ("SIGTERM", "TERM", "15" -> 15)."""
    import _signal as signals  # the constants without signal.py's enum (~1.5 ms)

    text = str(signal).upper()
    if text.isdigit():
        return int(text)
    try:
        return int(getattr(signals, text if text.startswith("SIG") else "SIG" + text))
    except AttributeError:
        return text


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
