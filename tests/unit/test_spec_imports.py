"""The start-up cost rule: modules on berth-oci's path import none of the slow stdlib modules.

Each module is imported in a fresh interpreter (-I -S: no site, no user paths, as berth-oci
starts) with -X importtime, whose report lists every module the import pulled in.
"""

import os
import subprocess
import sys

import pytest

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

SLOW = {"re", "enum", "json", "typing", "dataclasses", "signal", "socket", "argparse",
        "subprocess", "logging", "pathlib", "inspect", "collections"}

HOT_MODULES = ["berth.errors", "berth.spec.runtime", "berth.spec.validate", "berth.sys.linux"]


def imported_by(module):
    code = f"import sys; sys.path.insert(0, {SRC!r}); import {module}"
    done = subprocess.run([PYTHON, "-I", "-S", "-X", "importtime", "-c", code],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    names.discard("imported package")  # the report's header line
    return names


@pytest.mark.parametrize("module", HOT_MODULES)
def test_hot_module_imports_nothing_slow(module):
    names = imported_by(module)
    assert module in names
    # A package counts through its submodules too: "json.decoder" means json was imported.
    slow = sorted(n for n in names if n.split(".")[0] in SLOW)
    assert not slow, f"{module} pulls in {slow}"
