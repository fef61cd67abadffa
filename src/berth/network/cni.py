"""The ``cni`` network driver: runs a user's CNI network configuration list (CNI spec 1.0).

Where the conflist comes from: ``-o cni.conflist=/path/to/file`` (a .conflist, or a single
plugin's .conf, which is wrapped as a list of one); without it, the file in ``conf_dir``
(``/etc/cni/net.d``) whose ``name`` is the network's name. ``create`` validates it (one
line per problem, see ``check_conflist``; every plugin is asked VERSION and must support
the list's cniVersion) and keeps a copy under ``<root>/cni/networks/<id>.json``: later edits
of the user's file do not change a network that exists, and DEL always runs the config its
ADD ran (the copy in the cached result).

``attach`` runs ADD through the plugins in order (each gets the list's ``name`` and
``cniVersion``, the previous plugin's result as ``prevResult``, and ``runtimeConfig`` for the
capabilities it declares: ``portMappings``, ``ips``, ``mac``), caches the final result under
``<root>/cni/results/<network>-<container>-<ifname>.json`` (atomically) and returns the
endpoint with the address, gateway and MAC the plugins chose. If a plugin fails, DEL runs
through the list before the error is raised, so nothing is left half-made. ``detach`` runs
DEL in reverse order with the cached result as prevResult; it succeeds without a netns (it
is passed as "") and without a cache entry (no prevResult), so it can be repeated.
``check`` runs CHECK (cniVersion 0.4.0 and later) against the cached result.

Plugins run through ``executor.run`` with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,
CNI_IFNAME, CNI_ARGS (``-o cni.args=K=V;K2=V2``) and CNI_PATH; a plugin's error result
(``{"code", "msg", "details"}``) becomes one line: ``CNI plugin bridge ADD failed: msg (details)``.
"""

import os

from berth.errors import InvalidArgument, NotFound, SystemFailure
from berth.network import executor
from berth.network._files import write_atomic

CNI_PATH = "/usr/lib/cni"
CONF_DIR = "/etc/cni/net.d"
VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_PLUGIN_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _vtuple(version):
    return tuple(int(p) for p in version.split("."))


class PluginError(SystemFailure):
    """A plugin failed: ``code``, ``msg`` and ``details`` are its error result's."""

    def __init__(self, message, code=0, msg="", details=""):
        super().__init__(message)
        self.code, self.msg, self.details = code, msg, details


# ---------------------------------------------------------------- validation

def _check_json(conf, path):
    if not isinstance(conf, dict):
        return ["not a JSON object"]
    return []


def _check_name(conf, path):
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        return ['no "name"']
    if not all(c.isalnum() or c in "_.-" for c in name):
        return [f'"name" {name!r} may hold only letters, digits, "_", "." and "-"']
    return []


def _check_version(conf, path):
    version = conf.get("cniVersion")
    if not isinstance(version, str) or not version:
        return ['no "cniVersion"']
    if version not in VERSIONS:
        return [f'unknown "cniVersion" {version!r} (known: {", ".join(VERSIONS)})']
    return []


def _check_plugins(conf, path):
    plugins = conf.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        return ['no "plugins"']
    problems = []
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict):
            problems.append(f"plugins[{index}] is not an object")
            continue
        kind = plugin.get("type")
        if not isinstance(kind, str) or not kind:
            problems.append(f'plugins[{index}] has no "type"')
        elif "/" in kind or kind in (".", ".."):
            problems.append(f'plugins[{index}] "type" {kind!r} is not a plugin name')
        elif find_plugin(kind, path) is None:
            problems.append(f'plugin "{kind}" not found in {":".join(path)}')
    return problems


_CHECKS = (_check_json, _check_name, _check_version, _check_plugins)


def check_conflist(conf, path):
    """The problems with a parsed conflist, one line each (empty when fine)."""
    problems = []
    for check in _CHECKS:
        problems += check(conf, path)
        if problems and check is _check_json:
            break
    return problems


def load_conflist(data, where, path=(CNI_PATH,)):
    """Parse and check a conflist (bytes); a single plugin's .conf becomes a list of one.
    Raises InvalidArgument naming ``where`` and every problem."""
    from berth.spec import jsonio

    try:
        conf = jsonio.loads(data, f"CNI config {where}")
    except InvalidArgument as err:
        raise InvalidArgument(str(err)) from None
    if isinstance(conf, dict) and "plugins" not in conf and "type" in conf:
        plugin = {k: v for k, v in conf.items() if k not in ("name", "cniVersion")}
        conf = {k: conf[k] for k in ("name", "cniVersion") if k in conf}
        conf["plugins"] = [plugin]
    problems = check_conflist(conf, list(path))
    if problems:
        raise InvalidArgument(f"invalid CNI config {where}: " + "; ".join(problems))
    return conf


def find_plugin(kind, path):
    for directory in path:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# ---------------------------------------------------------------- the driver

class CniDriver:
    """Implements driver.Driver for networks whose driver is ``cni``."""

    def __init__(self, root, cni_path=None, conf_dir=CONF_DIR, timeout=60.0):
        self.root = os.path.abspath(root)
        if cni_path is None:
            cni_path = os.environ.get("CNI_PATH") or CNI_PATH
        if isinstance(cni_path, str):
            cni_path = [p for p in cni_path.split(":") if p]
        self.path = list(cni_path)
        self.conf_dir = conf_dir
        self.timeout = timeout

    # -- files
    def _conf_file(self, net):
        return os.path.join(self.root, "cni", "networks", f"{net.id}.json")

    def _cache_file(self, net, container_id, ifname):
        return os.path.join(self.root, "cni", "results", f"{net.name}-{container_id}-{ifname}.json")

    def _source(self, net):
        path = net.options.get("cni.conflist")
        if path:
            try:
                with open(path, "rb") as f:
                    return path, f.read()
            except OSError as err:
                raise InvalidArgument(f"CNI config {path}: {err.strerror}") from None
        from berth.spec import jsonio

        try:
            names = sorted(os.listdir(self.conf_dir))
        except OSError:
            names = []
        for name in names:
            if not name.endswith((".conflist", ".conf", ".json")):
                continue
            candidate = os.path.join(self.conf_dir, name)
            try:
                with open(candidate, "rb") as f:
                    data = f.read()
                if jsonio.loads(data).get("name") == net.name:
                    return candidate, data
            except (OSError, InvalidArgument, AttributeError):
                continue
        raise InvalidArgument(f"network {net.name}: no CNI config: give -o cni.conflist=PATH "
                              f"or put a conflist named {net.name!r} in {self.conf_dir}")

    def conflist(self, net):
        """The conflist kept for ``net`` at create."""
        from berth.spec import jsonio

        try:
            return jsonio.load_file(self._conf_file(net))
        except FileNotFoundError:
            raise NotFound(f"network {net.name}: its CNI config is gone") from None

    # -- Driver
    def create(self, net):
        where, data = self._source(net)
        conf = load_conflist(data, where, self.path)
        self._check_versions(conf, where)
        _write_json(self._conf_file(net), conf)

    def remove(self, net):
        from berth.spec import jsonio

        results = os.path.join(self.root, "cni", "results")
        errors = []
        for name in _listdir(results):
            path = os.path.join(results, name)
            try:
                cached = jsonio.load_file(path)
            except (OSError, InvalidArgument):
                continue
            if cached.get("networkName") == net.name:
                try:
                    self._delete(net, cached.get("config"), cached.get("containerId", ""), "",
                                 cached.get("ifName", "eth0"), cached)
                except SystemFailure as err:
                    errors.append(err)
        try:
            os.unlink(self._conf_file(net))
        except FileNotFoundError:
            pass
        if errors:
            raise SystemFailure(f"network {net.name}: {errors[0]}", cleanup_errors=errors[1:])

    def attach(self, net, netns_path, ep, ports=()):
        conf = self.conflist(net)
        runtime = _runtime_config(ep, ports)
        env_args = net.options.get("cni.args", "")
        prev = None
        try:
            for plugin in conf["plugins"]:
                prev = self._exec("ADD", conf, plugin, runtime, prev, ep.container_id,
                                  netns_path, ep.ifname, env_args)
        except SystemFailure as err:
            cleanup = []
            try:
                self._delete(net, conf, ep.container_id, netns_path, ep.ifname, None,
                             runtime, env_args)
            except SystemFailure as also:
                cleanup.append(also)
            err.cleanup_errors.extend(cleanup)
            raise
        result = prev or {}
        try:
            _write_json(self._cache_file(net, ep.container_id, ep.ifname), {
                "kind": "cniCacheV1", "containerId": ep.container_id, "ifName": ep.ifname,
                "networkName": net.name, "config": conf, "cniArgs": env_args,
                "capabilityArgs": runtime, "result": result})
        except OSError as err:
            self._delete(net, conf, ep.container_id, netns_path, ep.ifname, None, runtime,
                         env_args)
            raise SystemFailure(f"cannot cache the CNI result: {err}") from None
        return endpoint_from_result(ep, result, netns_path)

    def detach(self, net, netns_path, ep, dying=False):
        from berth.spec import jsonio

        cache = self._cache_file(net, ep.container_id, ep.ifname)
        try:
            cached = jsonio.load_file(cache)
        except (FileNotFoundError, InvalidArgument):
            cached = None
        conf = cached.get("config") if cached else None
        if not isinstance(conf, dict):
            try:
                conf = self.conflist(net)
            except NotFound:
                return  # nothing cached, nothing configured: nothing to delete
        self._delete(net, conf, ep.container_id, netns_path, ep.ifname, cached)

    def check(self, net, netns_path, ep):
        """CHECK the container's attachment against its cached result."""
        from berth.spec import jsonio

        try:
            cached = jsonio.load_file(self._cache_file(net, ep.container_id, ep.ifname))
        except FileNotFoundError:
            raise NotFound(f"container {ep.container_id[:12]} has no cached CNI result on "
                           f"network {net.name}") from None
        conf = cached["config"]
        if _vtuple(conf["cniVersion"]) < (0, 4, 0):
            return
        for plugin in conf["plugins"]:
            self._exec("CHECK", conf, plugin, cached.get("capabilityArgs") or {},
                       cached.get("result"), ep.container_id, netns_path, ep.ifname,
                       cached.get("cniArgs", ""))

    def version(self, kind):
        """A plugin's answer to VERSION: its supportedVersions."""
        binary = find_plugin(kind, self.path)
        if binary is None:
            raise NotFound(f'CNI plugin "{kind}" not found in {":".join(self.path)}')
        out = self._run(binary, kind, "VERSION", {"cniVersion": VERSIONS[-2]}, "", "", "", "")
        versions = out.get("supportedVersions") if isinstance(out, dict) else None
        if not isinstance(versions, list):
            raise SystemFailure(f"CNI plugin {kind} VERSION: no supportedVersions")
        return versions

    # -- internals
    def _check_versions(self, conf, where):
        problems = []
        for kind in dict.fromkeys(p["type"] for p in conf["plugins"]):
            try:
                supported = self.version(kind)
            except SystemFailure as err:
                problems.append(str(err))
                continue
            if conf["cniVersion"] not in supported:
                problems.append(f'plugin "{kind}" does not support cniVersion '
                                f'{conf["cniVersion"]} (it supports {", ".join(supported)})')
        if problems:
            raise InvalidArgument(f"invalid CNI config {where}: " + "; ".join(problems))

    def _delete(self, net, conf, container_id, netns_path, ifname, cached, runtime=None,
                env_args=None):
        if cached:
            runtime = cached.get("capabilityArgs") or {}
            env_args = cached.get("cniArgs", "")
            prev = cached.get("result")
        else:
            prev = None
        if netns_path and not os.path.exists(netns_path):
            netns_path = ""
        errors = []
        if isinstance(conf, dict):
            for plugin in reversed(conf.get("plugins") or []):
                try:
                    self._exec("DEL", conf, plugin, runtime or {}, prev, container_id,
                               netns_path or "", ifname, env_args or "")
                except SystemFailure as err:
                    errors.append(err)
        if errors:
            raise SystemFailure(str(errors[0]), cleanup_errors=errors[1:])
        try:
            os.unlink(self._cache_file(net, container_id, ifname))
        except FileNotFoundError:
            pass

    def _exec(self, command, conf, plugin, runtime, prev, container_id, netns, ifname, args):
        config = dict(plugin, name=conf["name"], cniVersion=conf["cniVersion"])
        caps = plugin.get("capabilities") or {}
        wanted = {k: v for k, v in runtime.items() if isinstance(caps, dict) and caps.get(k)}
        config.pop("runtimeConfig", None)
        if wanted:
            config["runtimeConfig"] = wanted
        if prev is not None:
            config["prevResult"] = prev
        binary = find_plugin(plugin["type"], self.path)
        if binary is None:
            raise SystemFailure(f'CNI plugin "{plugin["type"]}" not found in '
                                f'{":".join(self.path)}')
        out = self._run(binary, plugin["type"], command, config, container_id, netns or "",
                        ifname, args)
        if command == "ADD":
            if not isinstance(out, dict):
                raise PluginError(f"CNI plugin {plugin['type']} ADD: no result")
            return out
        return prev

    def _run(self, binary, kind, command, config, container_id, netns, ifname, args):
        from berth.spec import jsonio

        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
               "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": ":".join(self.path),
               "PATH": _PLUGIN_ENV_PATH}
        done = executor.run([binary], stdin=jsonio.dumps(config).encode(), env=env,
                            timeout=self.timeout)
        text = done.stdout.decode(errors="replace").strip()
        try:
            out = jsonio.loads(text) if text else None
        except InvalidArgument:
            out = None
        if done.returncode != 0 or (isinstance(out, dict) and out.get("code")
                                    and "msg" in out):
            raise _plugin_error(kind, command, out, done)
        return out


def _plugin_error(kind, command, out, done):
    if isinstance(out, dict) and ("msg" in out or "code" in out):
        msg = " ".join(str(out.get("msg") or f"error code {out.get('code')}").split())
        details = " ".join(str(out.get("details") or "").split())
        line = f"CNI plugin {kind} {command} failed: {msg}" + (f" ({details})" if details else "")
        return PluginError(line, out.get("code") or 0, msg, details)
    err = done.stderr.decode(errors="replace").strip().splitlines()
    why = err[-1] if err else f"exit status {done.returncode}"
    return PluginError(f"CNI plugin {kind} {command} failed: {why}")


def _runtime_config(ep, ports):
    runtime = {}
    if ports:
        runtime["portMappings"] = [
            {"hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.proto,
             **({"hostIP": p.host_ip} if p.host_ip and p.host_ip != "0.0.0.0" else {})}
            for p in ports]
    if ep.ipv4:
        runtime["ips"] = [f"{ep.ipv4}/{ep.prefixlen}" if ep.prefixlen else ep.ipv4]
    if ep.mac:
        runtime["mac"] = ep.mac
    return runtime


def endpoint_from_result(ep, result, netns_path=None):
    """``ep`` with the first IPv4 address, its prefix, gateway and interface MAC of a CNI
    result (any version: ``ips`` of 0.3.0 and later, ``ip4`` of 0.1/0.2)."""
    ips = result.get("ips") if isinstance(result, dict) else None
    interfaces = result.get("interfaces") if isinstance(result, dict) else None
    interfaces = interfaces if isinstance(interfaces, list) else []
    chosen = None
    for ip in ips if isinstance(ips, list) else ():
        if isinstance(ip, dict) and "." in str(ip.get("address", "")):
            chosen = ip
            break
    if chosen is None and isinstance(result, dict) and isinstance(result.get("ip4"), dict):
        chosen = {"address": result["ip4"].get("ip", ""),
                  "gateway": result["ip4"].get("gateway")}
    changes = {}
    if chosen:
        address, _, prefix = str(chosen.get("address", "")).partition("/")
        changes["ipv4"] = address or None
        changes["prefixlen"] = int(prefix) if prefix.isdigit() else None
        changes["gateway"] = chosen.get("gateway") or None
        index = chosen.get("interface")
        if isinstance(index, int) and 0 <= index < len(interfaces):
            mac = interfaces[index].get("mac") if isinstance(interfaces[index], dict) else None
            if mac:
                changes["mac"] = mac
    if "mac" not in changes:
        for iface in interfaces:
            if isinstance(iface, dict) and iface.get("name") == ep.ifname and iface.get("mac") \
                    and (iface.get("sandbox") or not netns_path):
                changes["mac"] = iface["mac"]
                break
    return ep.replace(**changes)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _write_json(path, value):
    from berth.spec import jsonio

    write_atomic(path, jsonio.pretty(value).encode() + b"\n", 0o600)
