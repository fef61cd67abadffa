"""The network flags end to end: --network container:, -P, port ranges, UDP ports, `berth
port`, --dns* and --add-host files, connect --alias --ip, disconnect, several networks."""

import json
import os
import socket
import subprocess

import pytest

from berth.network.firewall import table_name
from tests.integration.berthcli import IMAGE, berth_with_busybox, needs_berth_oci
from tests.integration.test_networks_cli import SERVE, _fetch, _free_port, _leftovers

pytestmark = needs_berth_oci

PID = os.getpid()
EXPOSED = "busybox:exposed"
# Retries while the server starts; exits 1 if it never answers.
WGET = "for i in $(seq 30); do wget -qO- http://{} && exit 0; sleep 0.2; done; exit 1"


@pytest.fixture(scope="module")
def berth(busybox_rootfs, tmp_path_factory):
    gen = berth_with_busybox(busybox_rootfs, tmp_path_factory)
    b = next(gen)
    tar = os.path.join(b.root, "busybox.tar")
    b("import", "--change", "EXPOSE 80 8081/udp", "--change", 'CMD ["sh"]', tar, EXPOSED)
    yield b
    for cid in b("ps", "-aq", check=False).stdout.split():
        b("rm", "-f", cid, check=False)
    for name in b("network", "ls", "-q", "--filter", "type=custom", check=False).stdout.split():
        b("network", "rm", name, check=False)
    try:
        next(gen)
    except StopIteration:
        pass
    assert _leftovers(b, idle_default=False) == []


@pytest.fixture
def cleanup(berth):
    """Names of containers and networks a test makes; removed afterwards."""
    made = {"containers": [], "networks": []}
    yield made
    for name in made["containers"]:
        berth("rm", "-f", name, check=False)
    for name in made["networks"]:
        berth("network", "rm", name, check=False)
    assert _leftovers(berth) == []


def _networks(berth, name):
    return json.loads(berth("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]


def test_network_container_shares_the_namespace(berth, cleanup):
    srv = f"share{PID}"
    cleanup["containers"].append(srv)
    berth("run", "-d", "--name", srv, IMAGE, "sh", "-c", SERVE, "shared")
    # The joiner sees the server on its own loopback and has the same address.
    out = berth("run", "--rm", "--network", f"container:{srv}", IMAGE, "sh", "-c",
                "(" + WGET.format("127.0.0.1") + "); ip -o -4 addr show eth0").stdout
    assert "page-shared" in out
    ip = next(iter(_networks(berth, srv).values()))["IPAddress"]
    assert f"inet {ip}/" in out
    # A stopped container has no namespace to join: one clear line, nothing made.
    berth("stop", "-t", "0", srv)
    before = berth("ps", "-aq").stdout
    bad = berth("run", "--rm", "--network", f"container:{srv}", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "cannot join network of a non running container" \
        in bad.stderr
    assert berth("ps", "-aq").stdout == before


def test_publish_all_exposed_ports_and_berth_port(berth, cleanup):
    name = f"pall{PID}"
    cleanup["containers"].append(name)
    berth("run", "-d", "--name", name, "-P", EXPOSED, "sh", "-c", SERVE, "all")
    lines = sorted(berth("port", name).stdout.splitlines())
    assert [line.split(" -> ")[0] for line in lines] == ["80/tcp", "8081/udp"]
    tcp = int(lines[0].rsplit(":", 1)[1])
    assert lines[0] == f"80/tcp -> 0.0.0.0:{tcp}"
    assert _fetch(f"http://127.0.0.1:{tcp}/") == "page-all\n"
    assert berth("port", name, "80").stdout == f"0.0.0.0:{tcp}\n"
    assert berth("port", name, "80/tcp").stdout == f"0.0.0.0:{tcp}\n"
    missing = berth("port", name, "9999", check=False)
    assert missing.returncode != 0 and "No public port '9999/tcp' published" in missing.stderr
    udp = int(lines[1].rsplit(":", 1)[1])
    shown = berth("ps", "--filter", f"name={name}", "--format", "{{.Ports}}").stdout
    assert shown == f"0.0.0.0:{tcp}->80/tcp, 0.0.0.0:{udp}->8081/udp\n"


def test_port_ranges(berth, cleanup):
    name, picked = f"range{PID}", f"rpick{PID}"
    cleanup["containers"] += [name, picked]
    low = _free_range(2)
    berth("run", "-d", "--name", name, "-p", f"127.0.0.1:{low}-{low + 1}:80-81", IMAGE,
          "sh", "-c", "mkdir -p /a /b && echo eighty > /a/index.html && echo e-one > "
          "/b/index.html && httpd -p 81 -h /b && exec httpd -f -p 80 -h /a")
    assert berth("port", name).stdout.splitlines() == [f"80/tcp -> 127.0.0.1:{low}",
                                                       f"81/tcp -> 127.0.0.1:{low + 1}"]
    assert _fetch(f"http://127.0.0.1:{low}/") == "eighty\n"
    assert _fetch(f"http://127.0.0.1:{low + 1}/") == "e-one\n"
    # A host range for one container port: the first free port of it (low is taken).
    berth("run", "-d", "--name", picked, "-p", f"127.0.0.1:{low}-{low + 9}:80", IMAGE,
          "sh", "-c", SERVE, "picked")
    port = int(berth("port", picked, "80").stdout.rsplit(":", 1)[1])
    assert low + 2 <= port <= low + 9
    assert _fetch(f"http://127.0.0.1:{port}/") == "page-picked\n"
    # Ranges of different lengths are refused before anything is made.
    bad = berth("run", "-d", "-p", f"{low}-{low + 2}:80-81", IMAGE, "true", check=False)
    assert bad.returncode != 0
    assert len(berth("ps", "-aq").stdout.split()) == 2


def _free_range(n):
    """The first of ``n`` consecutive free TCP ports on loopback."""
    for _ in range(50):
        base = _free_port()
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


def test_udp_port(berth, cleanup):
    # busybox has no UDP server applet: the mapping is checked in `berth port`, inspect and
    # the rule that translates it.
    name = f"udp{PID}"
    cleanup["containers"].append(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    berth("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5353/udp", IMAGE, "sleep",
          "60")
    assert berth("port", name).stdout == f"5353/udp -> 127.0.0.1:{port}\n"
    ip = next(iter(_networks(berth, name).values()))["IPAddress"]
    table = subprocess.run(["nft", "list", "table", "inet", table_name(berth.root)],
                           capture_output=True, text=True).stdout
    assert f"udp dport {port} dnat ip to {ip}:5353" in table
    berth("stop", "-t", "0", name)
    assert berth("port", name).stdout == ""


def test_dns_flags_and_add_host_files(berth, cleanup):
    net = f"dnsf{PID}"
    cleanup["networks"].append(net)
    berth("network", "create", "--subnet", "10.213.202.0/24", net)
    out = berth("run", "--rm", "--network", net, "--ip", "10.213.202.9", "--hostname", "box",
                "--dns", "10.0.0.53", "--dns", "10.0.0.54", "--dns-search", "a.example",
                "--dns-search", "b.example", "--dns-option", "ndots:2", "--dns-option",
                "timeout:1", "--add-host", "db:10.0.0.9", "--add-host", "cache:10.0.0.10",
                IMAGE, "sh", "-c", "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; "
                "cat /etc/hostname").stdout
    resolv, hosts, hostname = out.split("---\n")
    assert resolv == ("search a.example b.example\nnameserver 10.0.0.53\nnameserver "
                      "10.0.0.54\noptions ndots:2 timeout:1\n")
    assert hosts == ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                     "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                     "ff02::2\tip6-allrouters\n10.0.0.9\tdb\n10.0.0.10\tcache\n"
                     "10.213.202.9\tbox\n")
    assert hostname == "box\n"
    # Without --dns the container asks berth's DNS server on its gateway.
    plain = berth("run", "--rm", "--network", net, IMAGE, "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.213.202.1\n" in plain


def test_connect_alias_ip_disconnect_and_several_networks(berth, cleanup):
    a, c = f"multa{PID}", f"multc{PID}"
    srv = f"multsrv{PID}"
    cleanup["containers"].append(srv)
    cleanup["networks"] += [a, c]
    berth("network", "create", "--subnet", "10.213.203.0/24", a)
    berth("network", "create", "--subnet", "10.213.204.0/24", c)
    # Two networks at run: eth0 on the first, eth1 on the second, reachable from both.
    berth("run", "-d", "--name", srv, "--network", a, "--network", c, IMAGE, "sh", "-c",
          SERVE, "multi")
    nets = _networks(berth, srv)
    assert set(nets) == {a, c}
    addrs = berth("exec", srv, "ip", "-o", "-4", "addr").stdout
    assert "eth0" in addrs and "10.213.203." in addrs and "eth1" in addrs \
        and "10.213.204." in addrs
    for net in (a, c):
        assert berth("run", "--rm", "--network", net, IMAGE, "sh", "-c",
                     WGET.format(srv)).stdout == "page-multi\n"
    # connect --alias --ip on a third network: the address asked for, the alias resolves.
    d = f"multd{PID}"
    cleanup["networks"].append(d)
    berth("network", "create", "--subnet", "10.213.205.0/24", d)
    berth("network", "connect", "--alias", "web", "--ip", "10.213.205.50", d, srv)
    assert _networks(berth, srv)[d]["IPAddress"] == "10.213.205.50"
    assert "inet 10.213.205.50/24" in berth("exec", srv, "ip", "-o", "-4", "addr").stdout
    assert berth("run", "--rm", "--network", d, IMAGE, "sh", "-c",
                 WGET.format("web")).stdout == "page-multi\n"
    taken = berth("network", "connect", "--ip", "10.213.205.50", d, srv, check=False)
    assert taken.returncode != 0 and "already exists in network" in taken.stderr
    # disconnect: the link, the address and the name are gone; the other networks stay.
    berth("network", "disconnect", d, srv)
    assert "10.213.205." not in berth("exec", srv, "ip", "-o", "-4", "addr").stdout
    assert set(_networks(berth, srv)) == {a, c}
    gone = berth("run", "--rm", "--network", d, IMAGE, "nslookup", "web", check=False)
    assert gone.returncode != 0
    assert json.loads(berth("network", "inspect", d).stdout)[0]["Containers"] == {}
    again = berth("network", "disconnect", d, srv, check=False)
    assert again.returncode != 0 and "is not connected to network" in again.stderr
