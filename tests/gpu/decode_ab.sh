#!/usr/bin/env bash
# Decode A/B in one device run: omni-bench once per variant of the environment switches
# (docs/performance.md, runs 9-10), then tests/gpu/run.sh on the default. Run from the repo root
# with the stripped binaries, their libraries and the release config in .gpu/.
set -u
G=$PWD/.gpu
CONFIG=$G/qwen3-omni-30b-a3b-instruct.config.json
export LD_LIBRARY_PATH=$G
B="$G/omni-bench --config $CONFIG --no-speech --prefill 0"
L=${OUT:-/tmp}
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
bench() { # name env...
  local name=$1; shift
  echo "== $name: $*"
  env "$@" timeout 90 $B > "$L/bench-$name.log" 2>&1; echo "rc $?"
  grep -E "copy bandwidth \(|decode @" "$L/bench-$name.log"
}
OFF="OMNI_CUDA_GEMV_HOIST=0 OMNI_CUDA_GEMV_WIDE=0 OMNI_CUDA_ROUTER_HOIST=0"
bench base $OFF
bench hoist5 OMNI_CUDA_GEMV_WIDE=0 OMNI_CUDA_ROUTER_HOIST=0
bench h5_wide OMNI_CUDA_ROUTER_HOIST=0
bench all X=1
bench all_down8 OMNI_CUDA_DOWN_MINB=8
bench base2 $OFF
bench all2 X=1
bench h5_router OMNI_CUDA_GEMV_WIDE=0
echo "== full run.sh (default variant)"
CONFIG=$CONFIG LOGS=$L/full timeout 300 bash tests/gpu/run.sh --prebuilt $G 2>&1 | tail -22
