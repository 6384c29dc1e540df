#!/usr/bin/env bash
# Builds the whole project with AddressSanitizer and UndefinedBehaviorSanitizer into
# $BUILD_DIR (default: build-asan) and runs the test suite under them.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-asan}
cmake -S . -B "$build" -G Ninja -DVITC_WERROR=ON -DVITC_SANITIZE=ON >/dev/null
ninja -C "$build" -j "$(nproc)"
# OpenMPI keeps some allocations until exit; everything else must be leak-free.
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 1200
