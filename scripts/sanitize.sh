#!/usr/bin/env bash
# Builds the whole project with clang-19, AddressSanitizer and UndefinedBehaviorSanitizer into
# $BUILD_DIR (default: build-asan) and runs the test suite under them. test.sh builds with g++, so
# CI compiles everything, tests included, with both compilers at the cost of one extra build.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-asan}
CC=clang-19 CXX=clang++-19 cmake -S . -B "$build" -G Ninja -DVITC_WERROR=ON -DVITC_SANITIZE=ON \
  >/dev/null
ninja -C "$build" -j "$(nproc)"
# OpenMPI keeps some allocations until exit; everything else must be leak-free. Its components
# stay loaded (no dlclose) so that the leak suppressions can name them.
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export OMPI_MCA_mca_base_component_disable_dlclose=1
cd "$build"
mpi='MpiRun|runtime_mpi|KilledMpi|TrainMeshMpi|MpiTrain'
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
ctest --output-on-failure -j "$(nproc)" --timeout 1200 -E "$mpi"
# OpenMPI's libraries have no frame pointers: the tests that run it need the slow unwinder for
# its allocations to be traced back to it.
export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0"
ctest --output-on-failure -j "$(nproc)" --timeout 1200 -R "$mpi"
