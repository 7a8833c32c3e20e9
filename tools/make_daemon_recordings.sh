#!/usr/bin/env bash
# Makes the microphone recordings the daemon's tests and `make demo` play through a GStreamer file source:
# speech made by espeak-ng, 16 kHz mono 16-bit, with quiet white noise (-50 dBFS) in the pauses so the VAD
# sees a real noise floor, never digital silence. Prints each file's speech segments (start end, seconds),
# which tests/integration/test_vad.cpp checks the VAD against.
#   tools/make_daemon_recordings.sh tests/integration/data
set -euo pipefail
out=${1:?output directory}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

say() {  # text -> $tmp/$2.wav, 16 kHz mono, leading/trailing silence trimmed
  espeak-ng -v en-us -s 150 -w "$tmp/raw_$2.wav" "$1"
  sox "$tmp/raw_$2.wav" -r 16000 -c 1 -b 16 "$tmp/$2.wav" silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse
}
quiet() {  # seconds -> $tmp/quiet_$1.wav
  sox -n -r 16000 -c 1 -b 16 "$tmp/quiet_$1.wav" synth "$1" whitenoise vol 0.0032
}
mix_noise() {  # file -> same file with the noise floor added under the speech
  local d; d=$(soxi -D "$1")
  sox -n -r 16000 -c 1 -b 16 "$tmp/floor.wav" synth "$d" whitenoise vol 0.0032
  sox -m "$1" "$tmp/floor.wav" "$tmp/mixed.wav" && mv "$tmp/mixed.wav" "$1"
}

say "What is the capital of France?" a
say "Tell me a short story about a robot." b
mix_noise "$tmp/a.wav"; mix_noise "$tmp/b.wav"
quiet 2.0; quiet 2.5; quiet 1.5

# two_questions.wav: 2.0 s quiet, question A, 2.5 s quiet, question B, 1.5 s quiet.
sox "$tmp/quiet_2.0.wav" "$tmp/a.wav" "$tmp/quiet_2.5.wav" "$tmp/b.wav" "$tmp/quiet_1.5.wav" "$out/two_questions.wav"
da=$(soxi -D "$tmp/a.wav"); db=$(soxi -D "$tmp/b.wav")
python3 -c "a=$da; b=$db; print(f'two_questions.wav: speech {2.0:.3f} {2.0+a:.3f}, {4.5+a:.3f} {4.5+a+b:.3f}')"
# one_question.wav: 1.0 s quiet, question A, 1.5 s quiet (the demo's microphone).
quiet 1.0
sox "$tmp/quiet_1.0.wav" "$tmp/a.wav" "$tmp/quiet_1.5.wav" "$out/one_question.wav"
python3 -c "a=$da; print(f'one_question.wav: speech {1.0:.3f} {1.0+a:.3f}')"
# paused_question.wav: 1.0 s quiet, "What is the capital", a 0.5 s pause (longer than the default
# speculate_after_ms, shorter than end_silence_ms: one utterance), "of France?", 1.5 s quiet.
say "What is the capital" c1
say "of France?" c2
mix_noise "$tmp/c1.wav"; mix_noise "$tmp/c2.wav"
quiet 0.5
sox "$tmp/quiet_1.0.wav" "$tmp/c1.wav" "$tmp/quiet_0.5.wav" "$tmp/c2.wav" "$tmp/quiet_1.5.wav" "$out/paused_question.wav"
d1=$(soxi -D "$tmp/c1.wav"); d2=$(soxi -D "$tmp/c2.wav")
python3 -c "a=$d1; b=$d2; print(f'paused_question.wav: speech {1.0:.3f} {1.0+a:.3f}, {1.5+a:.3f} {1.5+a+b:.3f}')"
# quiet.wav: 4 s of the noise floor only.
sox -n -r 16000 -c 1 -b 16 "$out/quiet.wav" synth 4 whitenoise vol 0.0032
echo "quiet.wav: no speech"
