#!/usr/bin/env bash
# Lead's verification run: tiny fixtures and a full-width 2-layer checkpoint through omni-run on CUDA,
# against transformers goldens (fp32), once per CUDA activation dtype (omni-run --dtype).
# Environment: G (folder with prebuilt omni-run, its libraries in lib/ and tok/tokenizer.json; default .gpuv),
# DTYPES (default "f32 bf16"), TINY (0 skips the tiny models), VERIFY (verify_model.py to use).
set -u
cd "${ROOT:-$(dirname "$0")/../..}"
G=${G:-.gpuv}
DTYPES=${DTYPES:-f32 bf16}
VERIFY=${VERIFY:-tools/verify_model.py}
OUT=${OUT:-/tmp/verify-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$G/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
summary=()
if [ "${TINY:-1}" != 0 ]; then
  for m in tiny-a tiny-b; do
    mkdir -p /tmp/models/$m && cp tests/fixtures/models/$m/* $G/tok/tokenizer.json /tmp/models/$m/
    for dt in $DTYPES; do
      echo "== $m on cuda, --dtype $dt (tolerance 2e-2)"
      python3 "$VERIFY" --omni-run $G/omni-run --model /tmp/models/$m --golden tests/fixtures/golden/$m \
        --device cuda --dtype "$dt" --logits-tol 2e-2 2>&1 | tee $OUT/verify-$m-$dt.txt
      summary+=("$m $dt: $(tail -1 $OUT/verify-$m-$dt.txt)")
    done
  done
fi
echo "== full width, 2 layers"
( time python3 tools/make_fixtures.py --full-width --layers 2 --out /tmp/fw --threads 16 --tokenizer $G/tok/tokenizer.json ) > $OUT/fw-gen.txt 2>&1
tail -3 $OUT/fw-gen.txt
cp $G/tok/tokenizer.json /tmp/fw/models/full-width/
for dt in $DTYPES; do
  echo "== full width, --dtype $dt (tolerance 3e-2)"
  python3 "$VERIFY" --omni-run $G/omni-run --model /tmp/fw/models/full-width --golden /tmp/fw/golden/full-width \
    --device cuda --dtype "$dt" --logits-tol 3e-2 2>&1 | tee $OUT/verify-fw-$dt.txt
  summary+=("full-width $dt: $(tail -1 $OUT/verify-fw-$dt.txt)")
done
# Load throughput (weights through pinned chunks, README.md "Running the real model"): the checkpoint was just written, so the page cache is
# warm; then again after dropping it, where this host allows that (root, writable /proc/sys).
for cache in warm cold; do
  if [ $cache = cold ] && ! { sync && echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
    summary+=("load cold: not measured (the page cache cannot be dropped here)"); continue
  fi
  line=$($G/omni-run --model /tmp/fw/models/full-width --device cuda --ids 1,2,3 --max-new-tokens 1 --greedy --json \
    2>/dev/null | python3 -c "import json,sys; t=json.load(sys.stdin)['timings']; b=t['load_bytes']; \
print(f\"{b/1e9:.2f} GB in {t['load_ms']:.0f} ms = {b/1e6/t['load_ms']:.2f} GB/s\")")
  summary+=("load $cache: $line")
done
for c in ids chat_plain chat_system; do python3 -c "import json;m=json.load(open('/tmp/fw/golden/full-width/text/$c/meta.json'));print('$c', {k:m[k] for k in m if 'gap' in k or 'max_abs' in k})"; done
echo
printf '%s\n' "${summary[@]}"
