#!/usr/bin/env bash
# The README's first command (`npm run demo`): run the looper, checkpoint it, restore it, and
# show that it counts on from where it stopped. Uses Ferry's default root.
set -euo pipefail
cd "$(dirname "$0")/.."
ferry() { ./bin/ferry "$@"; }
step() { printf '\n\033[1m$ ferry %s\033[0m\n' "$*"; }

mkdir -p .cache
[ -f .cache/busybox.tar ] || bash scripts/make-busybox-image.sh .cache/busybox.tar
step import .cache/busybox.tar busybox; ferry import .cache/busybox.tar busybox >/dev/null
ferry rm -f -i looper >/dev/null
step "run -d --name looper busybox sh -c 'i=0; while true; do echo \$i; i=\$(expr \$i + 1); sleep 1; done'"
ferry run -d --name looper busybox sh -c 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'
sleep 3
step logs looper; ferry logs looper
step ps; ferry ps
step container checkpoint looper; ferry container checkpoint looper
step ps -a; ferry ps -a
echo "(waiting 3 s: the looper is frozen on disk and does not count)"; sleep 3
step container restore looper; ferry container restore looper
sleep 2
step logs looper; ferry logs looper
echo
echo "The count went on from where it was checkpointed. Clean up with: ./bin/ferry rm -f looper"
