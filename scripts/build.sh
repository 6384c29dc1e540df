#!/usr/bin/env bash
# Configures and builds vitc into $BUILD_DIR (default: build) with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DVITC_WERROR=ON "$@" >/dev/null
ninja -C "$build" -j "$jobs"
