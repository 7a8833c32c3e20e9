#!/usr/bin/env bash
# Builds every libFuzzer target with clang (build-fuzz/) and runs each for SECONDS (default 60), JOBS at a
# time, continuing from the committed corpus in tests/fuzz/corpus/<target>/. Fails when any target reports
# a crash, a leak, a sanitizer error, a timeout (10 s per input) or an out-of-memory: an RSS above 2 GB or
# a single allocation above 512 MB (-malloc_limit_mb), so that an allocation sized by the input is a
# finding, not a pass.
#   tools/fuzz.sh            # 60 s per target (CI passes 30)
#   tools/fuzz.sh 1800       # the long run (make fuzz-long)
# Environment: FUZZ_JOBS (targets at once; default nproc), FUZZ_NICE (nice level of the fuzzers; default 0),
# FUZZ_TARGETS (space-separated subset), FUZZ_MERGE=0 (do not merge new inputs into tests/fuzz/corpus),
# FUZZ_NO_BUILD=1 (run the fuzz binaries already in $FUZZ_BUILD, built elsewhere: for a machine without clang),
# FUZZ_COMMIT (the commit those binaries were built from, for the results' heading).
#
# After each target's run, the inputs it found that add coverage are merged into tests/fuzz/corpus/<target>/
# (libFuzzer -merge=1: only inputs with new coverage are added), so the next run, and CI's short runs once
# they are committed, continue from there. Each finding (crash-*, leak-*, timeout-*, oom-*) is kept in
# build-fuzz/runs/<target>/ with the log, and copied to tests/fuzz/regressions/<target>/, whose inputs every
# ordinary build replays (ctest FuzzReplay.*): commit it with the fix.
# Per-target results (runs, seconds, corpus, findings) are written to build-fuzz/runs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${FUZZ_JOBS:-${JOBS:-$(nproc)}}
NICE=${FUZZ_NICE:-0}
MERGE=${FUZZ_MERGE:-1}
CC=${FUZZ_CC:-clang}
CXX=${FUZZ_CXX:-clang++}
RSS_LIMIT_MB=2048
MALLOC_LIMIT_MB=512

if [[ ${FUZZ_NO_BUILD:-0} != 1 ]]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_CUDA=OFF -DOMNI_FUZZ=ON \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" >/dev/null
  nice -n "$NICE" cmake --build "$BUILD" --target fuzz_all -j "$JOBS"
fi

if [[ -n ${FUZZ_TARGETS:-} ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cd tests/fuzz/corpus && ls -d */ | tr -d /)
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
rm -rf "$BUILD/runs"
mkdir -p "$BUILD/runs"
run_one() {
  local target=$1 exe root=$PWD
  exe=$(find "$BUILD" -type f -name "$target" -perm -u+x | head -n1)
  local out="$BUILD/runs/$target"
  mkdir -p "$out/corpus"
  if [[ -z $exe ]]; then
    echo "fuzz: $target: not built" >&2
    echo "| \`$target\` | - | - | - | - | not built |" >"$out/result.md"
    return 1
  fi
  local seeds="$root/tests/fuzz/corpus/$target" before after start end status=ok findings=0
  before=$(find "$seeds" -type f | wc -l)
  start=$(date +%s)
  # The first corpus directory collects new inputs; the committed corpus is read, then merged into below.
  if ! (cd "$out" && nice -n "$NICE" "$root/$exe" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
          -rss_limit_mb=$RSS_LIMIT_MB -malloc_limit_mb=$MALLOC_LIMIT_MB -print_final_stats=1 \
          corpus "$seeds" >log.txt 2>&1); then
    status=FAILED
  fi
  end=$(date +%s)
  shopt -s nullglob
  local found=("$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* "$out"/slow-unit-*)
  shopt -u nullglob
  findings=${#found[@]}
  if ((findings > 0)); then
    mkdir -p "$root/tests/fuzz/regressions/$target"
    cp "${found[@]}" "$root/tests/fuzz/regressions/$target/"
  fi
  if [[ $MERGE == 1 && $status == ok ]]; then
    (cd "$out" && nice -n "$NICE" "$root/$exe" -merge=1 -timeout=10 -rss_limit_mb=$RSS_LIMIT_MB \
       -malloc_limit_mb=$MALLOC_LIMIT_MB "$seeds" corpus >merge.txt 2>&1) || echo "fuzz: $target: merge failed (log: $out/merge.txt)" >&2
  fi
  after=$(find "$seeds" -type f | wc -l)
  local runs cov
  runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$out/log.txt" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$out/log.txt" | tail -n1 | grep -o '[0-9]*' || echo "?")
  echo "| \`$target\` | $runs | $((end - start)) | $cov | $before -> $after | $findings ($status) |" >"$out/result.md"
  if [[ $status == ok ]]; then
    echo "fuzz: $target: ok ($runs runs in $((end - start)) s, corpus $before -> $after)"
  else
    echo "fuzz: $target: FAILED (log: $out/log.txt; inputs copied to tests/fuzz/regressions/$target/)" >&2
    grep -m20 -E 'ERROR|SUMMARY|runtime error|Test unit written|out-of-memory|malloc' "$out/log.txt" >&2 || tail -n 30 "$out/log.txt" >&2
    return 1
  fi
}
export -f run_one
export BUILD SECONDS_PER_TARGET NICE MERGE RSS_LIMIT_MB MALLOC_LIMIT_MB
rc=0
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}' || rc=$?
{
  echo "Fuzzing ${FUZZ_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes')}, $SECONDS_PER_TARGET s per target, $JOBS at a time, nice $NICE, on $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'):"
  echo
  echo "| target | runs | seconds | coverage (cov) | corpus files | findings |"
  echo "|---|---|---|---|---|---|"
  for t in "${targets[@]}"; do cat "$BUILD/runs/$t/result.md" 2>/dev/null || echo "| \`$t\` | - | - | - | - | no result |"; done
} >"$BUILD/runs/results.md"
cat "$BUILD/runs/results.md"
if ((rc != 0)); then
  echo "fuzz: some targets FAILED (see above)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed ${SECONDS_PER_TARGET} s each"
