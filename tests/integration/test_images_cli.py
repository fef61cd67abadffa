"""berth's image commands against a real registry (Debian's docker-registry on loopback)."""

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.integration.berthcli import cli_argv
from tests.integration.registry import Proxy, needs_registry, serve

pytestmark = [needs_registry,
              pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- images made here

def _tar(entries):
    """A layer tar from (name, bytes | None for a dir | ("link", target))."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            elif isinstance(data, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = data[1]
                t.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                t.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _rootfs_tar(rootfs):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, name), arcname=name)
    return raw.getvalue()


def make_layout(out, layers, *, arch="amd64", cmd=("sh",), created="2026-11-01T00:00:00Z"):
    """An OCI layout with one image made of ``layers`` (uncompressed tars, gzipped here)."""
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
            f.write(data)
        return "sha256:" + d

    descs, diffs = [], []
    for tar in layers:
        gz = gzip.compress(tar, 1, mtime=0)
        diffs.append("sha256:" + hashlib.sha256(tar).hexdigest())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": put(gz), "size": len(gz)})
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": created,
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin:/usr/bin"],
                   "Labels": {"made.by": "test"}},
        "rootfs": {"type": "layers", "diff_ids": diffs},
        "history": [{"created": created, "created_by": f"layer {i}"}
                    for i in range(len(layers))]}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": descs}).encode()
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": put(manifest), "size": len(manifest),
             "platform": {"architecture": arch, "os": "linux"}}
    return mdesc, "sha256:" + hashlib.sha256(config).hexdigest()


def write_index(out, manifests, tag="latest"):
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            dict(m, annotations={"org.opencontainers.image.ref.name": tag})
            for m in manifests]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def skopeo_push(layout, dest, *, all_platforms=False, creds=None):
    argv = ["skopeo", "copy", "--dest-tls-verify=false"]
    if all_platforms:
        argv.append("--all")
    if creds:
        argv += ["--dest-creds", creds]
    subprocess.run(argv + [f"oci:{layout}:latest", f"docker://{dest}"], check=True,
                   capture_output=True, timeout=120)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def registry():
    yield from serve()


@pytest.fixture(scope="module")
def basic_registry():
    yield from serve("htpasswd")


@pytest.fixture(scope="module")
def seeded(registry, busybox_rootfs, tmp_path_factory):
    """busybox (one layer) and a three-layer image with whiteouts, in the registry."""
    base = tmp_path_factory.mktemp("layouts")
    bb = str(base / "busybox")
    mdesc, config = make_layout(bb, [_rootfs_tar(str(busybox_rootfs))])
    write_index(bb, [mdesc])
    skopeo_push(bb, f"{registry.domain}/library/busybox:latest")
    multi = str(base / "multi")
    layers = [
        _tar([("etc", None), ("etc/a", b"one"), ("etc/b", b"two"), ("opt", None),
              ("opt/x", b"x")]),
        _tar([("etc", None), ("etc/.wh.a", b""), ("opt", None), ("opt/.wh..wh..opq", b""),
              ("opt/y", b"y")]),
        _tar([("etc", None), ("etc/c", b"three"), ("link", ("sym", "etc/c"))]),
    ]
    m2, config2 = make_layout(multi, layers)
    write_index(multi, [m2])
    skopeo_push(multi, f"{registry.domain}/test/multi:v1")
    return {"busybox": config, "multi": config2, "busybox_manifest": mdesc["digest"],
            "domain": registry.domain}


class Berth:
    def __init__(self, root, home):
        self.root = str(root)
        self.env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                        PYTHONPATH=os.path.join(REPO, "src"))

    def argv(self, *args):
        return [*cli_argv(), "--root", self.root, *args]

    def __call__(self, *args, check=True, input=None, timeout=120):
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc


@pytest.fixture
def berth(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Berth(tmp_path / "root", home)


# ---------------------------------------------------------------- tests

def test_pull_images_inspect_history_tag_rmi(berth, seeded):
    domain = seeded["domain"]
    out = berth("pull", f"{domain}/library/busybox").stdout
    assert "Using default tag: latest" in out
    assert f"Digest: {seeded['busybox_manifest']}" in out
    assert out.strip().splitlines()[-1] == f"{domain}/library/busybox:latest"
    listing = berth("images").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == [f"{domain}/library/busybox", "latest",
                                      seeded["busybox"][7:19]]
    assert berth("images", "-q").stdout.split() == [seeded["busybox"][7:19]]
    assert berth("images", "--no-trunc", "-q").stdout.split() == [seeded["busybox"]]
    assert seeded["busybox_manifest"] in berth("images", "--digests").stdout
    fmt = berth("images", "--format", "{{.Repository}}|{{.Tag}}").stdout.strip()
    assert fmt == f"{domain}/library/busybox|latest"
    info = json.loads(berth("inspect", f"{domain}/library/busybox").stdout)[0]
    assert info["Id"] == seeded["busybox"]
    assert info["RepoDigests"] == [f"{domain}/library/busybox@{seeded['busybox_manifest']}"]
    assert info["Config"]["Cmd"] == ["sh"] and info["Os"] == "linux"
    berth("tag", f"{domain}/library/busybox", "mine:1")
    assert berth("inspect", "--format", "{{json .RepoTags}}", "mine:1").stdout.strip() == \
        json.dumps([f"{domain}/library/busybox:latest", "mine:1"], separators=(",", ":"))
    history = berth("history", "mine:1").stdout.splitlines()
    assert history[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    # rmi of one of two names untags; of the last deletes.
    assert berth("rmi", "mine:1").stdout.strip() == "Untagged: mine:1"
    out = berth("rmi", f"{domain}/library/busybox").stdout
    assert f"Deleted: {seeded['busybox']}" in out
    assert berth("images", "-q").stdout.strip() == ""
    assert berth("system", "check").returncode == 0


def test_multi_layer_image_unpacks_with_whiteouts(berth, seeded, tmp_path):
    berth("pull", f"{seeded['domain']}/test/multi:v1")
    sys.path.insert(0, os.path.join(REPO, "src"))
    from berth.images.service import ImageService, chain_ids
    from berth.snapshots import mount_all, unmount

    svc = ImageService(berth.root)
    try:
        image = svc.get(f"{seeded['domain']}/test/multi:v1")
        snap = svc.snapshotter()
        key = "view-test"
        mounts = snap.view(key, chain_ids(image.diff_ids)[-1])
        target = tmp_path / "mnt"
        target.mkdir()
        mount_all(mounts, str(target))
        try:
            assert sorted(os.listdir(target / "etc")) == ["b", "c"]
            assert os.listdir(target / "opt") == ["y"]
            assert os.readlink(target / "link") == "etc/c"
        finally:
            unmount(str(target))
            snap.remove(key)
    finally:
        svc.close()


def test_pull_by_digest_and_errors(berth, seeded):
    domain = seeded["domain"]
    out = berth("pull", f"{domain}/library/busybox@{seeded['busybox_manifest']}").stdout
    assert out.strip().splitlines()[-1] == f"{domain}/library/busybox@{seeded['busybox_manifest']}"
    missing = berth("pull", f"{domain}/library/nothing:here", check=False)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "unknown" in missing.stderr
    bad = berth("pull", "Not/A:valid:ref", check=False)
    assert bad.returncode == 1 and "invalid reference format" in bad.stderr
    nosuch = berth("rmi", "no-such-image", check=False)
    assert nosuch.returncode == 1 and "No such image: no-such-image" in nosuch.stderr
    assert berth("system", "check").returncode == 0


def test_push_skips_and_mounts(berth, seeded):
    domain = seeded["domain"]
    berth("pull", f"{domain}/library/busybox")
    berth("tag", f"{domain}/library/busybox", f"{domain}/copies/box:v2")
    out = berth("push", f"{domain}/copies/box:v2").stdout
    assert "Mounted from library/busybox" in out
    assert out.strip().endswith(f"v2: digest: {seeded['busybox_manifest']} size: "
                                + out.strip().rsplit(" ", 1)[-1])
    again = berth("push", f"{domain}/copies/box:v2").stdout
    assert "Layer already exists" in again
    # The pushed copy pulls back into an empty store with the same id.
    berth("rmi", "-f", seeded["busybox"])
    berth("pull", f"{domain}/copies/box:v2")
    assert berth("images", "--no-trunc", "-q").stdout.split() == [seeded["busybox"]]


def test_multi_platform_index_selects_the_host(berth, registry, tmp_path):
    layout = str(tmp_path / "mp")
    amd, amd_id = make_layout(layout, [_tar([("amd", b"1")])], arch="amd64")
    arm, arm_id = make_layout(layout, [_tar([("arm", b"2")])], arch="arm64")
    write_index(layout, [amd, arm])
    # An OCI image index of two platforms, pushed as is.
    index = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [amd, arm]}).encode()
    d = hashlib.sha256(index).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(index)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + d,
            "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
            f)
    skopeo_push(layout, f"{registry.domain}/mp/img:latest", all_platforms=True)
    berth("pull", f"{registry.domain}/mp/img")
    assert berth("images", "--no-trunc", "-q").stdout.split() == [amd_id]
    berth("rmi", f"{registry.domain}/mp/img")
    berth("pull", "--platform", "linux/arm64", f"{registry.domain}/mp/img")
    assert berth("images", "--no-trunc", "-q").stdout.split() == [arm_id]
    wrong = berth("pull", "--platform", "linux/s390x", f"{registry.domain}/mp/img", check=False)
    assert "no matching manifest for linux/s390x" in wrong.stderr


def test_login_basic_auth_pull_and_logout(berth, basic_registry, busybox_rootfs, tmp_path):
    domain = basic_registry.domain
    layout = str(tmp_path / "l")
    m, image_id = make_layout(layout, [_tar([("f", b"data")])])
    write_index(layout, [m])
    skopeo_push(layout, f"{domain}/private/img:1", creds="alice:alice-pw")
    denied = berth("pull", f"{domain}/private/img:1", check=False)
    assert denied.returncode == 1 and "unauthorized" in denied.stderr
    bad = berth("login", "-u", "alice", "-p", "wrong", domain, check=False)
    assert bad.returncode == 1
    assert berth("login", "-u", "alice", "--password-stdin", domain,
                 input="alice-pw\n").stdout.strip() == "Login Succeeded"
    berth("pull", f"{domain}/private/img:1")
    assert berth("images", "--no-trunc", "-q").stdout.split() == [image_id]
    berth("logout", domain)
    assert berth("pull", f"{domain}/private/img:1", check=False).returncode == 1


def test_wrong_bytes_are_refused_and_the_store_stays_clean(berth, registry, tmp_path):
    layout = str(tmp_path / "w")
    m, _ = make_layout(layout, [os.urandom(1) + _tar([("big", os.urandom(300_000))])])
    write_index(layout, [m])
    skopeo_push(layout, f"{registry.domain}/corrupt/img:1")
    proxy = Proxy(registry.port, corrupt=True)
    try:
        out = berth("pull", f"{proxy.domain}/corrupt/img:1", check=False)
    finally:
        proxy.close()
    assert out.returncode == 1
    assert "digest mismatch" in out.stderr or "unpack" in out.stderr.lower() or \
        "layer" in out.stderr
    assert berth("images", "-q").stdout.strip() == ""
    assert berth("system", "check").returncode == 0


def test_kill_during_pull_leaves_a_clean_store_and_the_next_pull_completes(berth, registry,
                                                                           tmp_path):
    layout = str(tmp_path / "k")
    layers = [_tar([(f"f{i}", os.urandom(3_000_000))]) for i in range(4)]
    m, image_id = make_layout(layout, layers)
    write_index(layout, [m])
    skopeo_push(layout, f"{registry.domain}/kill/img:1")
    for delay in (0.15, 0.3):
        proc = subprocess.Popen(berth.argv("pull", "-q", f"{registry.domain}/kill/img:1"),
                                env=berth.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = berth("system", "check", check=False)
        # A killed pull may leave partial ingests; blobs and records must all be sound.
        assert all("ingest" in line or "no problems" in line
                   for line in check.stdout.splitlines()), check.stdout
    berth("pull", f"{registry.domain}/kill/img:1")
    assert berth("images", "--no-trunc", "-q").stdout.split() == [image_id]
    assert berth("system", "check").returncode == 0
    # The killed pulls' staging directories and leases went with the next pull.
    staging = os.path.join(berth.root, "snapshots", "staging")
    assert not os.path.isdir(staging) or os.listdir(staging) == []
    from berth.metadata.db import Metadata
    meta = Metadata(berth.root)
    try:
        assert meta.list_leases() == []
    finally:
        meta.close()


@pytest.fixture(scope="module")
def token_registry():
    yield from serve("token")


def test_token_auth_login_pull_and_denied_push(berth, token_registry, tmp_path):
    registry, tokens = token_registry
    domain = registry.domain
    layout = str(tmp_path / "t")
    m, image_id = make_layout(layout, [_tar([("t", b"token")])])
    write_index(layout, [m])
    skopeo_push(layout, f"{domain}/tok/img:1", creds="alice:alice-pw")
    assert berth("pull", f"{domain}/tok/img:1", check=False).returncode == 1
    berth("login", "-u", "bob", "-p", "bob-pw", domain)
    berth("pull", f"{domain}/tok/img:1")
    assert berth("images", "--no-trunc", "-q").stdout.split() == [image_id]
    # bob may pull but not push: the registry's token service says so.
    berth("tag", f"{domain}/tok/img:1", f"{domain}/tok/copy:1")
    denied = berth("push", f"{domain}/tok/copy:1", check=False)
    assert denied.returncode == 1 and "denied" in denied.stderr
    assert any("push" in scope for _, scopes in tokens.requests for scope in scopes)


def test_a_full_disk_is_a_clear_error_and_leaves_the_store_sound(seeded, tmp_path):
    from berth.sys import linux

    small = tmp_path / "small"
    small.mkdir()
    linux.mount("tmpfs", str(small), "tmpfs", 0, "size=400k")
    try:
        b = Berth(small / "root", tmp_path)
        out = b("pull", f"{seeded['domain']}/library/busybox", check=False)
        assert out.returncode == 1
        assert "No space left on device" in out.stderr
        assert out.stderr.count("\n") == 1
        assert b("images", "-q").stdout.strip() == ""
        check = b("system", "check", check=False)
        assert all("ingest" in line or "no problems" in line
                   for line in check.stdout.splitlines()), check.stdout
    finally:
        linux.umount(str(small), 2)
