"""What networking costs: berth against docker and podman, one interleaved run.

(a) `run --rm IMAGE true` on each engine's default bridge network against `--network none`
    (the difference is what networking adds to a container's start and stop);
(b) TCP throughput between two containers on one bridge network (iperf3 server in one,
    client in the other) against iperf3 over the host's loopback.

One image for every engine: the busybox rootfs plus the host's /usr/bin/iperf3 and the
libraries `ldd` lists, imported into each engine's own storage. berth uses its own root;
docker is a private dockerd whose default bridge is on (no iptables: nothing of the host's
firewall is touched, and two containers on one bridge need none); podman has private
storage and its default network (CNI here).

usage: net.py [-n N] [--rounds R] [--seconds S] [--only berth,docker,podman]
              [--berth CMD] [--no-write]
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
ROOTFS = os.path.join(REPO, "build", "rootfs", "busybox")
SECTION = "## Networking — "
IMAGE = "bnet:bench"
IPERF = "/usr/bin/iperf3"


def image_tar(dest):
    """The busybox rootfs with iperf3 and its shared libraries at their host paths."""
    out = subprocess.run(["ldd", IPERF], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0]
        if path.startswith("/"):
            libs.append(path)
    with tarfile.open(dest, "w") as t:
        for name in sorted(os.listdir(ROOTFS)):
            t.add(os.path.join(ROOTFS, name), arcname=name)
        for path in [IPERF, *libs]:
            real = os.path.realpath(path)
            info = t.gettarinfo(real, arcname=path.lstrip("/"))
            parent = os.path.dirname(path.lstrip("/"))
            # busybox's rootfs may lack the library directories: make them (and a lib64
            # for the loader) as plain directories.
            for i in range(1, parent.count("/") + 2):
                d = "/".join(parent.split("/")[:i])
                try:
                    t.getmember(d)
                except KeyError:
                    dirinfo = tarfile.TarInfo(d)
                    dirinfo.type, dirinfo.mode = tarfile.DIRTYPE, 0o755
                    t.addfile(dirinfo)
            with open(real, "rb") as f:
                t.addfile(info, f)
    return dest


def timed(argv):
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def _ip(inspect_json):
    nets = json.loads(inspect_json)[0]["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in nets.values() if n.get("IPAddress"))


def _gbits(iperf_json):
    data = json.loads(iperf_json)
    return data["end"]["sum_received"]["bits_per_second"] / 1e9


class Engine:
    """An engine's command line as a list, and what the benchmark asks of it."""

    name = ""
    network = []      # flags for the default bridge network

    def __init__(self, cmd):
        self.cmd = cmd

    def __call__(self, *args, check=True):
        proc = subprocess.run(self.cmd + list(args), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def run_rm(self, network):
        flags = ["--network", "none"] if network == "none" else self.network
        return timed(self.cmd + ["run", "--rm", *self.extra, *flags, IMAGE, "true"])

    extra = []

    def throughput(self, seconds):
        name = f"iperf-{self.name}-{os.getpid()}"
        self("run", "-d", "--name", name, *self.extra, *self.network, IMAGE, IPERF, "-s")
        try:
            ip = _ip(self("inspect", name).stdout)
            proc = self("run", "--rm", *self.extra, *self.network, IMAGE, "sh", "-c",
                        f"for i in $(seq 50); do {IPERF} -J -c {ip} -t {seconds} && exit 0;"
                        f" sleep 0.1; done; exit 1")
            return _gbits(proc.stdout)
        finally:
            self("rm", "-f", name, check=False)


class Berth(Engine):
    name = "berth"

    def __init__(self, work, tar, cmd):
        self.root = os.path.join(work, "berth")
        super().__init__(cmd + ["--root", self.root])
        self("import", tar, IMAGE)

    def close(self):
        ids = self("ps", "-aq", check=False).stdout.split()
        if ids:
            self("rm", "-f", *ids, check=False)
        self("network", "prune", "-f", check=False)
        from berth.network import dns
        dns.stop_server(self.root)


class Peer(Engine):
    def __init__(self, peer, tar):
        self.peer = peer
        super().__init__([])
        peer.start()
        peer.import_image(tar, IMAGE)

    def __call__(self, *args, check=True):
        return self.peer(*args, check=check, timeout=300)

    def run_rm(self, network):
        flags = ["--network", "none"] if network == "none" else self.network
        t = time.perf_counter()
        self("run", "--rm", *self.extra, *flags, IMAGE, "true")
        return time.perf_counter() - t

    def close(self):
        return self.peer.close()


def docker_peer():
    from tests.integration.peers import Dockerd

    class NetDockerd(Dockerd):
        """The test peer with its default bridge on (a bridge of its own name and subnet)
        and still no iptables."""

        def start(self, timeout=30):
            self.bridge_name = "bd" + self.tag[-10:].replace("_", "")
            for args in (["link", "add", self.bridge_name, "type", "bridge"],
                         ["addr", "add", "10.213.250.1/24", "dev", self.bridge_name],
                         ["link", "set", self.bridge_name, "up"]):
                subprocess.run(["ip", *args], check=True)
            return super().start(timeout)

        def network_args(self):
            return ["--iptables=false", "--ip-masq=false", f"--bridge={self.bridge_name}"]

        def close(self):
            problems = super().close()
            subprocess.run(["ip", "link", "del", self.bridge_name], check=False,
                           stderr=subprocess.DEVNULL)
            return problems

    return NetDockerd()


def podman_peer():
    from tests.integration.peers import Podman
    return Podman()


def loopback(seconds, port):
    server = subprocess.Popen([IPERF, "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            proc = subprocess.run([IPERF, "-J", "-c", "127.0.0.1", "-p", str(port), "-t",
                                   str(seconds)], capture_output=True, text=True)
            if proc.returncode == 0 and "sum_received" in proc.stdout:
                return _gbits(proc.stdout)
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 over loopback: {proc.stdout[-300:]}")
    finally:
        server.kill()
        server.wait()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="run --rm rounds")
    ap.add_argument("--rounds", type=int, default=3, help="iperf3 rounds")
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t")
    ap.add_argument("--only", default="berth,docker,podman")
    ap.add_argument("--berth", default="/usr/local/bin/berth",
                    help="the berth command line (e.g. to measure a worktree)")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    opts = ap.parse_args(argv)
    if not shutil.which(IPERF):
        print("net.py: iperf3 is not installed (make deps)", file=sys.stderr)
        return 2
    wanted = [w for w in opts.only.split(",") if w]
    work = tempfile.mkdtemp(prefix="net-bench-", dir="/var/tmp")
    tar = image_tar(os.path.join(work, "bnet.tar"))
    engines = {}
    try:
        if "berth" in wanted:
            sys.path.insert(0, os.path.join(REPO, "src"))
            engines["berth"] = Berth(work, tar, shlex.split(opts.berth))
            engines["berth"].network = []
        if "docker" in wanted and shutil.which("dockerd"):
            engines["docker"] = Peer(docker_peer(), tar)
            engines["docker"].name = "docker"
            engines["docker"].network = ["--network", "bridge"]
        if "podman" in wanted and shutil.which("podman"):
            p = engines["podman"] = Peer(podman_peer(), tar)
            p.name = "podman"
            p.network = ["--network", "bridge"]
            p.extra = ["--cgroup-parent", p.peer.cgroup_parent]
        for e in engines.values():  # warm-up: first uses make bridges, servers
            e.run_rm("bridge")
            e.run_rm("none")
        times = {(k, n): [] for k in engines for n in ("none", "bridge")}
        for _ in range(opts.n):
            for name, e in engines.items():
                for net in ("none", "bridge"):
                    times[name, net].append(e.run_rm(net))
        gbits = {k: [] for k in ["loopback", *engines]}
        for i in range(opts.rounds):
            gbits["loopback"].append(loopback(opts.seconds, 15201 + i))
            for name, e in engines.items():
                gbits[name].append(e.throughput(opts.seconds))
    finally:
        for e in engines.values():
            try:
                e.close()
            except Exception as err:  # noqa: BLE001 - cleanup of a benchmark
                print(f"net.py: cleanup of {e.name}: {err}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    loop = med(gbits["loopback"])
    rows = ["| engine | run --rm, none (ms) | run --rm, bridge (ms) | added (ms) | "
            "container to container (Gbit/s) | of loopback |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in engines:
        none, bridge = med(times[name, "none"]) * 1e3, med(times[name, "bridge"]) * 1e3
        g = med(gbits[name])
        rows.append(f"| {name} | {none:.0f} | {bridge:.0f} | {bridge - none:+.0f} | "
                    f"{g:.1f} | {g / loop:.0%} |")
    rows.append(f"| host loopback | | | | {loop:.1f} | 100% |")
    body = (f"Machine: {os.cpu_count()} cores, kernel {platform.release()}. Medians of "
            f"{opts.n} interleaved `run --rm IMAGE true` per engine and network, and of "
            f"{opts.rounds} iperf3 runs of {opts.seconds} s each (one TCP stream, "
            f"received rate). docker: default bridge, runc; podman: default network "
            f"(CNI), berth-oci; berth: default bridge, berth-oci.\n\n" + "\n".join(rows) + "\n")
    print(body)
    if not opts.no_write:
        sys.path.insert(0, HERE)
        from oci_run import write_dated
        write_dated(opts.results, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
