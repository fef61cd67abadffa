"""The shared fixtures drive a real OCI runtime (runc, the reference) end to end."""
import os
import shutil

import pytest

from tests.conftest import Oci, cleanup_oci_root

RUNC = shutil.which("runc")
pytestmark = pytest.mark.skipif(RUNC is None, reason="runc not installed (make deps)")


@pytest.fixture
def runc(oci_root, monkeypatch):
    monkeypatch.setenv("BERTH_OCI", RUNC)
    return Oci(oci_root)


def test_shared_read_only_rootfs(make_bundle, runc, container_id):
    bundle = make_bundle(args=["/bin/sh", "-c", "cat /etc/hostname; touch /x 2>/dev/null || echo ro"])
    proc = runc("run", "--bundle", bundle, container_id)
    assert proc.stdout == "berth\nro\n"


def test_private_writable_rootfs(make_bundle, runc, busybox_rootfs, container_id):
    bundle = make_bundle(args=["/bin/sh", "-c", "echo hi > /x && cat /x"], readonly=False,
                         mutate=lambda c: c.update(hostname="fx"))
    proc = runc("run", "--bundle", bundle, container_id)
    assert proc.stdout == "hi\n"
    assert (bundle / "rootfs" / "x").read_text() == "hi\n"
    assert not os.path.exists(os.path.join(busybox_rootfs, "x"))


def test_cleanup_removes_a_created_container(make_bundle, runc, oci_root, container_id):
    bundle = make_bundle(args=["/bin/true"])
    runc("create", "--bundle", bundle, container_id)
    assert '"status": "created"' in runc("state", container_id).stdout
    assert cleanup_oci_root(oci_root) == []
    assert not os.path.exists(oci_root)
