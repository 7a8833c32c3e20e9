#!/usr/bin/env bash
# Builds every libFuzzer target with clang (build-fuzz/) and runs each for SECONDS (default 60), two at a
# time per core pair, starting from the committed seeds in tests/fuzz/corpus/<target>/. Fails when any
# target reports a crash, a leak, a sanitizer error, a timeout or an out-of-memory.
#   tools/fuzz.sh            # CI: 60 s per target
#   tools/fuzz.sh 3600       # the long run: one hour per target
# Findings (crash-*, leak-*, timeout-*, oom-*) and each target's log land in build-fuzz/runs/<target>/;
# reproduce one with: build-fuzz/<dir>/<target> build-fuzz/runs/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
CC=${FUZZ_CC:-clang}
CXX=${FUZZ_CXX:-clang++}

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_CUDA=OFF -DOMNI_FUZZ=ON \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" >/dev/null
cmake --build "$BUILD" --target fuzz_all -j "$JOBS"

mapfile -t targets < <(cd tests/fuzz/corpus && ls -d */ | tr -d /)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
rm -rf "$BUILD/runs"
run_one() {
  local target=$1 exe
  exe=$(find "$BUILD" -type f -name "$target" -perm -u+x | head -n1)
  if [[ -z $exe ]]; then echo "fuzz: $target: not built" >&2; return 1; fi
  local out="$BUILD/runs/$target"
  mkdir -p "$out/corpus"
  # The first corpus directory collects new inputs; the committed seeds are only read.
  if (cd "$out" && "$OLDPWD/$exe" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 corpus "$OLDPWD/tests/fuzz/corpus/$target" >log.txt 2>&1); then
    echo "fuzz: $target: ok ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$out/log.txt" | grep -o '[0-9]*$') runs)"
  else
    echo "fuzz: $target: FAILED (log: $out/log.txt)" >&2
    grep -m20 -E 'ERROR|SUMMARY|runtime error|Test unit written' "$out/log.txt" >&2 || tail -n 30 "$out/log.txt" >&2
    return 1
  fi
}
export -f run_one
export BUILD SECONDS_PER_TARGET
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
echo "fuzz: all ${#targets[@]} targets passed ${SECONDS_PER_TARGET} s each"
