"""Integration tests run real containers on the real kernel: every one needs root."""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    skip = pytest.mark.skip(reason="integration tests need root (run `make test` as root)")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def berth(busybox_rootfs, tmp_path_factory):
    """A private berth root holding the busybox image (berthcli.IMAGE), one per test module;
    a module that needs another image or setup defines its own."""
    from tests.integration.berthcli import berth_with_busybox

    yield from berth_with_busybox(busybox_rootfs, tmp_path_factory)
