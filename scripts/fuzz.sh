#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang-19 into build-fuzz/ and runs each in turn.
#
#   scripts/fuzz.sh [seconds-per-target] [jobs] [target...]
#
# seconds-per-target defaults to 60, jobs to 1 (more runs that many fuzzing processes per target,
# which then also go on after a crash); targets default to all of spec ir hf_config safetensors
# npy npz layout. Each target's corpus lives in build-fuzz/corpus/<target> and grows from run to
# run. Seeds come from the repository (build-fuzz/seeds/<target>, rewritten each run by
# fuzz/make_seeds.py), and fuzz/dicts/<target>.dict, where there is one, gives the format's words.
# Every crash, leak, timeout or out-of-memory input is copied to tests/fuzz/regressions/<target>/
# as <kind>-<hash>: rename it to say what it does once understood, and the test suite runs it from
# then on. Fuzzers run under `nice -n 19`, one target at a time; VITC_FUZZ_RUNS=N also stops each
# after N executions. Prints the executions of each target (build-fuzz/fuzz-summary.txt keeps
# them); exits 1 if any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
jobs=${2:-1}
shift $(($# < 2 ? $# : 2))
all=(spec ir hf_config safetensors npy npz layout)
targets=("${all[@]}")
if (($# > 0)); then
  targets=("$@")
fi
build=${BUILD_DIR:-build-fuzz}

scripts/install-deps.sh --fuzz
CC=clang-19 CXX=clang++-19 cmake -S . -B "$build" -G Ninja -DVITC_FUZZ=ON -DVITC_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice -n 19 ninja -C "$build" vitc_fuzzers

rm -rf "$build/seeds"
python3 fuzz/make_seeds.py "$build/seeds"

export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
summary="$build/fuzz-summary.txt"
found=0
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"
  artifacts="$build/artifacts/$target"
  log="$build/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")" "$build/seeds/$target"
  flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
         -artifact_prefix="$artifacts/")
  if [[ -f fuzz/dicts/$target.dict ]]; then
    flags+=(-dict="fuzz/dicts/$target.dict")
  fi
  if [[ -n ${VITC_FUZZ_RUNS:-} ]]; then
    flags+=(-runs="$VITC_FUZZ_RUNS")
  fi
  if ((jobs > 1)); then
    flags+=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  echo "== fuzz_$target for ${seconds}s (log: $log)"
  start=$(date +%s)
  status=0
  nice -n 19 "$build/fuzz/fuzz_$target" "${flags[@]}" "$corpus" "$build/seeds/$target" \
    >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  # One process prints its total in its final stats; in fork mode (jobs > 1) the parent's last
  # status line (#N: ...) counts the executions of all its children.
  execs=$(awk '/stat::number_of_executed_units:/ {s += $2; stat = 1}
               /^#[0-9]+:/ {last = substr($1, 2) + 0}
               END {print stat ? s : last + 0}' "$log")
  kept=0
  for artifact in "$artifacts"/*; do
    [[ -f $artifact ]] || continue
    name=$(basename "$artifact")
    kind=${name%%-*}
    mkdir -p "tests/fuzz/regressions/$target"
    cp "$artifact" "tests/fuzz/regressions/$target/$kind-$(sha1sum "$artifact" | cut -c1-12)"
    rm "$artifact"
    kept=$((kept + 1))
  done
  result="ok"
  if ((kept > 0 || status != 0)); then
    result="FOUND $kept input(s), exit status $status"
    found=1
    grep -m1 -E 'ERROR: |runtime error:|vitc fuzz ' "$log" || true
  fi
  line=$(printf '%-12s %6ss %12s execs  %s' "$target" "$elapsed" "$execs" "$result")
  echo "$line"
  echo "$(date -u +%FT%TZ) $line" >>"$summary"
done
exit "$found"
