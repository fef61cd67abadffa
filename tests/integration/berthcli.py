"""The `berth` command run as a subprocess against a private root, for the CLI tests.

``Berth(root)("run", ...)`` runs ``python3 -m berth.cli --root ROOT ...`` and raises on a
non-zero exit unless check=False. ``berth_with_busybox`` makes a root holding the local
busybox rootfs imported as IMAGE, yields its Berth, and afterwards removes every container
and checks that no mount below the root is left. ``wait_for(predicate)`` polls; ``until`` polls
or fails.
"""

import os
import subprocess
import sys
import tarfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "busybox:test"
LAUNCHER = "/usr/local/bin/berth"
RUNTIME = "/usr/local/bin/berth-oci"

# The CLI tests run containers with the installed berth-oci (the engine's default runtime).
needs_berth_oci = pytest.mark.skipif(not os.access(RUNTIME, os.X_OK),
                                     reason="berth-oci is not installed (make install-bin)")


def cli_argv():
    """How the tests run `berth`: the installed launcher when it is this tree's (`make
    test` installs it), so calls go through its warm fork server as a user's do; else the
    package's __main__ on this interpreter."""
    try:
        with open(LAUNCHER) as f:
            if repr(os.path.join(REPO, "src")) in f.read():
                return [LAUNCHER]
    except OSError:
        pass
    return [sys.executable, "-m", "berth.cli"]


class Berth:
    def __init__(self, root):
        self.root = str(root)
        self.env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"))

    def argv(self, *args):
        return [*cli_argv(), "--root", self.root, *args]

    def __call__(self, *args, check=True, input=None, timeout=120):
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env,
                              input=input, timeout=timeout, stdin=None if input else
                              subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc


def wait_for(predicate, timeout=30):
    """Poll ``predicate`` every 0.1 s until it returns something true; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def until(what, check, deadline=60):
    """Poll ``check`` until it returns something true and return it; fail naming ``what``
    after ``deadline`` seconds."""
    value = wait_for(check, timeout=deadline)
    if not value:
        raise AssertionError(f"gave up waiting for {what}")
    return value


def berth_with_busybox(busybox_rootfs, tmp_path_factory, changes=('CMD ["sh"]',)):
    root = tmp_path_factory.mktemp("berth-root")
    b = Berth(root)
    tar = root / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        for name in sorted(os.listdir(busybox_rootfs)):
            t.add(os.path.join(busybox_rootfs, name), arcname=name)
    args = []
    for change in changes:
        args += ["--change", change]
    b("import", *args, str(tar), IMAGE)
    yield b
    for cid in b("ps", "-aq", check=False).stdout.split():
        b("rm", "-f", "-v", cid, check=False)
    b("network", "prune", "-f", check=False)  # the default bridge stays up until then
    assert not [line for line in open("/proc/self/mountinfo") if str(root) in line]
