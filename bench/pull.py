"""Pull throughput: berth against skopeo, podman and docker, from one loopback registry.

The image (built once into build/bench/pull-layout, an OCI layout): a Debian minbase
(debootstrap from the apt mirror), a layer of many small files and a layer of a few big
ones. Each tool pulls it into empty storage, interleaved, N rounds; MB/s is the compressed
image size over the wall time. Also: unpacking the same blobs with `tar -xzf` against
berth's layer applier.

usage: pull.py [-n ROUNDS] [--only berth,skopeo,podman,docker] [--no-write]
"""

import argparse
import gzip
import hashlib
import io
import json
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
sys.path.insert(0, os.path.join(REPO, "src"))

BUILD = os.path.join(REPO, "build", "bench")
LAYOUT = os.path.join(BUILD, "pull-layout")
MINBASE = os.path.join(BUILD, "minbase")
SECTION = "## Pull throughput — "
BERTH = [os.path.join(REPO, ".venv", "bin", "python"), "-m", "berth.cli"]


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


# ---------------------------------------------------------------- the image

def build_minbase():
    if os.path.isdir(MINBASE):
        return
    tmp = MINBASE + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sh(["debootstrap", "--variant=minbase", "bookworm", tmp, "http://deb.debian.org/debian"],
       stdout=subprocess.DEVNULL)
    os.rename(tmp, MINBASE)


def _layer_from_dir(path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(path)):
            t.add(os.path.join(path, name), arcname=name)
    return raw.getvalue()


def _layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def build_layout():
    if os.path.exists(os.path.join(LAYOUT, "index.json")):
        return
    build_minbase()
    import random

    rng = random.Random(42)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(5000)]

    def text(n):
        out = bytearray()
        while len(out) < n:
            out += rng.choice(words) + b" "
        return bytes(out[:n])

    small = _layer([(f"small/{i // 500}/f{i}.txt", text(rng.randint(500, 4000)))
                    for i in range(20000)])
    big = _layer([(f"big/blob{i}.bin", os.urandom(48 << 20)) for i in range(3)] +
                 [("big/text.txt", text(40 << 20))])
    layers = [_layer_from_dir(MINBASE), small, big]
    tmp = LAYOUT + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "blobs", "sha256"))

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(tmp, "blobs", "sha256", d), "wb") as f:
            f.write(data)
        return "sha256:" + d

    descs, diffs = [], []
    for tar in layers:
        gz = gzip.compress(tar, 6, mtime=0)
        diffs.append("sha256:" + hashlib.sha256(tar).hexdigest())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": put(gz), "size": len(gz)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "created": "2026-11-22T00:00:00Z",
                         "config": {"Cmd": ["bash"]},
                         "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)},
                           "layers": descs}).encode()
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
    with open(os.path.join(tmp, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    os.rename(tmp, LAYOUT)


def layout_blobs():
    with open(os.path.join(LAYOUT, "index.json")) as f:
        mdigest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(LAYOUT, "blobs", "sha256", mdigest[7:])) as f:
        manifest = json.load(f)
    return manifest["layers"], sum(d["size"] for d in manifest["layers"])


# ---------------------------------------------------------------- the tools

def pull_berth(ref, work):
    root = os.path.join(work, "berth-root")
    t = time.perf_counter()
    # This checkout's berth, whatever the venv's editable install points at.
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))
    sh(BERTH + ["--root", root, "pull", "-q", ref], stdout=subprocess.DEVNULL, env=env)
    dt = time.perf_counter() - t
    shutil.rmtree(root)
    return dt


def pull_skopeo(ref, work):
    dest = os.path.join(work, "skopeo-dir")
    t = time.perf_counter()
    sh(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}"],
       stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    shutil.rmtree(dest)
    return dt


def pull_podman(ref, work):
    from tests.integration.peers import Podman

    engine = Podman()
    try:
        t = time.perf_counter()
        engine("pull", "--tls-verify=false", "-q", ref, timeout=600)
        return time.perf_counter() - t
    finally:
        engine.close()


class _Docker:
    def __init__(self):
        from tests.integration.peers import Dockerd
        self.engine = Dockerd()
        self.engine.start()

    def pull(self, ref, work):
        t = time.perf_counter()
        self.engine("pull", "-q", ref, timeout=600)
        dt = time.perf_counter() - t
        self.engine("rmi", "-f", ref)
        self.engine("image", "prune", "-af")
        return dt

    def close(self):
        self.engine.close()


def unpack_tar(blobs, work):
    dest = os.path.join(work, "tar-x")
    os.makedirs(dest)
    t = time.perf_counter()
    for d in blobs:
        sh(["tar", "-xzf", os.path.join(LAYOUT, "blobs", "sha256", d["digest"][7:]), "-C",
            dest])
    dt = time.perf_counter() - t
    shutil.rmtree(dest)
    return dt


def unpack_berth(blobs, work):
    from berth.snapshots.apply import apply_layer

    dt = 0.0
    for i, d in enumerate(blobs):
        dest = os.path.join(work, f"berth-x{i}")
        os.makedirs(dest)
        with open(os.path.join(LAYOUT, "blobs", "sha256", d["digest"][7:]), "rb") as f:
            t = time.perf_counter()
            apply_layer(dest, f, d["mediaType"], overlay=True)
            dt += time.perf_counter() - t
    for i in range(len(blobs)):
        shutil.rmtree(os.path.join(work, f"berth-x{i}"))
    return dt


# ---------------------------------------------------------------- registry

def start_registry(work):
    from tests.integration.registry import Registry
    return Registry()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--only", default="berth,skopeo,podman,docker")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    opts = ap.parse_args(argv)
    wanted = [w for w in opts.only.split(",") if w]
    build_layout()
    blobs, total = layout_blobs()
    mb = total / 1e6
    work = tempfile.mkdtemp(prefix="pull-bench-", dir="/var/tmp")
    reg = start_registry(work)
    docker = None
    try:
        ref = f"{reg.domain}/bench/big:latest"
        sh(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{LAYOUT}:latest",
            f"docker://{ref}"], stdout=subprocess.DEVNULL)
        tools = {"berth": pull_berth, "skopeo": pull_skopeo, "podman": pull_podman}
        if "docker" in wanted and shutil.which("dockerd"):
            docker = _Docker()
            tools["docker"] = docker.pull
        tools = {k: v for k, v in tools.items() if k in wanted}
        times = {k: [] for k in tools}
        names = list(tools)
        for r in range(opts.n):
            # Each tool's storage is deleted after its run, and on ext4 without a journal
            # a delete slows the next inode allocations nearby for a minute or more: rotate
            # the order so no tool always follows the same one.
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(tools[name](ref, work))
        tar_t = [unpack_tar(blobs, work) for _ in range(opts.n)]
        berth_t = [unpack_berth(blobs, work) for _ in range(opts.n)]
    finally:
        if docker:
            docker.close()
        reg.close()
        shutil.rmtree(work, ignore_errors=True)
    rows = ["| tool | median s | MB/s | vs podman |", "| --- | ---: | ---: | ---: |"]
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        ratio = f"{med['podman'] / t:.2f}x" if "podman" in med else "-"
        rows.append(f"| {name} pull | {t:.2f} | {mb / t:.0f} | {ratio} |")
    ut, ub = statistics.median(tar_t), statistics.median(berth_t)
    rows.append(f"| tar -xzf (unpack only) | {ut:.2f} | {mb / ut:.0f} | - |")
    rows.append(f"| berth apply_layer (unpack only) | {ub:.2f} | {mb / ub:.0f} | - |")
    body = (f"Machine: {os.cpu_count()} cores, kernel {platform.release()}. Image: "
            f"{len(blobs)} gzip layers, {mb:.0f} MB compressed (Debian minbase; 20,000 small "
            f"files; 3x48 MB random + 40 MB text), from docker-registry on 127.0.0.1, "
            f"{opts.n} rounds interleaved (order rotated each round), each into empty storage. skopeo copies to a `dir:` "
            f"(download and verify, no unpacking); berth, podman and docker also unpack.\n\n"
            + "\n".join(rows) + "\n")
    print(body)
    if not opts.no_write:
        sys.path.insert(0, HERE)
        from oci_run import write_dated
        write_dated(opts.results, SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
