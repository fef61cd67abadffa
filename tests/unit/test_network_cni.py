"""The CNI driver's logic against fake plugins (shell scripts that log what they are given)."""

import json
import os

import pytest

from berth.errors import InvalidArgument, NotFound, SystemFailure
from berth.network import cni
from berth.network.driver import Endpoint, NetworkRecord, PortMapping

# A fake plugin: logs "$CNI_COMMAND <type> <env> <stdin>" as one JSON line, answers VERSION,
# and for ADD prints prevResult extended by one IP (or fails when told to in its config).
FAKE = r"""#!/usr/bin/python3
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ["CNI_COMMAND"]
with open(os.environ.get("FAKE_LOG", "/dev/null"), "a") as f:
    f.write(json.dumps({"cmd": cmd, "type": conf.get("type"), "conf": conf,
                        "env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")}})
            + "\n")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": conf.get("fakeVersions")
                      or ["0.3.1", "0.4.0", "1.0.0"]}))
    sys.exit(0)
if conf.get("fail") == cmd:
    print(json.dumps({"cniVersion": "1.0.0", "code": 11, "msg": "it broke",
                      "details": "line one\nline two"}))
    sys.exit(1)
if cmd == "ADD":
    prev = conf.get("prevResult") or {"cniVersion": conf["cniVersion"], "interfaces": [],
                                       "ips": []}
    if conf.get("addIp"):
        prev["interfaces"].append({"name": os.environ["CNI_IFNAME"], "mac": "aa:bb:cc:dd:ee:ff",
                                   "sandbox": os.environ["CNI_NETNS"]})
        prev["ips"].append({"address": conf["addIp"], "gateway": "10.9.0.1",
                            "interface": len(prev["interfaces"]) - 1})
    print(json.dumps(prev))
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("fakea", "fakeb"):
        path = bindir / name
        path.write_text(FAKE)
        path.chmod(0o755)
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    driver = cni.CniDriver(str(tmp_path / "root"), cni_path=[str(bindir)],
                           conf_dir=str(tmp_path / "confdir"))
    return driver, tmp_path, log


def conflist(tmp_path, plugins=None, name="fakenet", version="1.0.0", path="net.conflist"):
    plugins = plugins if plugins is not None else [
        {"type": "fakea", "addIp": "10.9.0.5/24", "capabilities": {"portMappings": True}},
        {"type": "fakeb", "capabilities": {"mac": True}}]
    p = tmp_path / path
    p.write_text(json.dumps({"cniVersion": version, "name": name, "plugins": plugins}))
    return str(p)


def record(path=None, name="fakenet"):
    return NetworkRecord(id="ab" * 32, name=name, driver="cni",
                         options={"cni.conflist": path} if path else {})


def log_lines(log):
    if not os.path.exists(log):
        return []
    return [json.loads(line) for line in open(log)]


@pytest.fixture(autouse=True)
def log_through_env(monkeypatch):
    # The driver passes plugins only CNI_* and PATH: let the fake find its log anyway.
    real = cni.executor.run

    def run(argv, *, env=None, **kw):
        return real(argv, env=dict(env, FAKE_LOG=os.environ.get("FAKE_LOG", "/dev/null")), **kw)
    monkeypatch.setattr(cni.executor, "run", run)


def test_add_chains_results_and_caches_them(env):
    driver, tmp, log = env
    net = record(conflist(tmp))
    driver.create(net)
    ep = Endpoint(container_id="c" * 64, network_id=net.id, ifname="eth1", mac="02:00:00:00:00:01")
    got = driver.attach(net, "/run/netns/x", ep, [PortMapping("", 8080, 80, "tcp")])
    assert (got.ipv4, got.prefixlen, got.gateway, got.mac) == ("10.9.0.5", 24, "10.9.0.1",
                                                               "aa:bb:cc:dd:ee:ff")
    calls = [c for c in log_lines(log) if c["cmd"] == "ADD"]
    assert [c["type"] for c in calls] == ["fakea", "fakeb"]
    first, second = calls
    assert first["conf"]["name"] == "fakenet" and first["conf"]["cniVersion"] == "1.0.0"
    assert "prevResult" not in first["conf"]
    assert first["conf"]["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert second["conf"]["prevResult"]["ips"][0]["address"] == "10.9.0.5/24"
    assert second["conf"]["runtimeConfig"] == {"mac": "02:00:00:00:00:01"}
    assert first["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c" * 64,
                            "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth1", "CNI_ARGS": "",
                            "CNI_PATH": str(tmp / "bin")}
    cache = tmp / "root" / "cni" / "results" / f"fakenet-{'c' * 64}-eth1.json"
    cached = json.loads(cache.read_text())
    assert cached["result"]["ips"][0]["address"] == "10.9.0.5/24"

    driver.check(net, "/run/netns/x", ep)
    checks = [c for c in log_lines(log) if c["cmd"] == "CHECK"]
    assert [c["type"] for c in checks] == ["fakea", "fakeb"]
    assert all(c["conf"]["prevResult"] == cached["result"] for c in checks)

    driver.detach(net, "/run/netns/gone", ep)
    dels = [c for c in log_lines(log) if c["cmd"] == "DEL"]
    assert [c["type"] for c in dels] == ["fakeb", "fakea"]
    assert all(c["conf"]["prevResult"] == cached["result"] for c in dels)
    assert all(c["env"]["CNI_NETNS"] == "" for c in dels)  # the netns is gone
    assert not cache.exists()
    driver.detach(net, None, ep)  # again: no cache, DEL without prevResult, still fine
    dels = [c for c in log_lines(log) if c["cmd"] == "DEL"]
    assert len(dels) == 4 and "prevResult" not in dels[-1]["conf"]
    with pytest.raises(NotFound):
        driver.check(net, "/run/netns/x", ep)


def test_failed_add_is_undone_and_reported_in_one_line(env):
    driver, tmp, log = env
    net = record(conflist(tmp, [{"type": "fakea", "addIp": "10.9.0.5/24"},
                                {"type": "fakeb", "fail": "ADD"}]))
    driver.create(net)
    ep = Endpoint(container_id="d" * 64, network_id=net.id, ifname="eth0")
    with pytest.raises(SystemFailure) as err:
        driver.attach(net, "/run/netns/x", ep, [])
    assert str(err.value) == "CNI plugin fakeb ADD failed: it broke (line one line two)"
    assert [c["cmd"] + " " + c["type"] for c in log_lines(log) if c["cmd"] != "VERSION"] == [
        "ADD fakea", "ADD fakeb", "DEL fakeb", "DEL fakea"]
    assert not (tmp / "root" / "cni" / "results").exists()


@pytest.mark.parametrize("text,words", [
    ("{nope", "not valid JSON"),
    ("[1]", "not a JSON object"),
    ('{"cniVersion": "1.0.0", "plugins": [{"type": "fakea"}]}', 'no "name"'),
    ('{"cniVersion": "1.0.0", "name": "n"}', 'no "plugins"'),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": []}', 'no "plugins"'),
    ('{"cniVersion": "9.9.9", "name": "n", "plugins": [{"type": "fakea"}]}',
     'unknown "cniVersion" \'9.9.9\''),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "nosuch"}]}',
     'plugin "nosuch" not found in'),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"x": 1}]}', 'plugins[0] has no "type"'),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../bin/sh"}]}',
     "is not a plugin name"),
    ('{"cniVersion": "0.3.0", "name": "n", "plugins": [{"type": "fakea"}]}',
     'plugin "fakea" does not support cniVersion 0.3.0'),
])
def test_invalid_conflists_are_refused_with_nothing_written(env, text, words):
    driver, tmp, _ = env
    path = tmp / "bad.conflist"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as err:
        driver.create(record(str(path)))
    assert words in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value)
    assert not os.path.exists(tmp / "root" / "cni")


def test_several_problems_in_one_message(env):
    driver, tmp, _ = env
    path = tmp / "bad.conflist"
    path.write_text('{"cniVersion": "2", "plugins": [{"type": "nosuch"}]}')
    with pytest.raises(InvalidArgument) as err:
        driver.create(record(str(path)))
    assert str(err.value) == (f'invalid CNI config {path}: no "name"; unknown "cniVersion" '
                              f"'2' (known: {', '.join(cni.VERSIONS)}); plugin \"nosuch\" not "
                              f"found in {tmp / 'bin'}")


def test_single_plugin_conf_and_conf_dir_lookup(env):
    driver, tmp, log = env
    confdir = tmp / "confdir"
    confdir.mkdir()
    (confdir / "10-other.conflist").write_text("{broken")
    (confdir / "20-mine.conf").write_text(json.dumps(
        {"cniVersion": "0.4.0", "name": "mine", "type": "fakea", "addIp": "10.9.0.7/16"}))
    net = record(name="mine")
    driver.create(net)
    assert driver.conflist(net)["plugins"] == [{"type": "fakea", "addIp": "10.9.0.7/16"}]
    got = driver.attach(net, "", Endpoint("e" * 64, net.id, "eth0"), [])
    assert (got.ipv4, got.prefixlen) == ("10.9.0.7", 16)
    driver.remove(net)  # runs DEL for what is still cached, then forgets the network
    assert [c["cmd"] for c in log_lines(log)][-1] == "DEL"
    assert not os.listdir(tmp / "root" / "cni" / "results")
    with pytest.raises(InvalidArgument, match="no CNI config"):
        driver.create(record(name="unknown"))
    with pytest.raises(InvalidArgument, match="No such file"):
        driver.create(record(str(tmp / "missing.conflist")))


def test_endpoint_from_old_results():
    ep = Endpoint("f" * 64, "n", "eth0")
    got = cni.endpoint_from_result(ep, {"ip4": {"ip": "10.1.2.3/8", "gateway": "10.0.0.1"}})
    assert (got.ipv4, got.prefixlen, got.gateway) == ("10.1.2.3", 8, "10.0.0.1")
    got = cni.endpoint_from_result(ep, {"ips": [{"address": "fd00::2/64"},
                                                {"address": "10.0.0.2/24"}]})
    assert got.ipv4 == "10.0.0.2" and got.gateway is None
    assert cni.endpoint_from_result(ep, {}) == ep
