#!/usr/bin/env bash
# Installs what the benchmark needs on top of `npm run setup`: a C compiler (static libc) for
# test/fixtures/memhog.c, zstd for the bare runc archives, GNU time for peak RSS figures, and
# Debian's podman as the peer engine.
# Idempotent: when everything is present it changes nothing and returns at once.
# Usage: bench/setup.sh [--no-podman]
# Prints one line per thing it installed; exits non-zero only when a required tool is missing.
# A failed podman installation is reported on stderr (exit 0): the bench then explains and
# benchmarks Ferry and bare runc only.
set -uo pipefail

want_podman=1
[ "${1:-}" = "--no-podman" ] && want_podman=0

export DEBIAN_FRONTEND=noninteractive
updated=0
apt_install() {
  if [ "$updated" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || ls /usr/lib/*/libc.a >/dev/null 2>&1 || missing+=(libc6-dev)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v tar >/dev/null 2>&1 || missing+=(tar)
[ -x /usr/bin/time ] || missing+=(time) # GNU time: peak RSS of the CLIs and of ferry migrate
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench setup: installing ${missing[*]}"
  apt_install "${missing[@]}" || { echo "bench setup: could not install ${missing[*]}" >&2; exit 1; }
fi

if [ "$want_podman" = 1 ] && ! command -v podman >/dev/null 2>&1; then
  echo "bench setup: installing podman (Debian's, used only as a peer for the benchmark)"
  # runc is already installed by `npm run setup`, so apt keeps it (crun does not work here).
  if ! apt_install podman; then
    echo "bench setup: could not install podman with apt-get" >&2
  fi
fi
exit 0
