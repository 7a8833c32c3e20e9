#!/usr/bin/env bash
# Decode A/B in one device run (docs/performance.md, runs 11+): the GPU tests, then omni-bench once
# per variant of the environment switches, alternating, with a short table last. Run from the repo
# root with the stripped binaries, their libraries and the release config in DIR (default .gpu):
#   bash tests/gpu/decode_ab.sh [DIR]
# Variants (OMNI_CUDA_FUSED_LAYER): old = 0 (the eight kernels per layer of runs 1-10); persist = 1
# (one persistent kernel per layer; OMNI_CUDA_FUSED_OPT bits in cuda_decode_layer.cu); six = 2 (six
# kernels: the residual add + RMSNorm folded into the q/k/v GEMV and the router).
set -u
G=$(cd "${1:-.gpu}" && pwd)
ROOT=$PWD
CONFIG=$G/qwen3-omni-30b-a3b-instruct.config.json
export LD_LIBRARY_PATH=$G
B="$G/omni-bench --config $CONFIG --no-speech --prefill 0"
L=$(mktemp -d)  # logs, packed into $OUT/logs.tgz at the end (the device returns <= 8 files)
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

echo "== the fused kernels' tests first, every mode and option set (a hang would stop here)"
for v in "1 1" "1 9" "1 5" "1 3" "2 0" "0 0"; do
  set -- $v
  OMNI_CUDA_FUSED_LAYER=$1 OMNI_CUDA_FUSED_OPT=$2 timeout 60 "$G/omni_gpu_tests" \
    --gtest_filter='*DecoderLayerFused*:*ThinkerStack*' > "$L/tests-m$1-o$2.log" 2>&1
  echo "mode $1 opt $2: rc $? $(grep -E '^\[  (FAILED|PASSED) ' "$L/tests-m$1-o$2.log" | tr '\n' ' ')"
done

bench() { # name env...
  local name=$1; shift
  env "$@" timeout 100 $B > "$L/bench-$name.log" 2>&1
  echo "== $name ($*): rc $?"
  grep -E "decode @[0-9]+: |copy bandwidth \(" "$L/bench-$name.log"
}
VARIANTS="old six persist persist_early persist_sleep old2 six2 persist2"
bench old OMNI_CUDA_FUSED_LAYER=0
bench six OMNI_CUDA_FUSED_LAYER=2
bench persist OMNI_CUDA_FUSED_LAYER=1 OMNI_CUDA_FUSED_OPT=1
bench persist_early OMNI_CUDA_FUSED_LAYER=1 OMNI_CUDA_FUSED_OPT=9
bench persist_sleep OMNI_CUDA_FUSED_LAYER=1 OMNI_CUDA_FUSED_OPT=5
bench old2 OMNI_CUDA_FUSED_LAYER=0
bench six2 OMNI_CUDA_FUSED_LAYER=2
bench persist2 OMNI_CUDA_FUSED_LAYER=1 OMNI_CUDA_FUSED_OPT=1
echo "== stage profiles of the persistent kernel (eager launches, synchronized after each)"
for c in 64 2048; do
  OMNI_CUDA_FUSED_LAYER=1 OMNI_CUDA_LAYER_PROFILE=1 timeout 100 $B --contexts $c --steps 10 > "$L/prof-$c.log" 2>&1
  echo "ctx $c: rc $?"; grep -A7 "decoder_layer profile" "$L/prof-$c.log"
done

for m in 1 2; do
  echo "== all GPU tests, OMNI_CUDA_FUSED_LAYER=$m"
  OMNI_CUDA_FUSED_LAYER=$m timeout 200 "$G/omni_gpu_tests" > "$L/tests-all-m$m.log" 2>&1
  echo "rc $?"
done
echo "== stack tests with OMNI_CUDA_FUSED_LAYER=0"
OMNI_CUDA_FUSED_LAYER=0 timeout 120 "$G/omni_gpu_tests" --gtest_filter='*Stack*:*DecoderLayer*' > "$L/tests-old.log" 2>&1
echo "rc $?"

echo
echo "== GPU: $(cat "$L/gpu.txt")"
for f in tests-all-m1 tests-all-m2 tests-old; do
  echo "== $f: $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]' "$L/$f.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] [A-Z]' "$L/$f.log" | sort -u
done
for v in $VARIANTS; do
  echo "| $v | $(grep -E 'decode @(64|2048): ' "$L/bench-$v.log" | sed -E 's/thinker decode @([0-9]+): ([0-9.]+) tokens.*, ([0-9.]+)% of copy.*/@\1 \2 tok\/s \3%/' | tr '\n' ' ')| $(grep -E 'copy bandwidth \(' "$L/bench-$v.log" | grep -oE '[0-9.]+ GB/s') |"
done
for v in old six persist; do grep -hE "alone" "$L/bench-$v.log" | grep -E "decoder_layer|attention|moe"; done
[ -n "${OUT:-}" ] && tar czf "$OUT/logs.tgz" -C "$L" .
