#!/usr/bin/env bash
# `make bench-latency`: end of speech -> first audio of the real omnid, with speculative turns on and off.
# Runs the daemon on a recording as its microphone (played in real time) and a WAV file as its speaker, and
# reads speech.first_audio's since_speech_end_ms (the user's wait: end_silence_ms plus whatever the model
# still has to do after the endpoint) for each run.
#   tools/bench_latency.sh BUILD_DIR
# Environment:
#   BENCH_MODEL      model directory (default BUILD_DIR/bench-model/models/full-width, made by
#                    tools/make_fixtures.py --full-width ...; see docs/performance.md)
#   BENCH_DEVICE     cpu | cuda (default cpu)
#   BENCH_RECORDING  the microphone (default tests/integration/data/one_question.wav)
#   BENCH_SPECULATE  the speculate_after_ms values to compare (default "0 300"; 0 = off)
#   BENCH_RUNS       runs per value (default 3), each a fresh daemon
#   OMNID_BIN        another daemon binary, e.g. BUILD_DIR/tests/integration/omnid_scripted with
#                    BENCH_MODEL=scripted:step_ms=300,words=3 (an engine of fixed speed, to see the daemon alone)
# Everything stays in BUILD_DIR/bench-latency (omnid.yaml, omnid-*.log, events-*.jsonl).
set -euo pipefail
build=$(cd "${1:?usage: tools/bench_latency.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
omnid=${OMNID_BIN:-$build/daemon/omnid}   # OMNID_BIN/OMNICTL_BIN: other binaries
omnictl=${OMNICTL_BIN:-$build/tools/omnictl}
model=${BENCH_MODEL:-$build/bench-model/models/full-width}
device=${BENCH_DEVICE:-cpu}
mic=${BENCH_RECORDING:-$src/tests/integration/data/one_question.wav}
values=${BENCH_SPECULATE:-0 300}
runs=${BENCH_RUNS:-3}
end_silence=700
run=$build/bench-latency
for f in "$omnid" "$omnictl"; do [[ -x $f ]] || { echo "bench-latency: $f is missing; build first" >&2; exit 1; }; done
if [[ $model != scripted:* && ! -f $model/config.json ]]; then
  cat >&2 <<EOF
bench-latency: no model at $model. Make one with release widths and few layers (slow enough on a CPU to matter):
  python3 tools/make_fixtures.py --full-width --layers 1 --talker-layers 1 --audio-layers 1 \\
      --code2wav-layers 1 --reduced-width 4 --cpu --text-steps 2 --audio-steps 2 --out $build/bench-model
or point BENCH_MODEL at any Qwen3-Omni checkpoint directory.
EOF
  exit 1
fi
# The fixture tool writes no tokenizer; the committed test tokenizer is the release's vocabulary.
[[ $model == scripted:* || -f $model/tokenizer.json ]] || cp "$build/models/tiny-a/tokenizer.json" "$model/"

mkdir -p "$run"
export OMNID_CONTROL="ipc://$run/control.sock" OMNID_EVENTS="ipc://$run/events.sock"
omnid_pid= events_pid=
cleanup() {
  [[ -n $events_pid ]] && kill "$events_pid" 2>/dev/null || true
  [[ -n $omnid_pid ]] && kill "$omnid_pid" 2>/dev/null || true
}
trap cleanup EXIT

one_run() {  # speculate_after_ms run_index -> prints since_speech_end_ms
  local spec=$1 i=$2
  cat > "$run/omnid.yaml" <<EOF
model:
  path: "$model"
  device: $device
  max_new_tokens: 16
  max_speech_frames: 16
audio:
  input:
    pipeline: "filesrc location=$mic ! wavparse"
    listen: false
    restart_on_end: false
  output:
    backend: wav-file
    path: "$run/answer-{turn}.wav"
  vad:
    end_silence_ms: $end_silence
    speculate_after_ms: $spec
ipc:
  control: "ipc://$run/control.sock"
  events: "ipc://$run/events.sock"
EOF
  "$omnid" --config "$run/omnid.yaml" >"$run/omnid-$spec-$i.log" 2>&1 &
  omnid_pid=$!
  for _ in $(seq 1 1200); do
    kill -0 "$omnid_pid" 2>/dev/null || { echo "bench-latency: omnid exited:" >&2; cat "$run/omnid-$spec-$i.log" >&2; exit 1; }
    if "$omnictl" --json status 2>/dev/null | grep -q '"state":"\(idle\|listening\)"'; then break; fi
    sleep 0.2
  done
  "$omnictl" events >"$run/events-$spec-$i.jsonl" &
  events_pid=$!
  sleep 0.5
  "$omnictl" listen on >/dev/null
  for _ in $(seq 1 600); do
    grep -q '"speech.end"' "$run/events-$spec-$i.jsonl" && break
    sleep 0.2
  done
  kill "$events_pid" 2>/dev/null || true
  kill "$omnid_pid" 2>/dev/null || true
  wait "$omnid_pid" 2>/dev/null || true
  events_pid= omnid_pid=
  python3 - "$run/events-$spec-$i.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    e = json.loads(line)
    body = e.get("body", e)
    if e.get("event", e.get("name")) == "speech.first_audio" or "since_speech_end_ms" in body:
        if "since_speech_end_ms" in body:
            print(body["since_speech_end_ms"])
            break
else:
    print("none")
EOF
}

echo "bench-latency: model $model ($device), recording $(basename "$mic"), end_silence_ms $end_silence, $runs runs each"
printf "%-20s %-28s %s\n" "speculate_after_ms" "since_speech_end_ms (runs)" "median after the endpoint"
for spec in $values; do
  results=()
  for i in $(seq 1 "$runs"); do results+=("$(one_run "$spec" "$i")"); done
  median=$(printf "%s\n" "${results[@]}" | python3 -c "
import sys, statistics
v = [float(x) for x in sys.stdin.read().split() if x != 'none']
print(f'{statistics.median(v) - $end_silence:.0f} ms' if v else 'no first audio')")
  printf "%-20s %-28s %s\n" "$spec" "${results[*]}" "$median"
done
