#!/usr/bin/env bash
# Installs the npm dependencies when they are missing or older than package-lock.json, and
# checks that Bun (the npm package `bun`, which runs Ferry, its tests and its bench) works.
set -euo pipefail
cd "$(dirname "$0")/.."
# node_modules as a link is shared with another checkout: `npm ci` would empty the directory it
# points to under the other checkout's feet, so it is left to that checkout to install.
if [ -L node_modules ]; then
  if [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: node_modules is a link to a shared install: not reinstalled (run npm ci where it lives if package-lock.json changed)"
  fi
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
want=$(node -p 'require("./package.json").devDependencies.bun')
have=$(node_modules/.bin/bun --version 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  # The package puts the binary for this platform in place in its install script; an npm that
  # skips install scripts leaves a placeholder.
  echo "setup: putting Bun $want in place"
  (cd node_modules/bun && node install.js >/dev/null)
  have=$(node_modules/.bin/bun --version 2>/dev/null || true)
  [ "$have" = "$want" ] || { echo "setup: Bun $want does not run here (got '${have:-nothing}'); Ferry needs it: see https://bun.sh for the supported CPUs" >&2; exit 1; }
fi
