"""berth-oci as podman's OCI runtime (podman --runtime): the runc drop-in, end to end.

One private podman (its own root, runroot, tmpdir and cgroup parent; see peers.py) serves
the class, with a busybox image imported from the test rootfs. conmon drives berth-oci with
create --bundle --pid-file, start, exec --process --detach --pid-file, kill, delete --force.
Containers run with --network none so nothing is made on the host's network.
"""
import pytest

from tests.integration import peers

pytestmark = peers.needs("podman", "conmon")


class TestPodman(peers.DropInSuite):
    IMAGE = "localhost/busybox:test"
    REPORTS_OOM_KILLED = False

    @pytest.fixture(scope="class")
    def engine(self, busybox_rootfs):
        yield from peers.serve(peers.Podman(), busybox_rootfs, self.IMAGE)
