"""make demo: run one busybox container with berth-oci and show what it sees, then the same
busybox as an image: imported, run with `berth run`, its web server started detached and
its page fetched from another container (through the host's network namespace, until
networks and names come with the networking issue), then everything removed.

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
    if engine_demo(argv[0], work) != 0:
        return 1
    print("demo: ok")
    return 0


def engine_demo(rootfs, work):
    import tarfile

    berth = shutil.which("berth") or "/usr/local/bin/berth"
    root = os.path.join(work, "berth-root")
    tar = os.path.join(work, "busybox.tar")
    with tarfile.open(tar, "w") as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, name), arcname=name)

    def step(*args, capture=False):
        cmd = [berth, "--root", root, *args]
        print("$ berth " + " ".join(args), flush=True)
        return subprocess.run(cmd, check=True, text=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else None)

    try:
        step("import", "--change", 'CMD ["sh"]', tar, "busybox:demo")
        step("images")
        step("run", "--rm", "busybox:demo", "echo", "hello from berth run")
        # A web server and a client, both in the host's network namespace for now.
        port = "18080"
        step("run", "-d", "--name", "web", "--network", "host", "busybox:demo", "sh", "-c",
             f"mkdir -p /tmp/www && echo 'hello from the web container' > "
             f"/tmp/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/www")
        out = ""
        for _ in range(50):
            res = subprocess.run([berth, "--root", root, "run", "--rm", "--network", "host",
                                  "busybox:demo", "wget", "-qO-",
                                  f"http://127.0.0.1:{port}/"], text=True,
                                 stdin=subprocess.DEVNULL, capture_output=True)
            out = res.stdout
            if res.returncode == 0:
                break
        print(f"$ berth run --rm --network host busybox:demo wget -qO- http://127.0.0.1:{port}/")
        print(out, end="")
        step("ps")
        if "hello from the web container" not in out:
            print("demo: the client did not get the page", file=sys.stderr)
            return 1
        return 0
    finally:
        subprocess.run([berth, "--root", root, "rm", "-f", "web"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
