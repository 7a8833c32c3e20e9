#!/usr/bin/env python3
"""Echo-cancellation test recordings made with a simulated room (seeded, re-runnable).

Each scene is what a robot's microphone hears while omnid answers through its own loudspeaker:

  ref  = the answer exactly as omnid played it (16 kHz mono, after volume)
  echo = ref -> loudspeaker (linear, or driven into soft clipping) -> room impulse response
         (direct path after a delay of 20..300 ms, early reflections, an exponentially decaying
         diffuse tail for the reverberation time) -> gain (the echo is louder than the user)
  user = a person's speech through a second, shorter room response, starting while the answer plays
  mic  = echo + user + background noise (coloured noise at a fixed level)

Written per scene into the output directory (16 kHz mono PCM16):
  <scene>.mic.wav    what the microphone heard
  <scene>.ref.wav    what omnid played (the canceller's far-end reference, sample-aligned with mic)
  <scene>.user.wav   the user's speech as it reaches the microphone (only for scenes with a user)
and scenes.json with every scene's parameters and its time regions in milliseconds:
  echo_only  [start, end]: only the answer (and the noise) is heard; ERLE is measured here
  user_speech [[start, end], ...]: the user's speech at the microphone (10 ms energy frames)
  double_talk [start, end]: answer and user at once

Two sets are made from two seeds: `seen` (the tests tune against these) and `unseen` (other voices, other
sentences, other room draws; checked only at the end). Speech comes from espeak-ng, resampled with sox
(`-R -D`: no random dither), so re-running writes identical files.

Needs: numpy, espeak-ng, sox.
    python3 tools/make_aec_recordings.py tests/fixtures/aec
"""
import argparse
import json
import os
import subprocess
import tempfile
import wave

import numpy as np

RATE = 16000
ECHO_DBFS = -24.0   # echo RMS at the microphone while the answer plays
NOISE_DBFS = -62.0  # background noise RMS


def synth(text, voice, speed, tmp, name):
    """espeak-ng speech as float32 at 16 kHz, leading and trailing silence trimmed."""
    raw = os.path.join(tmp, name + ".raw.wav")
    out = os.path.join(tmp, name + ".wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text], check=True)
    subprocess.run(["sox", "-R", "-D", "-v", "0.7", raw, "-r", str(RATE), "-c", "1", "-b", "16", out,
                    "silence", "1", "0.01", "0.1%", "reverse", "silence", "1", "0.01", "0.1%", "reverse"],
                   check=True)
    return read_wav(out)


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def write_wav(path, x):
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def rms_db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)


def room_response(rng, delay_ms, rt60_s, early=6):
    """Direct path at delay_ms, `early` reflections within 40 ms after it, then a diffuse tail whose energy
    falls 60 dB in rt60_s. Normalised so the direct path has gain 1."""
    d = int(round(delay_ms * RATE / 1000))
    tail_len = int(rt60_s * RATE)
    h = np.zeros(d + tail_len + 1, dtype=np.float64)
    h[d] = 1.0
    for _ in range(early):
        k = d + int(rng.integers(int(0.002 * RATE), int(0.040 * RATE)))
        h[k] += rng.uniform(-0.6, 0.6)
    t = np.arange(tail_len) / RATE
    decay = np.exp(-6.9078 * t / rt60_s)  # 10^(-3 t / rt60): amplitude for -60 dB energy at rt60
    tail = rng.standard_normal(tail_len) * decay * 0.12
    onset = d + int(0.005 * RATE)
    h[onset:onset + tail_len] += tail[: len(h) - onset]
    return h


def fftconv(x, h):
    n = len(x) + len(h) - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:n]
    return y


def coloured_noise(rng, n, level_db):
    """Noise falling ~3 dB per octave above 200 Hz (a fan and a room), scaled to level_db dBFS RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec *= 1 / np.sqrt(np.maximum(f, 200.0) / 200.0)
    x = np.fft.irfft(spec, n)
    return x * 10 ** (level_db / 20) / np.sqrt(np.mean(x ** 2))


def speech_regions(x, floor_db=-45.0, gap_ms=300):
    """[[start_ms, end_ms], ...] of 10 ms frames within 35 dB of the loudest frame (and above floor_db),
    merging gaps shorter than gap_ms."""
    frames = len(x) // 160
    e = np.array([rms_db(x[i * 160:(i + 1) * 160]) for i in range(frames)])
    active = e > max(e.max() - 35, floor_db)
    regions = []
    for i in np.flatnonzero(active):
        s, t = int(i) * 10, (int(i) + 1) * 10
        if regions and s - regions[-1][1] < gap_ms:
            regions[-1][1] = t
        else:
            regions.append([s, t])
    return regions


# Answers omnid speaks and what a user says over them. `seen` and `unseen` share nothing.
SETS = {
    "seen": {
        "seed": 1,
        "answer_voice": ("en-us", 160),
        "user_voice": ("en-gb+f3", 150),
        "answers": [
            "The weather today is mostly sunny with a light breeze from the west and a high of twenty one degrees.",
            "Paris is the capital of France, and it is known for its museums, its cafes and the river Seine.",
            "To reset the robot, hold the power button for five seconds until the light turns orange, then release.",
            "There are eight planets in the solar system, and Jupiter is the largest of them by a wide margin.",
            "I can set a timer, read you the news, tell you a joke or help you plan the rest of your afternoon.",
            "The train to the airport leaves every fifteen minutes from platform two, and the trip takes half an hour.",
        ],
        "users": [
            "Stop, what time is it?",
            "Wait, tell me about Rome instead.",
            "No, stop talking please.",
            "Hey, which one is the smallest?",
            "Okay, set a timer for ten minutes.",
            None,
        ],
        # name, delay ms, rt60 s, clipping drive (0 = linear), echo above user dB
        "rooms": [
            ("lin_d20", 20, 0.25, 0.0, 8.0),
            ("lin_d120", 120, 0.40, 0.0, 10.0),
            ("lin_d300", 300, 0.30, 0.0, 6.0),
            ("clip_d60", 60, 0.30, 4.0, 8.0),
            ("clip_d200", 200, 0.45, 6.0, 6.0),
            ("lin_d160_echo_only", 160, 0.35, 0.0, 0.0),
        ],
    },
    "unseen": {
        "seed": 3,
        "answer_voice": ("en-gb-x-rp", 170),
        "user_voice": ("en-us+m3", 140),
        "answers": [
            "Your next meeting is at three o'clock in the small conference room on the second floor of the building.",
            "A kilometre is a little more than six tenths of a mile, so ten kilometres is about six point two miles.",
            "The museum opens at nine in the morning on weekdays and stays open until eight in the evening on Fridays.",
        ],
        "users": [
            "Hold on, cancel that.",
            "Sorry, can you repeat the first part?",
            None,
        ],
        "rooms": None,  # drawn from the seed below
    },
}


def make_scene(rng, name, answer, user, delay_ms, rt60, drive, echo_over_user_db, tmp, out, duration_s):
    n = int(duration_s * RATE)
    a = synth(answer, *SETS_CTX["answer_voice"], tmp, name + "_a")
    ref = np.zeros(n, dtype=np.float64)
    a_start = int(0.2 * RATE)
    a = a[: n - a_start]
    ref[a_start:a_start + len(a)] = a / np.max(np.abs(a)) * 0.5  # omnid's output after volume, peak -6 dBFS

    if drive > 0:  # a small loudspeaker pushed into saturation: soft clipping before the room
        driven = np.tanh(drive * ref) / np.tanh(drive * 0.5) * 0.5
    else:
        driven = ref.copy()
    h = room_response(rng, delay_ms, rt60)
    echo = fftconv(driven, h)[:n]
    active = slice(a_start, a_start + len(a))
    echo *= 10 ** ((ECHO_DBFS - rms_db(echo[active])) / 20)  # echo level while the answer plays

    noise = coloured_noise(rng, n, NOISE_DBFS)
    mic = echo + noise
    regions = {"echo_only": [int(a_start * 1000 / RATE), None], "user_speech": [], "double_talk": None}
    user_at_mic = None
    if user is not None:
        u = synth(user, *SETS_CTX["user_voice"], tmp, name + "_u")
        hu = room_response(rng, 3.0, 0.2, early=3)
        u_start = int(3.0 * RATE)
        user_at_mic = np.zeros(n)
        u_room = fftconv(u, hu)[: n - u_start]
        user_at_mic[u_start:u_start + len(u_room)] = u_room
        speech = speech_regions(user_at_mic)
        on = np.concatenate([user_at_mic[s * 16:e * 16] for s, e in speech])
        user_at_mic *= 10 ** ((ECHO_DBFS - echo_over_user_db - rms_db(on)) / 20)
        mic += user_at_mic
        regions["user_speech"] = speech
        regions["echo_only"][1] = speech[0][0]
        answer_end_ms = int((a_start + len(a)) * 1000 / RATE)
        regions["double_talk"] = [speech[0][0], min(speech[-1][1], answer_end_ms)]
    else:
        regions["echo_only"][1] = int((a_start + len(a)) * 1000 / RATE)
    peak = np.max(np.abs(mic))
    if peak > 0.99:
        raise SystemExit(f"{name}: the microphone signal clips (peak {peak:.2f}); lower the levels")

    write_wav(os.path.join(out, name + ".mic.wav"), mic)
    write_wav(os.path.join(out, name + ".ref.wav"), ref)
    if user_at_mic is not None:
        write_wav(os.path.join(out, name + ".user.wav"), user_at_mic)
    return {
        "name": name, "delay_ms": delay_ms, "rt60_s": rt60, "clipping_drive": drive,
        "linear": drive == 0, "echo_over_user_db": echo_over_user_db if user else None,
        "echo_dbfs": ECHO_DBFS, "noise_dbfs": NOISE_DBFS, "answer": answer, "user": user, **regions,
    }


SETS_CTX = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output directory (tests/fixtures/aec)")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per scene")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = {"sample_rate": RATE, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, spec in SETS.items():
            SETS_CTX.clear()
            SETS_CTX.update(spec)
            rng = np.random.default_rng(spec["seed"])
            rooms = spec["rooms"]
            if rooms is None:
                rooms = []
                for i, user in enumerate(spec["users"]):
                    drive = 0.0 if i != 1 else float(rng.uniform(3.0, 6.0))
                    delay = int(rng.integers(20, 301))
                    kind = "clip" if drive > 0 else "lin"
                    suffix = "" if user else "_echo_only"
                    rooms.append((f"unseen_{kind}_d{delay}{suffix}", delay, float(round(rng.uniform(0.2, 0.5), 2)),
                                  round(drive, 2), float(round(rng.uniform(6.0, 10.0), 1)) if user else 0.0))
            scenes = []
            for (name, delay, rt60, drive, over), answer, user in zip(rooms, spec["answers"], spec["users"]):
                scenes.append(make_scene(rng, name, answer, user, delay, rt60, drive, over, tmp, args.out,
                                         args.duration))
                print(f"{set_name}/{name}: delay {delay} ms, rt60 {rt60} s, drive {drive}, "
                      f"echo-only {scenes[-1]['echo_only']} ms, user {scenes[-1]['user_speech']}")
            manifest["sets"][set_name] = scenes
    with open(os.path.join(args.out, "scenes.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
