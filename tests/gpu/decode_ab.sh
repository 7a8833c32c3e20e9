#!/usr/bin/env bash
# Decode A/B in one device run (docs/performance.md, runs 11+): the GPU tests, then omni-bench once
# per variant of the environment switches, alternating, with a short table last. Run from the repo
# root with the stripped binaries, their libraries and the release config in DIR (default .gpu):
#   bash tests/gpu/decode_ab.sh [DIR]
# Variants: fused = one persistent kernel per decoder layer (default); old = OMNI_CUDA_FUSED_LAYER=0
# (the eight kernels per layer of runs 1-10).
set -u
G=$(cd "${1:-.gpu}" && pwd)
ROOT=$PWD
CONFIG=$G/qwen3-omni-30b-a3b-instruct.config.json
export LD_LIBRARY_PATH=$G
B="$G/omni-bench --config $CONFIG --no-speech --prefill 0"
L=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$L/gpu.txt"

# The fixture models as cmake/fixture_models.cmake assembles them (as run.sh --prebuilt does).
MODELS=$(mktemp -d)
for m in "$ROOT"/tests/fixtures/models/*/; do
  name=$(basename "$m")
  mkdir -p "$MODELS/$name"
  ln -s "$m"/* "$MODELS/$name/"
  xz -dc "$ROOT/tests/fixtures/tokenizer/tokenizer.json.xz" > "$MODELS/$name/tokenizer.json"
done
export OMNI_GPU_FIXTURES=$ROOT/tests/fixtures OMNI_GPU_MODELS=$MODELS

echo "== new kernel's test first (a hang would stop here)"
timeout 60 "$G/omni_gpu_tests" --gtest_filter='*DecoderLayerFused*:*ThinkerStack*' > "$L/tests-fused.log" 2>&1
echo "rc $?"; grep -E "^\[  (FAILED|PASSED) |rel|Failure|expected" "$L/tests-fused.log" | head -20

bench() { # name env...
  local name=$1; shift
  env "$@" timeout 100 $B > "$L/bench-$name.log" 2>&1
  echo "== $name ($*): rc $?"
  grep -E "decode @|copy bandwidth \(" "$L/bench-$name.log"
}
bench fused X=1
bench old OMNI_CUDA_FUSED_LAYER=0
bench fused2 X=1
bench old2 OMNI_CUDA_FUSED_LAYER=0

echo "== all GPU tests (default = fused)"
timeout 240 "$G/omni_gpu_tests" > "$L/tests.log" 2>&1
echo "rc $?"
echo "== all GPU tests with OMNI_CUDA_FUSED_LAYER=0 (stacks only)"
OMNI_CUDA_FUSED_LAYER=0 timeout 120 "$G/omni_gpu_tests" --gtest_filter='*Stack*:*DecoderLayer*' > "$L/tests-old.log" 2>&1
echo "rc $?"

echo
echo "== GPU: $(cat "$L/gpu.txt")"
for f in tests-fused tests tests-old; do
  echo "== $f: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$L/$f.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] [A-Z]' "$L/$f.log" | sort -u
done
for v in fused old fused2 old2; do
  echo "| $v | $(grep -E 'decode @(64|2048): ' "$L/bench-$v.log" | sed -E 's/thinker decode @([0-9]+): ([0-9.]+) tokens.*, ([0-9.]+)% of copy.*/@\1 \2 tok\/s \3%/' | tr '\n' ' ')| $(grep -E 'copy bandwidth \(' "$L/bench-$v.log" | grep -oE '[0-9.]+ GB/s') |"
done
grep -hE "alone" "$L/bench-fused.log" "$L/bench-old.log"
