"""The network service: network records, a container's endpoints, and reconcile.

Tables in the metadata database: ``net_networks`` (one JSON record a network) and
``net_endpoints`` (one row per container per network while the container runs: address,
MAC, aliases, published ports, and the token of the start that made it). Leases are
``network.ipam``'s. ``bridge``, ``host`` and ``none`` exist from first use.

A container on bridge networks gets a namespace file ``<root>/netns/<id>`` when it starts
(the OCI spec joins it by path), one endpoint per network (eth0, eth1, ... in order), and
loses them all when it stops: its monitor calls ``exit_hook`` when the container is gone
for good, and stop/rm tear down too (idempotent). ``reconcile`` removes the endpoints of
containers that no longer run (after a kill -9 of anything).
"""

import ipaddress
import os

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PermissionDenied
from berth.network.driver import Endpoint, NetworkRecord, PortMapping, sha256_hex
from berth.spec import jsonio as json

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS net_networks (
           id     TEXT PRIMARY KEY,
           name   TEXT UNIQUE NOT NULL,
           record TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS net_endpoints (
           container_id TEXT NOT NULL,
           network_id   TEXT NOT NULL,
           token        TEXT NOT NULL,
           record       TEXT NOT NULL,
           PRIMARY KEY (container_id, network_id))""",
)
PREDEFINED = ("bridge", "host", "none")
_DEFAULT_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
    "com.docker.network.driver.mtu": "65535",
}
_DRIVERS = ("bridge", "cni")


def _now():
    from berth.engine.containers import now_rfc3339
    return now_rfc3339()


def _record(row):
    data = json.loads(row["record"])
    return NetworkRecord(**data)


def _to_json(net):
    return json.dumps({f: getattr(net, f) for f in NetworkRecord.__annotations__})


class NetworkService:
    def __init__(self, root, md):
        self.root = root
        self.md = md
        for sql in _SCHEMA:
            md.execute(sql)
        from berth.network.ipam import Ipam
        self.ipam = Ipam(md)
        self._drivers = {}

    # ------------------------------------------------------------ drivers

    def driver(self, net):
        name = net.driver
        if name not in self._drivers:
            if name == "bridge":
                from berth.network.bridge import BridgeDriver
                self._drivers[name] = BridgeDriver(self.root, self._rules)
            elif name == "cni":
                try:
                    from berth.network.cni import CniDriver
                except ImportError:
                    raise InvalidArgument("plugin \"cni\" not found") from None
                self._drivers[name] = CniDriver(self.root)
            else:
                raise InvalidArgument(f'plugin "{name}" not found')
        return self._drivers[name]

    def _rules(self):
        """(BridgeRules, PortRule) lists for the bridge driver, from the records."""
        from berth.network.firewall import BridgeRules, PortRule
        nets = {n.id: n for n in self.list() if n.driver == "bridge"}
        bridges = [BridgeRules(n.bridge, n.subnet, n.gateway, n.internal)
                   for n in nets.values()]
        ports = []
        for row in self.md.query("SELECT network_id, record FROM net_endpoints"):
            net = nets.get(row["network_id"])
            if net is None:
                continue
            ep = json.loads(row["record"])
            for p in ep.get("ports") or ():
                ports.append(PortRule(net.bridge, p["host_ip"], p["host_port"], p["proto"],
                                      ep["ipv4"], p["container_port"]))
        return bridges, ports

    # ------------------------------------------------------------ records

    def _ensure_predefined(self):
        if len(self.md.query("SELECT 1 FROM net_networks WHERE name IN "
                             "('bridge', 'host', 'none')")) == 3:
            return
        from berth.engine import names
        from berth.network import ipam
        from berth.network.bridge import host_lock
        with host_lock(), self.md.transaction():
            have = {r[0] for r in self.md.query("SELECT name FROM net_networks")}
            for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
                if name in have:
                    continue
                subnet = gateway = ""
                options = {}
                if driver == "bridge":
                    net = ipam.pick_subnet(self._taken_subnets())
                    subnet, gateway = str(net), str(net.network_address + 1)
                    options = dict(_DEFAULT_OPTIONS)
                rec = NetworkRecord(names.new_id(), name, driver, subnet, gateway,
                                    options=options, created=_now())
                self.md.execute("INSERT INTO net_networks (id, name, record) VALUES (?, ?, ?)",
                                (rec.id, rec.name, _to_json(rec)))

    def _taken_subnets(self, exclude=None):
        from berth.network.netlink import Netlink
        taken = [ipaddress.IPv4Network(n.subnet) for n in self._all()
                 if n.subnet and n.id != exclude]
        with Netlink() as nl:
            taken += nl.routes()
        return taken

    def _all(self):
        return [_record(r) for r in self.md.query("SELECT record FROM net_networks")]

    def list(self):
        self._ensure_predefined()
        return sorted(self._all(), key=lambda n: (n.created, n.name))

    def get(self, ref):
        """A network by full id, exact name, or unique id prefix."""
        self._ensure_predefined()
        rows = self.md.query("SELECT record FROM net_networks WHERE id = ? OR name = ?",
                             (ref, ref))
        if not rows and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.md.query("SELECT record FROM net_networks WHERE substr(id, 1, ?) = ?",
                                 (len(ref), ref))
            if len(rows) > 1:
                raise Conflict(f"network {ref} is ambiguous ({len(rows)} matches found based "
                               f"on ID prefix)")
        if not rows:
            raise NotFound(f"network {ref} not found")
        return _record(rows[0])

    def create(self, name, driver="bridge", subnet="", gateway="", ip_range="",
               internal=False, labels=None, options=None):
        from berth.engine import names
        from berth.network import ipam
        from berth.network.bridge import host_lock

        self._ensure_predefined()
        if not name or not all(c.isalnum() or c in "_.-" for c in name):
            raise InvalidArgument(f"invalid network name {name!r}")
        if driver not in _DRIVERS:
            raise InvalidArgument(f'plugin "{driver}" not found')
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("invalid network config: --gateway and --ip-range need "
                                  "--subnet")
        options = dict(options or {})
        mtu = options.get("com.docker.network.driver.mtu")
        if mtu and not (mtu.isdigit() and 68 <= int(mtu) <= 65535):
            raise InvalidArgument(f"invalid MTU {mtu!r}")
        bridge_name = options.get("com.docker.network.bridge.name")
        if bridge_name and (len(bridge_name) > 15 or "/" in bridge_name):
            raise InvalidArgument(f"invalid bridge name {bridge_name!r}")
        with host_lock():
            if self.md.query("SELECT 1 FROM net_networks WHERE name = ?", (name,)):
                raise AlreadyExists(f"network with name {name} already exists")
            if driver == "bridge":
                if subnet:
                    net, gateway, ip_range = ipam.check_subnet(subnet, gateway, ip_range)
                    for other in self._all():
                        if other.subnet and net.overlaps(ipaddress.IPv4Network(other.subnet)):
                            raise Conflict("invalid pool request: Pool overlaps with other "
                                           "one on this address space")
                else:
                    net = ipam.pick_subnet(self._taken_subnets())
                    gateway = str(net.network_address + 1)
                subnet = str(net)
            rec = NetworkRecord(names.new_id(), name, driver, subnet, gateway, ip_range,
                                bool(internal), dict(labels or {}), options, _now())
            self.md.execute("INSERT INTO net_networks (id, name, record) VALUES (?, ?, ?)",
                            (rec.id, rec.name, _to_json(rec)))
            try:
                self.driver(rec).create(rec)
            except BaseException:
                self.md.execute("DELETE FROM net_networks WHERE id = ?", (rec.id,))
                raise
        return rec

    def remove(self, ref):
        net = self.get(ref)
        if net.name in PREDEFINED:
            raise PermissionDenied(f"{net.name} is a pre-defined network and cannot be "
                                   f"removed")
        users = self._users(net.id)
        if users:
            raise Conflict(f"error while removing network: network {net.name} id {net.id} "
                           f"has active endpoints")
        self.md.execute("DELETE FROM net_networks WHERE id = ?", (net.id,))
        self.ipam.release_network(net.id)
        try:
            self.driver(net).remove(net)
        except BaseException:
            self.md.execute("INSERT INTO net_networks (id, name, record) VALUES (?, ?, ?)",
                            (net.id, net.name, _to_json(net)))
            raise
        return net

    def _users(self, network_id):
        """Ids of containers configured on a network (running or not)."""
        users = {r[0] for r in self.md.query(
            "SELECT container_id FROM net_endpoints WHERE network_id = ?", (network_id,))}
        for row in self.md.query("SELECT id, record FROM containers"):
            rec = json.loads(row["record"])
            if network_id in (rec.get("networks") or {}):
                users.add(row["id"])
        return users

    def prune(self):
        """Remove the unused user networks; the default bridge network's link and rules
        (which stay up after its last container, as docker0 does) go when it is idle."""
        from berth.network.bridge import host_lock
        removed = []
        for net in self.list():
            if net.name == "bridge" and net.driver == "bridge":
                with host_lock():
                    if not self.md.query("SELECT 1 FROM net_endpoints WHERE network_id = ?",
                                         (net.id,)):
                        self.driver(net).remove(net)
                continue
            if net.name in PREDEFINED or self._users(net.id):
                continue
            self.remove(net.id)
            removed.append(net.name)
        return removed

    # ------------------------------------------------------------ container configuration

    def container_networks(self, opts):
        """{network id: {"name", "aliases", "ip", "mac"}} for a new container's RunOptions
        (NotFound for an unknown network, checks Docker makes)."""
        out = {}
        modes = opts.networks or [opts.network]
        for i, ref in enumerate(modes):
            if ref in ("default", "bridge"):
                net = self.get("bridge")
            elif ref.startswith("container:"):
                return {}
            else:
                net = self.get(ref)
            if net.driver in ("host", "null"):
                return {}
            user = net.name != "bridge"
            if opts.network_aliases and i == 0 and not user:
                raise InvalidArgument("network-scoped alias is supported only for containers "
                                      "in user defined networks")
            if opts.ip and i == 0 and not (user and net.subnet and net.driver == "bridge"):
                raise InvalidArgument("user specified IP address is supported only when "
                                      "connecting to networks with user configured subnets")
            out[net.id] = {"name": net.name,
                           "aliases": list(opts.network_aliases) if i == 0 else [],
                           "ip": opts.ip if i == 0 else "",
                           "mac": opts.mac_address if i == 0 else ""}
        return out

    def netns_path(self, cid):
        return os.path.join(self.root, "netns", cid)

    # ------------------------------------------------------------ endpoints

    def endpoints(self, cid):
        """[(NetworkRecord or None, endpoint dict)] of a running container, eth0 first."""
        rows = self.md.query("SELECT network_id, record FROM net_endpoints "
                             "WHERE container_id = ?", (cid,))
        nets = {n.id: n for n in self._all()}
        out = [(nets.get(r["network_id"]), json.loads(r["record"])) for r in rows]
        return sorted(out, key=lambda item: int(item[1]["ifname"][3:] or 0))

    def setup(self, record):
        """Make the container's namespace and endpoints before it starts; returns the token
        its monitor's exit hook passes back to ``teardown``."""
        from berth.network import netns

        cid = record["id"]
        networks = record.get("networks") or {}
        token = os.urandom(8).hex()
        if not networks:
            return token
        self.teardown(cid)
        path = self.netns_path(cid)
        netns.create(path)
        try:
            ports = _port_mappings(record)
            for i, (net_id, conf) in enumerate(networks.items()):
                net = self.get(net_id)
                self._attach(record, net, conf, f"eth{i}", ports if i == 0 else [], token)
        except BaseException as err:
            try:
                self.teardown(cid)
            except Exception as cleanup:  # noqa: BLE001 - kept beside the cause
                if hasattr(err, "cleanup_errors"):
                    err.cleanup_errors.append(cleanup)
            raise
        self._names_changed()
        return token

    def _attach(self, record, net, conf, ifname, ports, token):
        from berth.network.bridge import host_lock
        cid = record["id"]
        with host_lock():
            net = self._ready(net)
            ports = self._bind_ports(ports)
            with self.md.transaction():  # the lease and the endpoint: one commit
                ip = self.ipam.lease(net, cid, conf.get("ip") or None) if net.subnet else None
                ep = Endpoint(cid, net.id, ifname, ip, None, None, conf.get("mac") or None,
                              tuple(conf.get("aliases") or ()))
                self._save(ep, ports, token, record)
            try:
                ep = self.driver(net).attach(net, self.netns_path(cid), ep, ports)
            except BaseException:
                self.md.execute("DELETE FROM net_endpoints WHERE container_id = ? AND "
                                "network_id = ?", (cid, net.id))
                self.ipam.release(net.id, cid)
                raise
            self._save(ep, ports, token, record)

    def _save(self, ep, ports, token, record):
        data = {"ifname": ep.ifname, "ipv4": ep.ipv4, "prefixlen": ep.prefixlen,
                "gateway": ep.gateway, "mac": ep.mac, "aliases": list(ep.aliases),
                "name": record.get("name") or "", "endpoint_id": _endpoint_id(ep),
                "ports": [{"host_ip": p.host_ip, "host_port": p.host_port,
                           "container_port": p.container_port, "proto": p.proto}
                          for p in ports]}
        self.md.execute("INSERT INTO net_endpoints (container_id, network_id, token, record) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (container_id, network_id) DO "
                        "UPDATE SET token = excluded.token, record = excluded.record",
                        (ep.container_id, ep.network_id, token, json.dumps(data)))

    def _ready(self, net):
        """The default bridge's record, its subnet moved if another link took it while it
        was down (several roots share the host). Called with the host lock held."""
        if net.options.get("com.docker.network.bridge.default_bridge") != "true":
            return net
        from berth.network import ipam
        from berth.network.netlink import Netlink
        with Netlink() as nl:
            if nl.index(net.bridge) is not None:
                return net
            routes = nl.routes()
        mine = ipaddress.IPv4Network(net.subnet)
        if not any(mine.overlaps(r) for r in routes) or self.ipam.leases(net.id):
            return net
        subnet = ipam.pick_subnet(self._taken_subnets(exclude=net.id))
        net = NetworkRecord(**{**json.loads(_to_json(net)), "subnet": str(subnet),
                               "gateway": str(subnet.network_address + 1)})
        self.md.execute("UPDATE net_networks SET record = ? WHERE id = ?",
                        (_to_json(net), net.id))
        return net

    def _bind_ports(self, ports):
        """The mappings with host ports chosen; Conflict for a port already taken."""
        taken = set()
        for row in self.md.query("SELECT record FROM net_endpoints"):
            for p in json.loads(row[0]).get("ports") or ():
                taken.add((p["proto"], p["host_port"]))
        out = []
        for p in ports:
            if p.host_port > 0:
                if (p.proto, p.host_port) in taken or not _bindable(p):
                    raise Conflict(f"Bind for {p.host_ip or '0.0.0.0'}:{p.host_port} failed: "
                                   f"port is already allocated")
            else:
                p = PortMapping(p.host_ip, _free_port(p, taken), p.container_port, p.proto)
            taken.add((p.proto, p.host_port))
            out.append(p)
        return out

    def teardown(self, cid, token=None):
        """Remove a container's endpoints, leases and namespace file (all, or only those
        of the start ``token`` made); idempotent, works when the namespace is gone."""
        from berth.network import netns
        rows = self.md.query("SELECT network_id, token, record FROM net_endpoints "
                             "WHERE container_id = ?", (cid,))
        if token is not None and any(r["token"] != token for r in rows):
            return  # a newer start owns the container's network now
        path = self.netns_path(cid)
        if not rows:  # taken down already (the exit hook, then rm): only a leftover file
            if token is None or netns.exists(path):
                netns.remove(path)
            return
        nets = {n.id: n for n in self._all()}
        # Unmounting the namespace file ends the namespace, and its veth pairs with it,
        # unless a `--network container:` sharer holds it: then delete them now.
        dying = bool(rows) and netns.exists(path) and not self._sharers(cid, path)
        errors = []
        with self.md.transaction():  # every endpoint and lease of the container: one commit
            for row in rows:
                self.md.execute("DELETE FROM net_endpoints WHERE container_id = ? AND "
                                "network_id = ?", (cid, row["network_id"]))
                self.ipam.release(row["network_id"], cid)
        for row in rows:
            ep = json.loads(row["record"])
            net = nets.get(row["network_id"])
            if net is None:
                continue
            try:
                self.driver(net).detach(net, path, Endpoint(
                    cid, net.id, ep["ifname"], ep.get("ipv4"), ep.get("prefixlen"),
                    ep.get("gateway"), ep.get("mac"), tuple(ep.get("aliases") or ())),
                    dying=dying)
            except Exception as err:  # noqa: BLE001 - go on with the rest, report below
                errors.append(err)
        if token is None or rows or netns.exists(path):
            netns.remove(path)
        if rows:
            self._names_changed()
        if errors:
            raise errors[0]

    def _sharers(self, cid, path):
        """True when another container's record joins the namespace at ``path``."""
        return bool(self.md.query("SELECT 1 FROM containers WHERE id != ? AND "
                                  "instr(record, ?) LIMIT 1", (cid, json.dumps(path))))

    def connect(self, record, ref, aliases=(), ip=""):
        net = self.get(ref)
        networks = dict(record.get("networks") or {})
        if net.id in networks:
            raise Conflict(f"endpoint with name {record['name']} already exists in network "
                           f"{net.name}")
        if not networks:
            raise Conflict("container cannot be disconnected from host network or connected "
                           "to host network" if net.driver == "host" else
                           "container sharing network namespace with another container or "
                           "host cannot be connected to any other network")
        if ip and not (net.name != "bridge" and net.subnet):
            raise InvalidArgument("user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        conf = {"name": net.name, "aliases": list(aliases), "ip": ip, "mac": ""}
        if record["state"].get("Running"):
            rows = self.endpoints(record["id"])
            token = self.md.query("SELECT token FROM net_endpoints WHERE container_id = ?",
                                  (record["id"],))
            used = {ep["ifname"] for _, ep in rows}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
            self._attach(record, net, conf, ifname, [], token[0][0] if token else "")
            self._names_changed()
        networks[net.id] = conf
        return networks

    def disconnect(self, record, ref, force=False):
        net = self.get(ref)
        networks = dict(record.get("networks") or {})
        if net.id not in networks:
            if force:
                return networks
            raise Conflict(f"container {record['id']} is not connected to network {net.name}")
        rows = self.md.query("SELECT record FROM net_endpoints WHERE container_id = ? AND "
                             "network_id = ?", (record["id"], net.id))
        if rows:
            ep = json.loads(rows[0][0])
            self.md.execute("DELETE FROM net_endpoints WHERE container_id = ? AND "
                            "network_id = ?", (record["id"], net.id))
            self.ipam.release(net.id, record["id"])
            self.driver(net).detach(net, self.netns_path(record["id"]), Endpoint(
                record["id"], net.id, ep["ifname"], ep.get("ipv4")))
            self._names_changed()
        del networks[net.id]
        return networks

    # ------------------------------------------------------------ names

    def _names_changed(self):
        """Hand the DNS server the new table (when berth has one)."""
        try:
            from berth.network import dns
        except ImportError:
            return
        table = {"networks": {}}
        nets = {n.id: n for n in self._all()}
        for row in self.md.query("SELECT container_id, network_id, record FROM net_endpoints"):
            net = nets.get(row["network_id"])
            ep = json.loads(row["record"])
            if net is None or not ep.get("ipv4"):
                continue
            entry = table["networks"].setdefault(net.id, {"gateway": net.gateway,
                                                          "entries": []})
            names = [n for n in [ep.get("name"), *ep.get("aliases", ()),
                                 row["container_id"][:12]] if n]
            entry["entries"].append({"container": row["container_id"], "ip": ep["ipv4"],
                                     "names": names})
        dns.write_records(self.root, table)
        if table["networks"]:
            dns.ensure_server(self.root)

    def dns_available(self):
        try:
            from berth.network import dns  # noqa: F401
        except ImportError:
            return False
        return True

    def peers(self, cid):
        """(ip, names) of the other containers on the networks of ``cid`` (for /etc/hosts
        when there is no DNS server)."""
        mine = {r[0] for r in self.md.query("SELECT network_id FROM net_endpoints WHERE "
                                            "container_id = ?", (cid,))}
        out = []
        for row in self.md.query("SELECT container_id, network_id, record FROM "
                                 "net_endpoints WHERE container_id != ?", (cid,)):
            if row["network_id"] in mine:
                ep = json.loads(row["record"])
                names = [n for n in [ep.get("name"), *ep.get("aliases", ()),
                                     row["container_id"][:12]] if n]
                out.append((ep["ipv4"], names))
        return out

    # ------------------------------------------------------------ reconcile

    def reconcile(self, alive):
        """Tear down the endpoints of containers for which ``alive(cid)`` is False."""
        from berth.network import netns
        ids = {r[0] for r in self.md.query("SELECT container_id FROM net_endpoints")}
        ids |= {r[0] for r in self.md.query("SELECT container_id FROM net_leases")}
        try:
            ids |= set(os.listdir(os.path.join(self.root, "netns")))
        except FileNotFoundError:
            pass
        cleaned = []
        for cid in sorted(ids):
            if not alive(cid):
                self.teardown(cid)
                self.ipam.release_container(cid)
                netns.remove(self.netns_path(cid))
                cleaned.append(cid)
        return cleaned

    def inspect(self, net):
        containers = {}
        for row in self.md.query("SELECT container_id, record FROM net_endpoints WHERE "
                                 "network_id = ?", (net.id,)):
            ep = json.loads(row["record"])
            containers[row["container_id"]] = {
                "Name": ep.get("name", ""), "EndpointID": ep.get("endpoint_id", ""),
                "MacAddress": ep.get("mac") or "",
                "IPv4Address": f"{ep['ipv4']}/{ep['prefixlen']}" if ep.get("ipv4") else "",
                "IPv6Address": ""}
        config = []
        if net.subnet:
            cfg = {"Subnet": net.subnet, "Gateway": net.gateway}
            if net.ip_range:
                cfg["IPRange"] = net.ip_range
            config.append(cfg)
        return {
            "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
            "Driver": net.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": config},
            "Internal": net.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers, "Options": dict(net.options),
            "Labels": dict(net.labels)}


def _endpoint_id(ep):
    return sha256_hex(f"{ep.container_id}/{ep.network_id}")


def _port_mappings(record):
    """PortMappings of a record's HostConfig (-p, and -P for every exposed port)."""
    hc = record.get("host_config") or {}
    bindings = dict(hc.get("PortBindings") or {})
    if hc.get("PublishAllPorts"):
        for port in (record.get("config") or {}).get("ExposedPorts") or {}:
            bindings.setdefault(port, [{"HostIp": "", "HostPort": ""}])
    out = []
    for port, binds in bindings.items():
        number, _, proto = port.partition("/")
        if (proto or "tcp") not in ("tcp", "udp"):
            raise InvalidArgument(f"publishing {proto} ports is not supported")
        for b in binds or [{"HostIp": "", "HostPort": ""}]:
            host_ip = b.get("HostIp") or ""
            if ":" in host_ip:
                if host_ip == "::":
                    continue  # IPv4 only: "::" asks for every IPv6 address
                raise InvalidArgument(f"publishing on IPv6 address {host_ip} is not supported")
            host_port = b.get("HostPort") or ""
            if "-" in host_port:
                low, high = (int(x) for x in host_port.split("-"))
                out.append(PortMapping(host_ip, -low * 100000 - high, int(number),
                                       proto or "tcp"))
            else:
                out.append(PortMapping(host_ip, int(host_port or 0), int(number),
                                       proto or "tcp"))
    return out


def _bindable(p):
    import _socket  # not socket: that module imports enum and selectors (~3 ms)

    kind = _socket.SOCK_STREAM if p.proto == "tcp" else _socket.SOCK_DGRAM
    s = _socket.socket(_socket.AF_INET, kind | _socket.SOCK_CLOEXEC)
    try:
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        s.bind((p.host_ip or "0.0.0.0", p.host_port))
    except OSError:
        return False
    finally:
        s.close()
    return True


def _free_port(p, taken):
    if p.host_port < 0:  # a host range to pick one from (encoded by _port_mappings)
        low, high = divmod(-p.host_port, 100000)
        candidates = range(low, high + 1)
    else:
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low, high = (int(x) for x in f.read().split())
        except OSError:
            low, high = 32768, 60999
        candidates = range(low, high + 1)
    for port in candidates:
        q = PortMapping(p.host_ip, port, p.container_port, p.proto)
        if (p.proto, port) not in taken and _bindable(q):
            return port
    raise Conflict(f"Bind for {p.host_ip or '0.0.0.0'}:{candidates.start}-{candidates.stop - 1} "
                   f"failed: no free port")


def exit_hook(root, cid, token):
    """Run by a container's monitor when the container is gone for good: take its networks
    down unless a newer start owns them."""
    from berth.engine.store import ContainerStore
    from berth.metadata.db import Metadata

    with Metadata(root) as md:
        store = ContainerStore(md)
        with store.lock(cid):
            NetworkService(root, md).teardown(cid, token)
