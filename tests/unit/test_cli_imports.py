"""The `berth` command's start-up rule: the container commands' path imports none of the slow
stdlib modules (issue 4, point 8: `run --rm` end to end is counted in milliseconds).

A fresh `/usr/bin/python3 -IS` (as the launcher starts) imports the CLI and the modules that
`run`, `create`, `start`, `ps`, `rm`, `logs` and `stop` use, then does what needs no root:
parses run's flags, opens the services on an empty root, lists containers and looks an image
up by name. Rare paths (pull, build, --format templates, exec, top) may import what they like.
"""

import os
import subprocess
import sys

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

SLOW = {"json", "re", "enum", "subprocess", "hashlib", "_hashlib", "shutil", "socket",
        "locale", "typing", "dataclasses", "contextlib", "threading", "tempfile", "secrets",
        "random", "ipaddress", "argparse", "logging", "pathlib", "inspect", "calendar",
        "_strptime", "datetime", "sqlite3"}

RUN_PATH = ["berth.cli.main", "berth.cli.containers", "berth.cli.progress",
            "berth.engine.containers", "berth.engine.runopts", "berth.engine.spec",
            "berth.engine.volumes", "berth.engine.store", "berth.engine.monitor",
            "berth.engine.zygote", "berth.engine.logs", "berth.engine.reconcile",
            "berth.engine.health", "berth.events", "berth.images.service",
            "berth.images.reference", "berth.snapshots", "berth.snapshots.overlay",
            "berth.snapshots.copy", "berth.metadata.db", "berth.sys.spawn", "berth.sys.linux",
            "berth.sys.execute"]

WORK = """
import os, sys
sys.path.insert(0, {src!r})
root = {root!r}
os.makedirs(root + "/snapshots")
with open(root + "/snapshots/driver", "w") as f:  # as a root that has run once says
    f.write("overlay\\n")
for name in {modules!r}:
    __import__(name)
from berth.cli.main import Context
from berth.cli.containers import _service, status_text
from berth.engine.runopts import parse_run_flags
from berth.errors import NotFound
opts, image, command = parse_run_flags(["--rm", "-e", "A=1", "--name", "x", "busybox",
                                        "true"])
ctx = Context(root)
svc = _service(ctx)
assert svc.list(all_containers=True) == []
try:
    svc.images.get("busybox")
except NotFound:
    pass
svc.images.snapshotter()
assert status_text({{"Status": "exited", "ExitCode": 1,
                    "FinishedAt": "2024-01-01T00:00:00.5Z"}}).startswith("Exited (1)")
ctx.images().close()
print(" ".join(sorted(sys.modules)))
"""


def test_run_path_imports_nothing_slow(tmp_path):
    code = WORK.format(src=SRC, root=str(tmp_path / "root"), modules=RUN_PATH)
    done = subprocess.run([PYTHON, "-I", "-S", "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    names = set(done.stdout.split())
    # A package counts through its submodules too: "json.decoder" means json was imported.
    slow = sorted(n for n in names if n.split(".")[0] in SLOW)
    assert not slow, f"the run path pulls in {slow}"
