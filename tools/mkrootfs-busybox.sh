#!/bin/bash
# Build a minimal busybox root filesystem at DEST from Debian's busybox-static.
# Idempotent: an existing DEST built from the same busybox is left alone.
# Atomic: the tree is built in DEST.tmp and renamed into place.
set -euo pipefail

usage() { echo "usage: $0 DEST" >&2; exit 2; }
[ $# -eq 1 ] || usage
dest=${1%/}
[ -n "$dest" ] || usage

busybox=${BUSYBOX:-/bin/busybox}
if [ ! -x "$busybox" ]; then
    echo "mkrootfs-busybox: $busybox not found; install busybox-static (make deps)" >&2
    exit 1
fi
# A dynamically linked busybox would need its libraries inside the rootfs.
if LC_ALL=C ldd "$busybox" 2>&1 | grep -q '=>'; then
    echo "mkrootfs-busybox: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

# The stamp records which busybox built the tree, so an upgrade rebuilds it.
want="$(sha256sum "$busybox" | cut -d' ' -f1)"
stamp="$dest/.berth-rootfs"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$dest")"
mkdir -p "$tmp"
for d in bin sbin usr/bin usr/sbin dev proc sys tmp etc root var/tmp run; do
    mkdir -p "$tmp/$d"
done
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
chmod 0700 "$tmp/root"
cp "$busybox" "$tmp/bin/busybox"
chmod 0755 "$tmp/bin/busybox"

# Every applet becomes a symlink in /bin, so /bin/true, /bin/sh, /bin/cat ... exist;
# PATH-style names (/usr/bin/env, /sbin/init) point at the same binary.
"$busybox" --list-full | while read -r path; do
    name=${path##*/}
    [ "$name" = busybox ] && continue
    [ -e "$tmp/bin/$name" ] || ln -s busybox "$tmp/bin/$name"
    case "$path" in
        bin/*) ;;
        *) [ -e "$tmp/$path" ] || [ -L "$tmp/$path" ] || ln -s /bin/busybox "$tmp/$path" ;;
    esac
done

cat >"$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$tmp/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo berth >"$tmp/etc/hostname"
: >"$tmp/etc/resolv.conf"
: >"$tmp/etc/hosts"
chmod 0644 "$tmp/etc/passwd" "$tmp/etc/group" "$tmp/etc/hostname" "$tmp/etc/resolv.conf" "$tmp/etc/hosts"
echo "$want" >"$tmp/.berth-rootfs"

# Swap in the new tree; an old one is moved aside first so DEST is never half-built.
if [ -e "$dest" ]; then
    old="$dest.old.$$"
    mv "$dest" "$old"
    mv "$tmp" "$dest"
    rm -rf "$old"
else
    mv "$tmp" "$dest"
fi
