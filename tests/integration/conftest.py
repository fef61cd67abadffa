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
