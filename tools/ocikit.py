"""Bundles and the berth-oci command line, shared by the tests, the demo and the benches.

One place builds the config.json they all use (berth.spec.defaults.default_spec() with
a few changes) and one place decides which berth-oci to run.
"""
import json
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALLED_BERTH_OCI = "/usr/local/bin/berth-oci"


def default_config():
    """A fresh copy of berth-oci's default config.json (berth.spec.defaults)."""
    src = os.path.join(REPO, "src")
    if src not in sys.path:
        sys.path.append(src)
    from berth.spec.defaults import default_spec
    return default_spec()


def make_bundle(dest, rootfs, args=("true",), readonly=True, mutate=None, **overrides):
    """Write DEST/config.json for ROOTFS and return DEST.

    readonly=True points root.path at ROOTFS itself (shared, mounted read-only);
    readonly=False gives the bundle a private copy (cp -a) at DEST/rootfs.
    overrides set top-level config keys; mutate(config) may change anything else.
    """
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    rootfs = os.path.abspath(rootfs)
    config = default_config()
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    if readonly:
        root_path = rootfs
    else:
        root_path = os.path.join(dest, "rootfs")
        if not os.path.exists(root_path):
            subprocess.run(["cp", "-a", rootfs, root_path], check=True)
    config["root"] = {"path": root_path, "readonly": bool(readonly)}
    config.update(overrides)
    if mutate is not None:
        mutate(config)
    tmp = os.path.join(dest, "config.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, os.path.join(dest, "config.json"))
    return dest


def berth_oci_command():
    """(argv prefix, env) that runs berth-oci.

    $BERTH_OCI (a command line) wins; then the installed launcher; then the source tree
    through Debian's python with PYTHONPATH=src.
    """
    env = dict(os.environ)
    if os.environ.get("BERTH_OCI"):
        return shlex.split(os.environ["BERTH_OCI"]), env
    if os.access(INSTALLED_BERTH_OCI, os.X_OK):
        return [INSTALLED_BERTH_OCI], env
    src = os.path.join(REPO, "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return ["/usr/bin/python3", "-m", "berth.runtime"], env


def main(argv):
    """tools/bundle.py DEST ROOTFS [ARG...]: write a bundle running ARGs (default: sh)."""
    if len(argv) < 2:
        print("usage: bundle.py DEST ROOTFS [ARG...]", file=sys.stderr)
        return 2
    make_bundle(argv[0], argv[1], args=argv[2:] or ("sh",))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
