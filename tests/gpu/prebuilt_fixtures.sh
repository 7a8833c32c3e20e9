# Sourced by run.sh --prebuilt and decode_ab.sh: the fixture models as cmake/fixture_models.cmake
# assembles them (links to tests/fixtures/models/* plus the unpacked tokenizer), for GPU test binaries
# built elsewhere. Needs ROOT (the repository root); exports OMNI_GPU_FIXTURES and OMNI_GPU_MODELS.
MODELS=$(mktemp -d)
for m in "$ROOT"/tests/fixtures/models/*/; do
  name=$(basename "$m")
  mkdir -p "$MODELS/$name"
  ln -s "$m"/* "$MODELS/$name/"
  xz -dc "$ROOT/tests/fixtures/tokenizer/tokenizer.json.xz" > "$MODELS/$name/tokenizer.json"
done
export OMNI_GPU_FIXTURES=$ROOT/tests/fixtures OMNI_GPU_MODELS=$MODELS
