#!/bin/bash
# Install the Debian packages berth's build, tests and benches use.
# Idempotent: apt-get runs only when a package is missing.
# Required packages must install; optional ones (peers for drop-in tests) may fail.
set -euo pipefail

# python3-pytest and python3-jsonschema give the venv (--system-site-packages) its test
# dependencies without a download.
required=(busybox-static runc libseccomp2 libseccomp-dev python3-venv python3-pip python3-pytest
          python3-jsonschema iproute2 nftables docker-registry skopeo python3-zstandard zstd
          apache2-utils openssl debootstrap iperf3 containernetworking-plugins)
optional=(podman docker.io)

installed() {
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

missing_of() {
    local p
    for p in "$@"; do
        installed "$p" || echo "$p"
    done
}

mapfile -t need_req < <(missing_of "${required[@]}")
mapfile -t need_opt < <(missing_of "${optional[@]}")

if [ ${#need_req[@]} -eq 0 ] && [ ${#need_opt[@]} -eq 0 ]; then
    echo "deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if [ ${#need_req[@]} -ne 0 ]; then
        echo "deps: missing ${need_req[*]}; run 'make deps' as root" >&2
        exit 1
    fi
    echo "deps: optional ${need_opt[*]} missing (not root, not installing); their tests will skip"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$@" </dev/null
}

echo "deps: apt-get update (missing: ${need_req[*]} ${need_opt[*]})"
apt-get update -q </dev/null

if [ ${#need_req[@]} -ne 0 ]; then
    apt_install "${need_req[@]}"
fi

# One at a time, so one optional package that cannot install does not block the other.
for p in "${need_opt[@]}"; do
    if ! apt_install "$p"; then
        echo "deps: optional package $p did not install; the tests that need it will skip" >&2
        # Leave dpkg consistent for the next apt-get run.
        dpkg --configure -a </dev/null || true
    fi
done
