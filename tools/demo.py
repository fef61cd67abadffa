"""make demo: run one busybox container with berth-oci and show what it sees, then the same
busybox as an image: imported, run with `berth run`, then the networking scenario: a
web server under the alias `nginx` on a user network, its page fetched by a client container
as http://nginx and from the host through a port published on 127.0.0.1, then everything
removed.

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
    """The networking scenario: a web server under the alias `nginx` on a user network,
    a client on that network fetching http://nginx, the same page from the host through a
    published port on 127.0.0.1; then the containers and the network removed."""
    import socket
    import tarfile
    import time
    import urllib.request

    berth = shutil.which("berth") or "/usr/local/bin/berth"
    root = os.path.join(work, "berth-root")
    tar = os.path.join(work, "busybox.tar")
    with tarfile.open(tar, "w") as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, name), arcname=name)
    tag = f"{os.getpid()}"
    net, web = f"demo-net-{tag}", f"demo-web-{tag}"
    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def step(*args, capture=False, check=True):
        cmd = [berth, "--root", root, *args]
        print("$ berth " + " ".join(args), flush=True)
        res = subprocess.run(cmd, check=False, text=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE if capture else None)
        if check and res.returncode != 0:
            raise SystemExit(f"demo: berth {args[0]} exited {res.returncode}")
        return res

    page = "hello from the web container"
    try:
        step("import", "--change", 'CMD ["sh"]', tar, "busybox:demo")
        step("images")
        step("run", "--rm", "busybox:demo", "echo", "hello from berth run")
        step("network", "create", net)
        step("run", "-d", "--name", web, "--network", net, "--network-alias", "nginx",
             "-p", f"127.0.0.1:{port}:80", "busybox:demo", "sh", "-c",
             f"mkdir -p /www && echo '{page}' > /www/index.html && "
             f"exec httpd -f -p 80 -h /www")
        step("ps")
        # httpd listens a moment after the container starts: the client retries.
        res = step("run", "--rm", "--network", net, "busybox:demo", "sh", "-c",
                   "for i in $(seq 50); do wget -qO- http://nginx && exit 0; sleep 0.1; "
                   "done; exit 1", capture=True, check=False)
        print(res.stdout, end="")
        if page not in res.stdout:
            print("demo: the client did not get the page from http://nginx", file=sys.stderr)
            return 1
        url = f"http://127.0.0.1:{port}/"
        print(f"$ wget -qO- {url}    # from the host, through the published port")
        body = ""
        for _ in range(50):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        print(body, end="")
        if page not in body:
            print("demo: the host did not get the page through the published port",
                  file=sys.stderr)
            return 1
        step("port", web)
        return 0
    finally:
        step("rm", "-f", web, check=False, capture=True)
        step("network", "rm", net, check=False, capture=True)
        # The root's DNS server outlives the CLI by design; the demo's root is thrown away.
        sys.path.insert(0, os.path.join(ocikit.REPO, "src"))
        from berth.network import dns
        dns.stop_server(root)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
