#!/usr/bin/env bash
# Rebuilds the prebuilt addons shipped in prebuilds/ (linux-x64 and linux-arm64, glibc) and records
# the hash of the C source they were built from; a unit test fails when native/ changes without them.
# Needs g++, make, python3 and Debian's cross compiler: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf prebuilds
# N-API: one binary per platform serves every Node version from 20 on; the libc tag keeps musl
# systems (Alpine) off these glibc builds, so they build from source instead.
npx prebuildify --napi --strip --tag-libc
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ PREBUILD_STRIP_BIN=aarch64-linux-gnu-strip \
  npx prebuildify --napi --strip --tag-libc --arch arm64
node scripts/native-source-hash.mjs >prebuilds/SOURCE.sha256
# Leave the host's own build in place for development (prebuildify builds into build/ too).
npx node-gyp rebuild >/dev/null
find prebuilds -type f | sort
