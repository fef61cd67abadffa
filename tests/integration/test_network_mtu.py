"""Bridge networks have a 64 KiB MTU: traffic leaving the host through a 1500-byte link
still works (MSS clamping for TCP, path MTU discovery for the rest).

The "uplink" is a veth pair of MTU 1500 to a network namespace this test makes, with an
HTTP server in it; a container on the default bridge uploads and downloads a few MB through
it and pings it with packets larger than 1500 bytes."""

import json
import os
import socket
import subprocess
import time

import pytest

from tests.integration.berthcli import IMAGE, needs_berth_oci
from tests.integration.test_networks_cli import _leftovers

pytestmark = needs_berth_oci

PID = os.getpid()
NS = f"bmtu{PID}"
HOST_END, NS_END = f"bmh{PID % 100000}", f"bmn{PID % 100000}"
NET = f"10.214.{PID % 250}"
HOST_IP, SERVER_IP = f"{NET}.1", f"{NET}.2"
PORT = 18080
SIZE = 3_000_000
SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        n = int(self.path.strip("/"))
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        self.wfile.write(b"x" * n)
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        got = 0
        while got < n:
            chunk = self.rfile.read(min(65536, n - got))
            if not chunk:
                break
            got += len(chunk)
        body = f"got {got}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""

# ICMP echos of 8000 bytes with DF until the kernel refuses one (EMSGSIZE): then print the
# path MTU it learnt from the ICMP error (IP_MTU_DISCOVER=10, IP_PMTUDISC_DO=2, IP_MTU=14).
DF_PROBE = r"""
import errno, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setsockopt(socket.IPPROTO_IP, 10, 2)
s.connect((sys.argv[1], 0))
for i in range(100):
    try:
        s.send(bytes([8, 0, 0, 0, 0, 1, 0, i]) + b"p" * 8000)
    except OSError as err:
        if err.errno == errno.EMSGSIZE:
            print(s.getsockopt(socket.IPPROTO_IP, 14))
            break
        raise
    time.sleep(0.05)
"""


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def uplink():
    """A server behind a 1500-byte link: netns NS, veth HOST_END <-> NS_END."""
    sh("ip", "netns", "add", NS)
    server = None
    try:
        sh("ip", "link", "add", HOST_END, "mtu", "1500", "type", "veth", "peer", "name",
           NS_END, "mtu", "1500", "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_END)
        sh("ip", "link", "set", HOST_END, "up")
        sh("ip", "-n", NS, "addr", "add", f"{SERVER_IP}/30", "dev", NS_END)
        sh("ip", "-n", NS, "link", "set", NS_END, "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", NS, "/usr/bin/python3", "-c",
                                   SERVER, SERVER_IP, str(PORT)])
        for _ in range(100):  # until it listens
            try:
                socket.create_connection((SERVER_IP, PORT), timeout=2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", HOST_END], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def test_large_transfers_and_pings_leave_through_a_small_mtu(berth, uplink):
    name = f"mtu{PID}"
    cid = berth("run", "-d", "--name", name, IMAGE, "sleep", "120").stdout.strip()
    try:
        inside = berth("exec", name, "cat", "/sys/class/net/eth0/mtu").stdout.strip()
        assert inside == "65535"
        bridge = json.loads(berth("network", "inspect", "bridge").stdout)[0]
        assert bridge["Options"]["com.docker.network.driver.mtu"] == "65535"
        up = berth("exec", name, "sh", "-c",
                   f"dd if=/dev/zero bs=1000 count={SIZE // 1000} 2>/dev/null | tr '\\000' x "
                   f"> /tmp/up && wget -qO- --post-file /tmp/up "
                   f"http://{SERVER_IP}:{PORT}/").stdout
        assert up == f"got {SIZE}"
        down = berth("exec", name, "sh", "-c",
                     f"wget -qO- http://{SERVER_IP}:{PORT}/{SIZE} | wc -c").stdout
        assert down.strip() == str(SIZE)
        # Pings larger than the uplink are answered (fragmented on the way).
        ping = berth("exec", name, "ping", "-c", "3", "-s", "8000", SERVER_IP, check=False)
        assert ping.returncode == 0, ping.stdout
        # With DF set (busybox's ping does not set it), the host's "fragmentation needed"
        # reaches the container, which learns the path's MTU.
        probe = subprocess.run(["nsenter", f"--net={berth.root}/netns/{cid}", "/usr/bin/python3",
                                "-c", DF_PROBE, SERVER_IP], capture_output=True, text=True)
        assert probe.stdout.strip() == "1500", probe.stderr
        from berth.network.firewall import table_name
        rules = subprocess.run(["nft", "list", "chain", "inet", table_name(berth.root),
                                "forward"], capture_output=True, text=True).stdout
        assert "tcp option maxseg size set rt mtu" in rules
    finally:
        berth("rm", "-f", name, check=False)
    assert _leftovers(berth) == []
