"""The `run` path's shortcuts end to end: the user resolved from the image's layers without
a mount, and a failed create (a name taken) leaving no snapshot directory behind."""

import os

import pytest

from tests.integration.berthcli import IMAGE, berth_with_busybox

pytestmark = pytest.mark.skipif(not os.access("/usr/local/bin/berth-oci", os.X_OK),
                                reason="berth-oci is not installed (make install-bin)")


@pytest.fixture(scope="module")
def berth(busybox_rootfs, tmp_path_factory):
    yield from berth_with_busybox(busybox_rootfs, tmp_path_factory)


def snapshot_dirs(berth):
    base = os.path.join(berth.root, "snapshots", "overlay")
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def test_user_from_the_image_layers(berth):
    out = berth("run", "--rm", "--network", "none", "-u", "nobody", IMAGE, "id").stdout
    assert out.startswith("uid=65534(nobody)")
    missing = berth("run", "--rm", "--network", "none", "-u", "nosuchuser", IMAGE, "id",
                    check=False)
    assert missing.returncode == 125 and "unable to find user nosuchuser" in missing.stderr
    assert not [line for line in open("/proc/self/mountinfo") if berth.root in line]


def test_name_taken_leaves_nothing(berth):
    name = f"taken-{os.getpid()}"
    cid = berth("create", "--name", name, "--network", "none", IMAGE, "true").stdout.strip()
    before = snapshot_dirs(berth)
    dup = berth("create", "--name", name, "--network", "none", IMAGE, "true", check=False)
    assert dup.returncode == 125 and "is already in use" in dup.stderr
    assert snapshot_dirs(berth) == before
    assert sorted(os.listdir(os.path.join(berth.root, "containers"))) == [cid]
    berth("rm", cid)
