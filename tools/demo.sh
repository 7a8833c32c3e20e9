#!/usr/bin/env bash
# `make demo`: runs omnid on the committed tiny model with a recording as its microphone and a WAV file as its
# speaker, asks one spoken and one typed question through omnictl, prints the events and where the answers went.
#   ./tools/demo.sh BUILD_DIR
# Everything stays in BUILD_DIR/demo: omnid.yaml, omnid.log, events.jsonl, answer-<turn>.wav.
set -euo pipefail
build=$(cd "${1:?usage: tools/demo.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
omnid=${OMNID_BIN:-$build/daemon/omnid}   # OMNID_BIN/OMNID_MODEL: try the script with another binary or model
omnictl=$build/tools/omnictl
model=${OMNID_MODEL:-$build/models/tiny-a}
mic=$src/tests/integration/data/one_question.wav
run=$build/demo
for f in "$omnid" "$omnictl"; do [[ -x $f ]] || { echo "demo: $f is missing; build first (make build)" >&2; exit 1; }; done
[[ $model == scripted:* || ( -f $model/config.json && -f $model/tokenizer.json ) ]] || { echo "demo: no tiny model at $model" >&2; exit 1; }

rm -rf "$run" && mkdir -p "$run"
cat > "$run/omnid.yaml" <<EOF
# The demo: tiny random-weight model on the CPU (its answers are random tokens), a recording as microphone.
model:
  path: "$model"
  device: cpu
  max_new_tokens: 24
  max_speech_frames: 40
audio:
  input:
    pipeline: "filesrc location=$mic ! wavparse"
    listen: false            # opened by 'omnictl listen on' once the event log is subscribed
  output:
    backend: wav-file
    path: "$run/answer-{turn}.wav"
ipc:
  control: "ipc://$run/control.sock"
  events: "ipc://$run/events.sock"
EOF
export OMNID_CONTROL="ipc://$run/control.sock" OMNID_EVENTS="ipc://$run/events.sock"

"$omnid" --check-config "$run/omnid.yaml"
echo "demo: starting omnid (log: $run/omnid.log)"
"$omnid" --config "$run/omnid.yaml" >"$run/omnid.log" 2>&1 &
omnid_pid=$!
events_pid=
cleanup() {
  [[ -n $events_pid ]] && kill "$events_pid" 2>/dev/null || true
  kill "$omnid_pid" 2>/dev/null || true
}
trap cleanup EXIT

# Wait until the model is loaded (state leaves "loading").
for _ in $(seq 1 600); do
  kill -0 "$omnid_pid" 2>/dev/null || { echo "demo: omnid exited:" >&2; cat "$run/omnid.log" >&2; exit 1; }
  if "$omnictl" --json status 2>/dev/null | grep -q '"state":"\(idle\|listening\)"'; then break; fi
  sleep 0.2
done
"$omnictl" status

"$omnictl" events >"$run/events.jsonl" &
events_pid=$!
sleep 0.5

# wait_for_event NAME PATTERN: waits (up to 120 s) for an event line with NAME that matches PATTERN.
wait_for_event() {
  for _ in $(seq 1 1200); do
    grep -q "\"event\":\"$1\".*$2\|$2.*\"event\":\"$1\"" "$run/events.jsonl" 2>/dev/null && return 0
    kill -0 "$omnid_pid" 2>/dev/null || { echo "demo: omnid exited" >&2; cat "$run/omnid.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "demo: no $1 event within 120 s" >&2
  exit 1
}
# turn_end TURN: a spoken turn ends at speech.end, a silent one at response.done.
turn_end() {
  for _ in $(seq 1 1200); do
    grep -q "\"event\":\"\(speech.end\|turn.cancelled\)\".*\"turn_id\":$1[,}]" "$run/events.jsonl" && return 0
    grep -q "\"event\":\"response.done\".*\"turn_id\":$1[,}]" "$run/events.jsonl" &&
      ! grep -q "\"event\":\"speech.start\".*\"turn_id\":$1[,}]" "$run/events.jsonl" && sleep 0.3 &&
      ! grep -q "\"event\":\"speech.start\".*\"turn_id\":$1[,}]" "$run/events.jsonl" && return 0
    sleep 0.1
  done
  echo "demo: turn $1 did not end within 120 s" >&2
  exit 1
}

echo
echo "demo: 1) a spoken question: the recording $mic plays as the microphone"
"$omnictl" listen on
wait_for_event turn.start '"source":"voice"'
spoken=$(grep '"event":"turn.start"' "$run/events.jsonl" | head -1 | sed 's/.*"turn_id":\([0-9]*\).*/\1/')
turn_end "$spoken"
"$omnictl" listen off

echo
echo "demo: 2) a typed question"
"$omnictl" ask "What is the capital of France?" --wait
typed=$(grep '"event":"turn.start"' "$run/events.jsonl" | grep '"source":"ask"' | tail -1 | sed 's/.*"turn_id":\([0-9]*\).*/\1/')
turn_end "$typed"
sleep 0.3

echo
echo "demo: events (heartbeats left out):"
grep -v '"event":"heartbeat"' "$run/events.jsonl" | cut -c1-200
echo
kill "$events_pid" 2>/dev/null || true
events_pid=
kill -TERM "$omnid_pid"
rc=0
wait "$omnid_pid" || rc=$?
trap - EXIT
echo "demo: omnid stopped on SIGTERM with exit code $rc"
echo "demo: answers written:"
found=0
for f in "$run"/answer-*.wav; do
  [[ -e $f ]] || continue
  found=1
  echo "  $f ($(stat -c %s "$f") bytes)"
done
[[ $found == 1 ]] || echo "  (none: this model spoke no audio; the text answers are in the events above)"
echo "demo: files in $run (omnid.yaml, omnid.log, events.jsonl)"
exit "$rc"
