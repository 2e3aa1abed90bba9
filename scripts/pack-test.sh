#!/usr/bin/env bash
# The published package installs and runs without a compiler: `npm pack`, install the tarball into an
# empty project with only node/npm (and a shell) on PATH, then `npx ublk features` against the real
# driver (in the VM when this kernel has no ublk). Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/ublk-ts-pack.XXXXXX)
trap 'rm -rf "$work"' EXIT
npm pack --silent --pack-destination "$work" >/dev/null
mkdir -p "$work/app/bin"
for b in node npm npx sh bash env; do ln -s "$(command -v "$b")" "$work/app/bin/$b"; done
cd "$work/app"
echo '{ "name": "pack-test", "private": true }' >package.json
# No g++, make or python3 on PATH: a source build would fail, so success means the prebuild loaded.
PATH="$work/app/bin" npm install --no-audit --no-fund --loglevel=error "$work"/ublk-ts-*.tgz
test ! -e node_modules/ublk-ts/build || { echo "pack-test: the addon was built from source" >&2; exit 1; }
check='PATH="$PWD/bin"; for c in cc gcc g++ make python3; do if command -v $c >/dev/null; then echo "pack-test: $c is on PATH" >&2; exit 1; fi; done; npx ublk features'
if [ -e /dev/ublk-control ]; then bash -c "$check"
else node "$OLDPWD/dist/src/vm/cli.js" --timeout=900 "$check"; fi
echo "pack-test: the packed tarball installed without a compiler and ran 'ublk features'"
