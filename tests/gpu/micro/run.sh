#!/usr/bin/env bash
# Builds and runs the decode micro-benchmarks (exploration tools, not tests) on a GPU host:
#   tests/gpu/micro/run.sh [ARCH]     (default sm_90)
# gemv_stream: decode GEMV shapes, current kernels vs variants, read ceiling, L2-prefetch experiment.
# attn_decode: the engine's decode attention item per position and split count.
# moe_stream: the MoE prefill GEMM's weight access pattern as a pure read (BENCHES=moe_stream runs only it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ARCH=${1:-90}
OUTDIR=${BUILD:-$ROOT/build-gpu}/micro
mkdir -p "$OUTDIR"
for b in ${BENCHES:-gemv_stream attn_decode moe_stream}; do
  nvcc -std=c++17 -O3 -arch=sm_$ARCH -I"$ROOT/engine/src" -I"$ROOT/engine/include" \
    -o "$OUTDIR/$b" "$ROOT/tests/gpu/micro/$b.cu"
  echo "== $b"
  "$OUTDIR/$b"
done
