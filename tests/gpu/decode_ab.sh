#!/usr/bin/env bash
# Decode A/B in one device run (docs/performance.md, "fewer kernels per decoder layer"): the GPU tests, then omni-bench once
# per variant of the environment switches, alternating, with a short table last. Run from the repo
# root with the stripped binaries and their libraries in DIR (default .gpu); the release config is
# the committed tests/fixtures/release/config.json:
#   bash tests/gpu/decode_ab.sh [DIR]
# Variants (OMNI_CUDA_FUSED_LAYER, cuda_tuning.h): old = 0 (the separate ops: eight kernels per layer);
# six = 2, the default (six kernels: the residual add + RMSNorm folded into the q/k/v GEMV and the
# router); each with omni-bench's --dtype f32 (default) and bf16, twice, alternating.
set -u
G=$(cd "${1:-.gpu}" && pwd)
ROOT=$PWD
CONFIG=$ROOT/tests/fixtures/release/config.json
export LD_LIBRARY_PATH=$G
B="$G/omni-bench --config $CONFIG --no-speech --prefill 0"
L=$(mktemp -d)  # logs, packed into $OUT/logs.tgz at the end (the device returns <= 8 files)
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$L/gpu.txt"

# shellcheck source=prebuilt_fixtures.sh
. "$ROOT/tests/gpu/prebuilt_fixtures.sh"

echo "== all GPU tests (default: OMNI_CUDA_FUSED_LAYER=2; the fused-layer test also runs mode 0)"
timeout 200 "$G/omni_gpu_tests" > "$L/tests-all.log" 2>&1
echo "rc $? $(grep -E '^\[  (FAILED|PASSED) ' "$L/tests-all.log" | tr '\n' ' ')"
for v in "OMNI_CUDA_FUSED_LAYER=0"; do
  env $v timeout 100 "$G/omni_gpu_tests" --gtest_filter='*DecoderLayerFused*:*Stack*' > "$L/tests-$v.log" 2>&1
  echo "$v: rc $? $(grep -E '^\[  (FAILED|PASSED) ' "$L/tests-$v.log" | tr '\n' ' ')"
done

bench() { # name env...
  local name=$1; shift
  env "$@" timeout 100 $B > "$L/bench-$name.log" 2>&1
  echo "== $name ($*): rc $?"
  grep -E "decode @[0-9]+: |copy bandwidth \(" "$L/bench-$name.log"
}
VARIANTS="f32_old f32_six bf16_old bf16_six f32_old2 f32_six2 bf16_old2 bf16_six2"
bench f32_old OMNI_CUDA_FUSED_LAYER=0
bench f32_six OMNI_CUDA_FUSED_LAYER=2
B="$B --dtype bf16"
bench bf16_old OMNI_CUDA_FUSED_LAYER=0
bench bf16_six OMNI_CUDA_FUSED_LAYER=2
B="${B% --dtype bf16}"
bench f32_old2 OMNI_CUDA_FUSED_LAYER=0
bench f32_six2 OMNI_CUDA_FUSED_LAYER=2
B="$B --dtype bf16"
bench bf16_old2 OMNI_CUDA_FUSED_LAYER=0
bench bf16_six2 OMNI_CUDA_FUSED_LAYER=2

echo
echo "== GPU: $(cat "$L/gpu.txt")"
for f in "$L"/tests-*.log; do
  echo "== $(basename "$f"): $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$f" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] [A-Z]' "$f" | sort -u
done
for v in $VARIANTS; do
  echo "| $v | $(grep -E 'decode @(64|2048): ' "$L/bench-$v.log" | sed -E 's/thinker decode @([0-9]+): ([0-9.]+) tokens.*, ([0-9.]+)% of copy.*/@\1 \2 tok\/s \3%/' | tr '\n' ' ')| $(grep -E 'copy bandwidth \(' "$L/bench-$v.log" | grep -oE '[0-9.]+ GB/s') |"
done
for v in f32_old f32_six bf16_old bf16_six; do echo "$v: $(grep -hE "alone" "$L/bench-$v.log" | grep -oE "(decoder_layer|attention|moe)[^:]*: [0-9]+" | tr '\n' ';')"; done
[ -n "${OUT:-}" ] && tar czf "$OUT/logs.tgz" -C "$L" .
