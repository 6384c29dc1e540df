#!/usr/bin/env bash
# Regenerates the expectations of every golden IR test from the current passes, for review:
#   tests/passes/update-golden.sh [build-dir]     then: git diff tests/passes
set -euo pipefail
build=${1:-build}
ninja -C "$build" passes_tests >/dev/null
VITC_UPDATE_GOLDEN=1 "$build/tests/passes_tests" --gtest_filter='Files/Golden.*'
