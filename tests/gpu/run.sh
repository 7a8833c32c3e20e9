#!/usr/bin/env bash
# On a GPU host: configure + build the CUDA backend (sm_90 unless ARCH is set), run the GPU
# tests (every op and decoder stacks vs the CPU reference, the tiny fixtures on "cuda"), run
# omni-bench on the release shapes, and print a short table last.
#   tests/gpu/run.sh                      build in $BUILD (default build-gpu), then run
#   tests/gpu/run.sh --prebuilt DIR       use DIR/omni_gpu_tests and DIR/omni-bench (no build)
# Environment: CONFIG (config.json for omni-bench; default the committed tests/fixtures/release/config.json), LOGS (log folder; $OUT if set),
# BENCH_ARGS (extra omni-bench arguments), GTEST_FILTER.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
ARCH=${ARCH:-90}
LOGS=${LOGS:-${OUT:-$BUILD/gpu-logs}}
PREBUILT=""
if [ "${1:-}" = "--prebuilt" ]; then PREBUILT=$(cd "$2" && pwd); fi
mkdir -p "$LOGS"
CONFIG=${CONFIG:-$ROOT/tests/fixtures/release/config.json}
[ -f "$CONFIG" ] || { echo "run.sh: release config.json not found: $CONFIG"; exit 2; }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader \
  | tee "$LOGS/gpu.txt"

if [ -z "$PREBUILT" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DOMNI_CUDA=ON \
    > "$LOGS/configure.log" 2>&1 || { tail -30 "$LOGS/configure.log"; exit 1; }
  cmake --build "$BUILD" --target omni_gpu_tests omni-bench -j "$(nproc)" > "$LOGS/build.log" 2>&1 \
    || { grep -E "error" "$LOGS/build.log" | head -30; exit 1; }
  TESTS=$BUILD/tests/gpu/omni_gpu_tests
  BENCH=$BUILD/tools/omni-bench
else
  TESTS=$PREBUILT/omni_gpu_tests
  BENCH=$PREBUILT/omni-bench
  # shellcheck source=prebuilt_fixtures.sh
  . "$ROOT/tests/gpu/prebuilt_fixtures.sh"
fi

"$TESTS" --gtest_filter="${GTEST_FILTER:-*}" 2>&1 | tee "$LOGS/tests.log"
test_rc=${PIPESTATUS[0]}
# shellcheck disable=SC2086
"$BENCH" --config "$CONFIG" ${BENCH_ARGS:-} 2>&1 | tee "$LOGS/bench.log"
bench_rc=${PIPESTATUS[0]}

echo
echo "== GPU: $(cat "$LOGS/gpu.txt")"
echo "== tests: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \] [0-9]' "$LOGS/tests.log" | tr '\n' ' ') (exit $test_rc)"
grep -E '^\[  FAILED  \] [A-Z]' "$LOGS/tests.log" | sort -u
echo "== omni-bench (exit $bench_rc)"
grep -E '^\|' "$LOGS/bench.log"
[ "$test_rc" = 0 ] && [ "$bench_rc" = 0 ]
