"""Fixtures shared by tests/unit and tests/integration.

busybox_rootfs  session: build/rootfs/busybox, built once by tools/mkrootfs-busybox.sh
oci_root        a fresh berth-oci --root; containers left in it are force-deleted after
make_bundle     factory: make_bundle(args=["true"], rootfs=None, readonly=True, mutate=None,
                **overrides) -> bundle Path (config.json from tools/ocikit.py)
oci             oci(*args, check=True, input=None, timeout=60) -> CompletedProcess (text):
                runs berth-oci --root <oci_root> *args
container_id    a container ID unique on this machine (cgroups are named after IDs, and
                other test runs may be going on at the same time)
"""
import fcntl
import itertools
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import ocikit  # noqa: E402  (lives in tools/, shared with the demo and the benches)

ROOTFS_DIR = os.path.join(REPO, "build", "rootfs", "busybox")
MKROOTFS = os.path.join(REPO, "tools", "mkrootfs-busybox.sh")


def pytest_collection_modifyitems(config, items):
    """Tests marked `root` skip, with the reason, when not run as root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (run `make test` as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs():
    """Path of the shared busybox rootfs; tests must not write into it."""
    os.makedirs(os.path.dirname(ROOTFS_DIR), exist_ok=True)
    # A lock, so parallel pytest workers do not build the same tree at once.
    with open(ROOTFS_DIR + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([MKROOTFS, ROOTFS_DIR], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building {ROOTFS_DIR} failed: {proc.stderr.strip()}", pytrace=False)
    return ROOTFS_DIR


class OciError(subprocess.CalledProcessError):
    """A berth-oci call that failed; its message carries the output."""

    def __str__(self):
        return (f"{' '.join(map(str, self.cmd))} exited {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


class Oci:
    """Runs berth-oci with --root set to one test's state directory."""

    def __init__(self, root):
        self.root = root
        self.prefix, self.env = ocikit.berth_oci_command()

    def argv(self, *args):
        return [*self.prefix, "--root", self.root, *map(str, args)]

    def __call__(self, *args, check=True, input=None, timeout=60):
        # Output goes to files, not pipes: after `create` or `run -d` the container holds
        # the runtime's stdout and stderr, and a pipe would not reach EOF until it exits.
        argv = self.argv(*args)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                argv, input=None if input is None else input.encode(),
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=out, stderr=err, timeout=timeout, env=self.env)
            out.seek(0)
            err.seek(0)
            proc.stdout = out.read().decode(errors="replace")
            proc.stderr = err.read().decode(errors="replace")
        if check and proc.returncode != 0:
            raise OciError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def container_ids(self):
        """IDs berth-oci lists, plus any state directory it may have left behind."""
        ids = set()
        proc = self("list", "-q", check=False, timeout=30)
        if proc.returncode == 0:
            ids.update(line.strip() for line in proc.stdout.splitlines() if line.strip())
        if os.path.isdir(self.root):
            # "@..." are the runtime's own caches (no container id has an "@").
            ids.update(e.name for e in os.scandir(self.root)
                       if e.is_dir(follow_symlinks=False) and not e.name.startswith("@"))
        return ids


def cleanup_oci_root(root):
    """Force-delete every container under berth-oci --root ROOT; return what went wrong."""
    runner = Oci(root)
    problems = []
    for cid in sorted(runner.container_ids()):
        proc = runner("delete", "--force", cid, check=False, timeout=60)
        if proc.returncode != 0:
            problems.append(f"delete --force {cid}: {proc.stderr.strip()}")
    remaining = runner.container_ids()
    if remaining:
        problems.append(f"still listed after delete --force: {sorted(remaining)}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return problems


@pytest.fixture
def oci_root():
    """A fresh state directory for berth-oci --root; force-deletes leftovers at teardown."""
    # Short and outside tmp_path: the runtime may put unix sockets in it (108-byte limit).
    root = tempfile.mkdtemp(prefix="berth-oci-", dir="/tmp")
    yield root
    problems = cleanup_oci_root(root)
    if problems:
        pytest.fail(f"berth-oci --root {root}: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def oci(oci_root):
    """oci(*args, check=True, input=None, timeout=60) -> CompletedProcess; also .argv(), .root."""
    return Oci(oci_root)


@pytest.fixture
def make_bundle(tmp_path, request):
    """Factory for bundle directories under tmp_path; see tools/ocikit.make_bundle."""
    count = 0

    def make(args=("true",), rootfs=None, readonly=True, mutate=None, **overrides):
        nonlocal count
        if rootfs is None:
            rootfs = request.getfixturevalue("busybox_rootfs")
        dest = tmp_path / ("bundle" if count == 0 else f"bundle-{count}")
        count += 1
        return pathlib.Path(ocikit.make_bundle(dest, rootfs, args=args, readonly=readonly,
                                               mutate=mutate, **overrides))

    return make


_ids = itertools.count(1)


@pytest.fixture
def container_id():
    return f"t{os.getpid()}-{next(_ids)}"
