#!/usr/bin/env bash
# Makes a small busybox rootfs tarball (Debian's static busybox and its applet links) that
# `ferry import` turns into an image. No registry is needed.
# Usage: scripts/make-busybox-image.sh OUT.tar
set -euo pipefail
out=${1:?usage: make-busybox-image.sh OUT.tar}
bb=$(command -v busybox || true)
[ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q 'dynamically' && bb=
[ -x /bin/busybox ] && bb=${bb:-/bin/busybox}
[ -n "$bb" ] || { echo "busybox-static is not installed: run 'npm run setup'" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,run,var/tmp,data}
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
cp "$bb" "$tmp/bin/busybox"
for applet in $("$tmp/bin/busybox" --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$tmp/etc/group"
: >"$tmp/etc/hosts"; : >"$tmp/etc/resolv.conf"; : >"$tmp/etc/hostname"
# A fixed mtime and owner make the tarball (and so the image ID) the same on every host.
tar --sort=name --mtime='2024-01-01 00:00Z' --owner=0 --group=0 --numeric-owner -C "$tmp" -cf "$out.tmp" .
mv "$out.tmp" "$out"
