"""Bridge networking end to end: names, published ports, isolation, --internal, cleanup."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.integration.berthcli import IMAGE, berth_with_busybox, needs_berth_oci

pytestmark = needs_berth_oci

PID = os.getpid()
SERVE = ("mkdir -p /www && echo page-$0 > /www/index.html && exec httpd -f -p 80 -h /www")


@pytest.fixture(scope="module")
def berth(busybox_rootfs, tmp_path_factory):
    gen = berth_with_busybox(busybox_rootfs, tmp_path_factory)
    b = next(gen)
    yield b
    for name in b("network", "ls", "-q", "--filter", "type=custom", check=False).stdout.split():
        b("network", "rm", name, check=False)
    try:
        next(gen)
    except StopIteration:
        pass
    assert _leftovers(b, idle_default=False) == []


def _links():
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _berth_links():
    """The links berth makes (veths "vb...", bridges "br-..."): other engines' links come
    and go on a shared machine."""
    return {name for name in _links() if name.startswith(("vb", "br-"))}


def _table(b):
    from berth.network.firewall import table_name
    return table_name(b.root)


def _settled(links_fn, want, tries=200):
    """``links_fn()`` once it equals ``want`` (or its last value): a container's veth pair
    goes with its namespace, which the kernel destroys asynchronously."""
    for _ in range(tries):
        got = links_fn()
        if got == want:
            break
        time.sleep(0.05)
    return got


def _default_bridge(b):
    nid = json.loads(b("network", "inspect", "bridge").stdout)[0]["Id"]
    return f"br-{nid[:12]}"


def _leftovers(b, idle_default=True):
    """What berth still holds on the host for this root: netns files, its nft table (but
    for the idle default bridge's rules when ``idle_default``: that bridge stays up, as
    docker0 does, until `network prune`), leases."""
    found = []
    netns_dir = os.path.join(b.root, "netns")
    if os.path.isdir(netns_dir) and os.listdir(netns_dir):
        found.append(f"netns {os.listdir(netns_dir)}")
    proc = subprocess.run(["nft", "list", "table", "inet", _table(b)], capture_output=True,
                          text=True)
    if proc.returncode == 0:
        allowed = f'elements = {{ "{_default_bridge(b)}" }}' if idle_default else None
        if not allowed or allowed not in proc.stdout:
            found.append("nft table")
    import sqlite3
    db = sqlite3.connect(os.path.join(b.root, "metadata.db"))
    try:
        leases = db.execute("SELECT * FROM net_leases").fetchall()
        endpoints = db.execute("SELECT container_id FROM net_endpoints").fetchall()
    except sqlite3.OperationalError:
        leases = endpoints = []
    finally:
        db.close()
    if leases or endpoints:
        found.append(f"leases {leases} endpoints {endpoints}")
    return found


def _bridges(b):
    out = b("network", "ls", "-q", "--no-trunc", "--filter", "type=custom").stdout.split()
    return {f"br-{nid[:12]}" for nid in out}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fetch(url, tries=50):
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _ports_in_table(b):
    proc = subprocess.run(["nft", "list", "table", "inet", _table(b)], capture_output=True,
                          text=True)
    return proc.stdout.count("dnat ip to")


def test_the_scenario_names_and_published_ports(berth):
    net = f"web{PID}"
    berth("network", "create", net)
    local, public = _free_port(), _free_port()
    try:
        cid = berth("run", "-d", "--name", f"srv{PID}", "--network", net, "--network-alias",
                    "nginx", "-p", f"127.0.0.1:{local}:80", "-p", f"{public}:80", IMAGE,
                    "sh", "-c", SERVE, "one").stdout.strip()
        page = berth("run", "--rm", "--network", net, IMAGE, "sh", "-c",
                     "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://nginx && exit 0;"
                     " sleep 0.2; done; exit 1").stdout
        assert page == "page-one\n"
        assert _fetch(f"http://127.0.0.1:{local}/") == "page-one\n"
        host_ip = next(a for a in subprocess.run(["hostname", "-I"], capture_output=True,
                                                 text=True).stdout.split() if "." in a)
        assert _fetch(f"http://{host_ip}:{public}/") == "page-one\n"
        # A port bound to loopback is not translated for the host's other addresses.
        with pytest.raises(OSError):
            socket.create_connection((host_ip, local), timeout=2).close()
        assert berth("port", cid, "80").stdout.split() == [f"127.0.0.1:{local}",
                                                           f"0.0.0.0:{public}"]
        info = json.loads(berth("inspect", cid).stdout)[0]["NetworkSettings"]
        assert info["Networks"][net]["Aliases"] == ["nginx"]
        assert info["Networks"][net]["IPAddress"].startswith("172.")
        assert info["Ports"]["80/tcp"][0]["HostPort"] == str(local)
        # A taken host port: one clear line, and nothing of the second container is left.
        bad = berth("run", "-d", "--network", net, "-p", f"{public}:80", IMAGE, "sleep", "9",
                    check=False)
        assert bad.returncode == 125
        assert f"Bind for 0.0.0.0:{public} failed: port is already allocated" in bad.stderr
        assert len(berth("ps", "-q").stdout.split()) == 1
        assert len(os.listdir(os.path.join(berth.root, "netns"))) == 1
        # Stopped: the ports are gone.
        berth("stop", "-t", "1", cid)
        assert _ports_in_table(berth) == 0
        berth("rm", cid)
    finally:
        berth("rm", "-f", f"srv{PID}", check=False)
        berth("network", "rm", net, check=False)
    assert _leftovers(berth) == []
    assert not {f for f in _links() if f.startswith("vb")} & set()


def test_networks_are_isolated_and_internal_has_no_way_out(berth):
    a, c, inner = f"isoa{PID}", f"isoc{PID}", f"inner{PID}"
    for name in (a, c):
        berth("network", "create", name)
    berth("network", "create", "--internal", inner)
    bridges = _bridges(berth)
    try:
        berth("run", "-d", "--name", f"isosrv{PID}", "--network", a, IMAGE, "sh", "-c",
              SERVE, "a")
        ip = json.loads(berth("inspect", f"isosrv{PID}").stdout)[0][
            "NetworkSettings"]["Networks"][a]["IPAddress"]
        same = berth("run", "--rm", "--network", a, IMAGE, "sh", "-c",
                     f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{ip} && exit 0;"
                     " sleep 0.2; done; exit 1")
        assert same.stdout == "page-a\n"
        other = berth("run", "--rm", "--network", c, IMAGE, "sh", "-c",
                      f"echo GET / | nc -w 2 {ip} 80", check=False)
        assert "page-a" not in other.stdout and other.returncode != 0
        # The other network's name is not visible either.
        assert berth("run", "--rm", "--network", c, IMAGE, "nslookup", f"isosrv{PID}",
                     check=False).returncode != 0
        gateway = json.loads(berth("network", "inspect", a).stdout)[0]["IPAM"]["Config"][0][
            "Gateway"]
        out = berth("run", "--rm", "--network", inner, IMAGE, "sh", "-c",
                    f"ip route; echo GET / | nc -w 2 {ip} 80; echo rc=$?; "
                    f"ping -c1 -W1 {gateway}; echo rc=$?", check=False).stdout
        assert "default" not in out
        assert out.count("rc=1") == 2 and "page-a" not in out
    finally:
        berth("rm", "-f", f"isosrv{PID}", check=False)
        berth("network", "rm", a, c, inner, check=False)
    assert not bridges & _links()
    assert _leftovers(berth) == []


def test_bad_input_changes_nothing(berth):
    net = f"bad{PID}"
    berth("network", "create", "--subnet", "10.213.200.0/24", net)
    try:
        before = (_berth_links(), berth("network", "ls", "-q").stdout)
        dup = berth("network", "create", net, check=False)
        assert dup.returncode == 1
        assert dup.stderr == f"Error response from daemon: network with name {net} " \
                             f"already exists\n"
        over = berth("network", "create", "--subnet", "10.213.200.128/25", f"o{net}",
                     check=False)
        assert "Pool overlaps with other one on this address space" in over.stderr
        unknown = berth("run", "--rm", "--network", f"nope{PID}", IMAGE, "true", check=False)
        assert unknown.returncode == 125
        assert unknown.stderr.strip().endswith(f"network nope{PID} not found")
        assert berth("ps", "-aq").stdout == ""
        taken = berth("run", "--rm", "--network", net, "--ip", "10.213.200.1", IMAGE, "true",
                      check=False)
        assert "Address already in use" in taken.stderr
        assert (_settled(_berth_links, before[0]), berth("network", "ls", "-q").stdout) \
            == before
        assert berth("network", "rm", "bridge", check=False).returncode == 1
    finally:
        berth("network", "rm", net, check=False)
    assert _leftovers(berth) == []


def test_default_bridge_comes_and_goes_and_ip_requests(berth):
    out = berth("run", "--rm", IMAGE, "sh", "-c", "ip -o -4 addr show eth0").stdout
    assert "inet 172." in out
    net = f"fix{PID}"
    berth("network", "create", "--subnet", "10.213.201.0/24", "--ip-range",
          "10.213.201.128/25", net)
    try:
        out = berth("run", "--rm", "--network", net, "--ip", "10.213.201.77", "--mac-address",
                    "02:42:0a:d5:c9:4d", "--hostname", "fixed", "--add-host", "db:10.0.0.9",
                    "--dns", "10.0.0.53", IMAGE, "sh", "-c",
                    "ip -o -4 addr show eth0; ip link show eth0; cat /etc/hosts "
                    "/etc/resolv.conf /etc/hostname").stdout
        assert "10.213.201.77/24" in out and "02:42:0a:d5:c9:4d" in out
        assert "10.0.0.9\tdb\n" in out and "10.213.201.77\tfixed\n" in out
        assert "nameserver 10.0.0.53" in out
        ranged = berth("run", "--rm", "--network", net, IMAGE, "ip", "-o", "-4", "addr",
                       "show", "eth0").stdout
        assert "10.213.201.129/24" in ranged
    finally:
        berth("network", "rm", net)
    assert _leftovers(berth) == []


def test_connect_disconnect(berth):
    net = f"conn{PID}"
    berth("network", "create", net)
    try:
        cid = berth("run", "-d", IMAGE, "sleep", "60").stdout.strip()
        berth("network", "connect", "--alias", "extra", net, cid)
        out = berth("exec", cid, "ip", "-o", "-4", "addr").stdout
        assert "eth1" in out
        assert cid in json.loads(berth("network", "inspect", net).stdout)[0]["Containers"]
        assert berth("network", "rm", net, check=False).returncode == 1
        berth("network", "disconnect", net, cid)
        assert "eth1" not in berth("exec", cid, "ip", "-o", "-4", "addr").stdout
        berth("rm", "-f", cid)
    finally:
        berth("network", "rm", net, check=False)
    assert _leftovers(berth) == []


def test_kill_9_then_reconcile_leaves_nothing(berth):
    net = f"crash{PID}"
    berth("network", "create", net)
    port = _free_port()
    try:
        cid = berth("run", "-d", "--network", net, "-p", f"{port}:80", IMAGE, "sh", "-c",
                    SERVE, "c").stdout.strip()
        assert _fetch(f"http://127.0.0.1:{port}/") == "page-c\n"
        # Kill the container's monitor and init the hard way: nobody tears anything down.
        state = json.loads(berth("inspect", cid).stdout)[0]["State"]
        monitor = json.load(open(os.path.join(berth.root, "containers", cid,
                                              "monitor.json")))["MonitorPid"]
        os.kill(monitor, signal.SIGKILL)
        os.kill(state["Pid"], signal.SIGKILL)
        for _ in range(100):
            if not json.loads(berth("inspect", cid).stdout)[0]["State"]["Running"]:
                break
            time.sleep(0.1)
        berth("network", "ls")  # the next command reconciles
        assert _ports_in_table(berth) == 0
        assert not os.listdir(os.path.join(berth.root, "netns"))
        berth("rm", "-f", cid)
    finally:
        berth("network", "rm", net, check=False)
    assert _leftovers(berth) == []


def test_veth_goes_with_the_namespace_and_a_restart_reuses_its_name(berth):
    from berth.network.bridge import host_ifname
    name = f"again{PID}"
    cid = berth("run", "-d", "--name", name, IMAGE, "sleep", "60").stdout.strip()
    try:
        bridge = json.loads(berth("network", "inspect", "bridge").stdout)[0]
        veth = host_ifname(cid, bridge["Id"])
        assert veth in _links()
        # Stop and start at once: the new pair takes the name of the old one, which may
        # still be in the namespace the kernel is destroying.
        for _ in range(3):
            berth("stop", "-t", "0", name)
            berth("start", name)
            assert "eth0" in berth("exec", name, "ip", "-o", "-4", "addr").stdout
        assert veth in _links()
        berth("rm", "-f", name)
        # The kernel destroys the namespace, and the pair with it, asynchronously: poll.
        assert _settled(lambda: veth in _links(), False) is False
    finally:
        berth("rm", "-f", name, check=False)
    assert _leftovers(berth) == []


def test_reconcile_keeps_the_network_of_a_container_about_to_start(berth):
    # `run` in the foreground: the container reads as created, unlocked, until its attach
    # starts it. Another command's reconcile in that window must not take its network.
    import io

    from berth.cli.main import Context
    from berth.cli.containers import _service
    from berth.engine.runopts import parse_run_flags

    ctx = Context(berth.root)
    svc = _service(ctx)
    opts, image, command = parse_run_flags(["--rm", IMAGE, "sh", "-c",
                                            "ip -4 -o addr show eth0"])
    cid = svc.create(opts, image, command)["id"]
    try:
        svc.start(cid, detached=False)
        leases = svc.networks.ipam.leases()
        svc.reconcile()
        assert svc.networks.ipam.leases() == leases
        out = io.BytesIO()
        assert svc.attach(cid, stdout=out, stderr=out, start=True) == 0
        ip = [lease[1] for lease in leases if lease[2] == cid][0]
        assert f"inet {ip}/" in out.getvalue().decode()
    finally:
        svc.remove(cid, force=True)
        ctx.images().close()
