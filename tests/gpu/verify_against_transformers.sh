#!/usr/bin/env bash
# Lead's verification run: tiny fixtures and a full-width 2-layer checkpoint through omni-run on CUDA,
# against transformers goldens.
set -u
cd "$(dirname "$0")/.."
G=${G:-.gpuv}  # prebuilt omni-run, its libraries (lib/) and tok/tokenizer.json
export LD_LIBRARY_PATH=$PWD/$G/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
for m in tiny-a tiny-b; do
  mkdir -p /tmp/models/$m && cp tests/fixtures/models/$m/* $G/tok/tokenizer.json /tmp/models/$m/
  echo "== $m on cuda (tolerance 2e-2)"
  python3 tools/verify_model.py --omni-run $G/omni-run --model /tmp/models/$m --golden tests/fixtures/golden/$m \
    --device cuda --logits-tol 2e-2 2>&1 | tee $OUT/verify-$m.txt
done
echo "== full width, 2 layers"
( time python3 tools/make_fixtures.py --full-width --layers 2 --out /tmp/fw --threads 16 --tokenizer $G/tok/tokenizer.json ) > $OUT/fw-gen.txt 2>&1
tail -3 $OUT/fw-gen.txt
cp $G/tok/tokenizer.json /tmp/fw/models/full-width/
python3 tools/verify_model.py --omni-run $G/omni-run --model /tmp/fw/models/full-width --golden /tmp/fw/golden/full-width \
  --device cuda --logits-tol 3e-2 2>&1 | tee $OUT/verify-fw.txt
$G/omni-run --model /tmp/fw/models/full-width --device cuda --prompt "Hello" --max-new-tokens 64 --json | head -c 600
echo
for c in ids chat_plain chat_system; do python3 -c "import json;m=json.load(open('/tmp/fw/golden/full-width/text/$c/meta.json'));print('$c', {k:m[k] for k in m if 'gap' in k or 'max_abs' in k})"; done
