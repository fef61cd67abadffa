"""The build tools in tools/: rootfs builder, podman config writer, bundle maker."""
import json
import os
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import MKROOTFS, REPO, Oci, ocikit

SETUP_PEERS = os.path.join(REPO, "tools", "setup-peers.sh")
needs_busybox = pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK),
                                   reason="busybox-static not installed (make deps)")


@needs_busybox
def test_mkrootfs_builds_applets_and_accounts(tmp_path):
    dest = tmp_path / "rootfs"
    subprocess.run([MKROOTFS, str(dest)], check=True)
    assert os.readlink(dest / "bin" / "sh") == "busybox"
    assert os.readlink(dest / "bin" / "true") == "busybox"
    for d in ("dev", "proc", "sys", "tmp", "etc", "root", "var/tmp", "run"):
        assert (dest / d).is_dir(), d
    passwd = (dest / "etc" / "passwd").read_text()
    assert passwd.startswith("root:x:0:0:")
    assert "nobody:x:65534:65534:" in passwd
    assert (dest / "etc" / "group").is_file()
    assert (dest / "etc" / "hostname").is_file()
    assert not (tmp_path / "rootfs.tmp").exists()


@needs_busybox
def test_mkrootfs_is_idempotent_and_replaces_a_stale_tree(tmp_path):
    dest = tmp_path / "rootfs"
    subprocess.run([MKROOTFS, str(dest)], check=True)
    marker = dest / "tmp" / "marker"
    marker.write_text("x")
    subprocess.run([MKROOTFS, str(dest)], check=True)
    assert marker.exists(), "a second run with the same busybox must not rebuild"
    (dest / ".berth-rootfs").write_text("stale\n")
    subprocess.run([MKROOTFS, str(dest)], check=True)
    assert not marker.exists(), "a stamp from another busybox must rebuild the tree"
    assert not list(tmp_path.glob("rootfs.*"))


def test_mkrootfs_rejects_missing_busybox(tmp_path):
    proc = subprocess.run([MKROOTFS, str(tmp_path / "r")], capture_output=True, text=True,
                          env={**os.environ, "BUSYBOX": str(tmp_path / "nope")})
    assert proc.returncode != 0
    assert "busybox-static" in proc.stderr


@pytest.fixture
def fake_podman_path(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "podman").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "podman").chmod(0o755)
    return f"{bindir}:{os.environ['PATH']}"


def _setup_peers(conf, path):
    return subprocess.run([SETUP_PEERS], env={**os.environ, "PATH": path,
                                              "CONTAINERS_CONF_PATH": str(conf)},
                          capture_output=True, text=True, check=True)


def test_setup_peers_keeps_user_keys_and_adds_missing(tmp_path, fake_podman_path):
    conf = tmp_path / "containers.conf"
    conf.write_text('# mine\n[engine]\nruntime = "crun"\ncgroup_manager = "cgroupfs"\n')
    _setup_peers(conf, fake_podman_path)
    parsed = tomllib.loads(conf.read_text())
    assert parsed["engine"] == {"runtime": "crun", "cgroup_manager": "cgroupfs"}
    assert conf.read_text().startswith("# mine\n")
    before = conf.read_text()
    assert "already configured" in _setup_peers(conf, fake_podman_path).stdout
    assert conf.read_text() == before


def test_setup_peers_writes_a_new_file(tmp_path, fake_podman_path):
    conf = tmp_path / "etc" / "containers.conf"
    _setup_peers(conf, fake_podman_path)
    assert tomllib.loads(conf.read_text())["engine"]["runtime"] == "runc"


def test_make_bundle_shares_rootfs_read_only_by_default(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    bundle = ocikit.make_bundle(tmp_path / "b", rootfs, args=["/bin/echo", "hi"],
                                hostname="h1", mutate=lambda c: c["process"].update(cwd="/tmp"))
    config = json.loads(open(os.path.join(bundle, "config.json")).read())
    assert config["root"] == {"path": str(rootfs), "readonly": True}
    assert config["process"]["args"] == ["/bin/echo", "hi"]
    assert config["process"]["terminal"] is False
    assert config["process"]["cwd"] == "/tmp"
    assert config["hostname"] == "h1"


def test_make_bundle_private_copy_when_writable(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("x\n")
    bundle = ocikit.make_bundle(tmp_path / "b", rootfs, readonly=False)
    config = json.loads(open(os.path.join(bundle, "config.json")).read())
    assert config["root"] == {"path": os.path.join(bundle, "rootfs"), "readonly": False}
    assert open(os.path.join(bundle, "rootfs", "etc", "hostname")).read() == "x\n"


def test_oci_runner_passes_root_and_reports_output(tmp_path, monkeypatch):
    fake = tmp_path / "fake-oci"
    fake.write_text('#!/bin/sh\necho "args: $*"\necho oops >&2\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setenv("BERTH_OCI", str(fake))
    runner = Oci(str(tmp_path / "state"))
    proc = runner("state", "c1", check=False)
    assert proc.stdout == f"args: --root {tmp_path / 'state'} state c1\n"
    with pytest.raises(subprocess.CalledProcessError) as info:
        runner("state", "c1")
    assert "oops" in str(info.value)


def test_busybox_fixture_and_make_bundle_fixture(make_bundle, busybox_rootfs):
    bundle = make_bundle(args=["/bin/true"])
    config = json.loads((bundle / "config.json").read_text())
    assert config["root"]["path"] == busybox_rootfs
    assert os.path.islink(os.path.join(busybox_rootfs, "bin", "true"))
    assert shutil.which("busybox", path=os.path.join(busybox_rootfs, "bin"))


FAKE_RUNTIME = """#!/bin/sh
# A stand-in berth-oci: containers are directories under --root.
root=$2; shift 2
case "$1" in
list) ls "$root" ;;
delete) [ -n "$STUCK" ] || rmdir "$root/$3" ;;
esac
"""


@pytest.mark.parametrize("stuck", [False, True])
def test_cleanup_oci_root_deletes_leftovers(tmp_path, monkeypatch, stuck):
    from tests.conftest import cleanup_oci_root
    fake = tmp_path / "fake-oci"
    fake.write_text(FAKE_RUNTIME)
    fake.chmod(0o755)
    monkeypatch.setenv("BERTH_OCI", str(fake))
    if stuck:
        monkeypatch.setenv("STUCK", "1")
    root = tmp_path / "state"
    (root / "c1").mkdir(parents=True)
    (root / "c2").mkdir()
    problems = cleanup_oci_root(str(root))
    if stuck:
        assert problems == ["still listed after delete --force: ['c1', 'c2']"]
        assert root.exists()
    else:
        assert problems == []
        assert not root.exists()
