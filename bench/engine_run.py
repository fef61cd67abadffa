"""`run --rm IMAGE true` and detached runs: berth against docker and podman, one run.

The same busybox image (imported from build/rootfs/busybox) in each engine's own storage;
every engine with `--network none` (what networking adds is bench/net.py's subject).
Interleaved, N rounds; then the memory per running container with all the detached ones up: the PSS of what watches them (berth's zygote, which runs every monitor as
a thread; podman's conmons; docker's containerd shims) over their number.

usage: engine_run.py [-n N] [--detached M] [--only berth,docker,podman] [--no-write]
"""

import argparse
import os
import platform
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
BERTH = ["/usr/local/bin/berth"]
SECTION = "## Engine run — "


def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _processes(match):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm", "rb") as f:
                comm = f.read().strip()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if match(comm, cmd):
            out.append(int(name))
    return out


def peer_monitors(engine):
    """conmon (podman) or containerd's shims (docker) of this peer's containers."""
    mark = engine.dir.encode()
    shims = (b"conmon", b"containerd-shim", b"containerd-shim-runc-v2")
    return _processes(lambda comm, cmd: comm in shims and mark in cmd)


def timed(argv, env=None):
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - t


class Berth:
    name = "berth"

    def __init__(self, work, tar):
        self.root = os.path.join(work, "berth")
        self.cmd = BERTH + ["--root", self.root]
        subprocess.run(self.cmd + ["import", tar, "busybox:bench"], check=True,
                       stdout=subprocess.DEVNULL)

    def run_rm(self):
        return timed(self.cmd + ["run", "--rm", "--network", "none", "busybox:bench", "true"])

    def run_d(self):
        return timed(self.cmd + ["run", "-d", "--network", "none", "busybox:bench", "sleep",
                                 "1000"])

    def monitors(self):
        """The processes that watch this root's containers: its zygote (every monitor is a
        thread of it) and the zygote's warm berth-oci (`berth-oci _serve`), counted too."""
        return _processes(lambda comm, cmd: (b"berth.engine.zygote" in cmd or
                                             b"_serve\0" in cmd) and self.root.encode() in cmd)

    def clean(self):
        ids = subprocess.run(self.cmd + ["ps", "-aq"], capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run(self.cmd + ["rm", "-f", *ids], stdout=subprocess.DEVNULL)

    def close(self):
        self.clean()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--detached", type=int, default=50)
    ap.add_argument("--settle", type=int, default=15,
                    help="seconds before the second memory reading")
    ap.add_argument("--only", default="berth,docker,podman")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    opts = ap.parse_args(argv)
    wanted = [w for w in opts.only.split(",") if w]
    work = tempfile.mkdtemp(prefix="engine-bench-", dir="/var/tmp")
    tar = os.path.join(work, "busybox.tar")
    with tarfile.open(tar, "w") as t:
        for name in sorted(os.listdir(ROOTFS)):
            t.add(os.path.join(ROOTFS, name), arcname=name)
    engines = {}
    try:
        if "berth" in wanted:
            engines["berth"] = Berth(work, tar)
        from tests.integration.peers import Dockerd, Podman
        for name, cls in (("docker", Dockerd), ("podman", Podman)):
            if name in wanted and shutil.which(name if name != "docker" else "dockerd"):
                e = cls()
                e.start()
                e.import_image(tar, "busybox:bench")
                engines[name] = e
        rm_times = {k: [] for k in engines}
        for _ in range(opts.n):
            for name, e in engines.items():
                if name == "berth":
                    rm_times[name].append(e.run_rm())
                else:
                    t = time.perf_counter()
                    e("run", "--rm", "--network", "none", "busybox:bench", "true",
                      timeout=120)
                    rm_times[name].append(time.perf_counter() - t)
        d_times = {k: [] for k in engines}
        for _ in range(opts.detached):
            for name, e in engines.items():
                if name == "berth":
                    d_times[name].append(e.run_d())
                else:
                    t = time.perf_counter()
                    e("run", "-d", "--network", "none", "busybox:bench", "sleep", "1000",
                      timeout=120)
                    d_times[name].append(time.perf_counter() - t)
        # Memory per running container: the PSS of every process that watches this
        # engine's containers (berth's zygote; podman's conmons; docker's shims), divided by
        # the containers running (the --detached ones).
        mem = {}
        settled = {}
        for when, into in ((0, mem), (opts.settle, settled)):
            time.sleep(when)
            for name, e in engines.items():
                pids = e.monitors() if name == "berth" else peer_monitors(e)
                if pids:
                    into[name] = sum(pss(p) for p in pids) / opts.detached
    finally:
        for name, e in engines.items():
            try:
                e.close()
            except Exception:  # noqa: BLE001 - cleanup of a benchmark
                pass
        shutil.rmtree(work, ignore_errors=True)
    rows = ["| engine | run --rm median ms | run -d median ms | monitor PSS per container, "
            "at once | after the settle |",
            "| --- | ---: | ---: | ---: | ---: |"]

    def mb(m):
        return f"{m / 1e6:.2f} MB" if m else "-"

    for name in engines:
        rows.append(f"| {name} | {statistics.median(rm_times[name]) * 1e3:.0f} | "
                    f"{statistics.median(d_times[name]) * 1e3:.0f} | "
                    f"{mb(mem.get(name))} | {mb(settled.get(name))} |")
    body = (f"Machine: {os.cpu_count()} cores, kernel {platform.release()}. busybox imported "
            f"into each engine; all with `--network none`; {opts.n} `run --rm "
            f"true` and {opts.detached} `run -d sleep` each, interleaved; memory with all "
            f"{opts.detached} detached containers running, read at once and {opts.settle} s "
            f"later.\n\n"
            + "\n".join(rows) + "\n")
    print(body)
    if not opts.no_write:
        sys.path.insert(0, HERE)
        from oci_run import write_dated
        write_dated(opts.results, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
