#!/bin/bash
# Configure podman for this kind of machine, without overriding what a user set:
#  - without CAP_SYS_RESOURCE (this sandbox) root cannot raise its hard rlimits, yet
#    podman asks for nofile=1048576 and nproc=4194304; so containers get
#    default_ulimits = ["nofile=1024:1024", "nproc=N:N"], N = min(hard nproc, pid_max)
#    (podman caps conmon's nproc at pid_max; anything above fails in runc init);
#  - crun 1.8 rejects the hybrid cgroup v1/v2 layout, so the engine uses runc.
# Each key is written only when the file does not already set it.
set -euo pipefail

conf=${CONTAINERS_CONF_PATH:-/etc/containers/containers.conf}

if ! command -v podman >/dev/null 2>&1; then
    echo "setup-peers: podman not installed; skipping $conf"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$conf")" ]; then
    echo "setup-peers: not root; leaving $conf alone"
    exit 0
fi

/usr/bin/python3 - "$conf" <<'PY'
import os
import resource
import sys
import tomllib

CAP_SYS_RESOURCE = 24

path = sys.argv[1]
wanted = {"engine": ("runtime", '"runc"')}

with open("/proc/self/status", encoding="ascii") as f:
    capeff = next(int(l.split()[1], 16) for l in f if l.startswith("CapEff:"))
if not capeff & (1 << CAP_SYS_RESOURCE):
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        pid_max = int(f.read())
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = pid_max if hard == resource.RLIM_INFINITY else min(hard, pid_max)
    wanted["containers"] = ("default_ulimits", f'["nofile=1024:1024", "nproc={nproc}:{nproc}"]')
try:
    with open(path, encoding="utf-8") as f:
        text = f.read()
except FileNotFoundError:
    text = ""
try:
    parsed = tomllib.loads(text)
except tomllib.TOMLDecodeError as err:
    sys.exit(f"setup-peers: {path} is not valid TOML ({err}); fix it by hand")

lines = text.splitlines()
changed = []
for section, (key, value) in wanted.items():
    table = parsed.get(section, {})
    if key in table:
        continue
    entry = f"{key} = {value}"
    header = next((i for i, l in enumerate(lines) if l.strip() == f"[{section}]"), None)
    if header is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [f"[{section}]", entry]
    else:
        lines.insert(header + 1, entry)
    changed.append(f"[{section}] {entry}")

if changed:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".berth-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if os.path.exists(path):
        st = os.stat(path)
        os.chmod(tmp, st.st_mode & 0o7777)
    os.replace(tmp, path)
    print(f"setup-peers: {path}: set " + "; ".join(changed))
else:
    print(f"setup-peers: {path} already configured")
PY
