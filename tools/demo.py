"""make demo: run one busybox container with berth-oci and show what it sees.

usage: demo.py ROOTFS
"""
import os
import shutil
import subprocess
import sys

import ocikit

SCRIPT = (
    'echo "hello from a berth container"; '
    'echo "hostname: $(hostname)"; '
    'echo "my pid:   $$"; '
    'echo "id:       $(id)"; '
    'echo "root:    " $(ls /)'
)


def main(argv):
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    work = os.path.join(ocikit.REPO, "build", "demo")
    shutil.rmtree(work, ignore_errors=True)
    state = os.path.join(work, "state")
    os.makedirs(state)
    bundle = ocikit.make_bundle(os.path.join(work, "bundle"), argv[0], args=["/bin/sh", "-c", SCRIPT])
    prefix, env = ocikit.berth_oci_command()
    cid = f"berth-demo-{os.getpid()}"
    cmd = [*prefix, "--root", state, "run", "--bundle", bundle, cid]
    print("$ " + " ".join(cmd), flush=True)
    try:
        rc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode
    finally:
        subprocess.run([*prefix, "--root", state, "delete", "--force", cid], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rc != 0:
        print(f"demo: berth-oci run exited {rc}", file=sys.stderr)
        return 1
    print("demo: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
