"""Speech-like test clips: espeak-ng → sox (16 kHz mono PCM16) → trimmed/padded to an exact sample count.

The committed WAVs are the truth for the goldens; the float waveform everywhere is int16 / 32768.
"""
import os
import subprocess
import tempfile
import wave

import numpy as np

SAMPLE_RATE = 16000

# name -> (text, exact length in samples). Lengths cover: < 1 s with len % 160 != 0 (73 mel frames, 10 tokens),
# a partial last 100-frame chunk (337 frames, 44 tokens) and > 8 s (960 frames, 125 tokens = windows 104 + 21).
CLIPS = {
    "short_0p73s": ("Hi there.", 11693),
    "mid_3p37s": ("Please tell me what the weather will be like tomorrow morning.", 53920),
    "long_9p6s": ("The quick brown fox jumps over the lazy dog. A robot that listens carefully can answer "
                  "questions about the kitchen, the garden, and the red ball.", 153600),
}


def synthesize(text, num_samples):
    """espeak-ng (voice en-us, speed 175) resampled by sox; returns int16 samples of exactly num_samples.

    sox runs with -R (repeatable) and -D (no dither): its default dither is seeded randomly per run."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        resampled = os.path.join(tmp, "16k.wav")
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "175", "-w", raw, text], check=True)
        subprocess.run(["sox", "-R", "-D", raw, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                        resampled], check=True)
        samples = read_wav_int16(resampled)
    if len(samples) >= num_samples:
        return samples[:num_samples]
    return np.concatenate([samples, np.zeros(num_samples - len(samples), dtype=np.int16)])


def read_wav_int16(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono PCM16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def write_wav_int16(path, samples, rate=SAMPLE_RATE):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def make_clips(out_dir):
    """Writes <out_dir>/<clip>.wav for every clip; returns {name: float32 waveform}."""
    os.makedirs(out_dir, exist_ok=True)
    waves = {}
    for name, (text, num_samples) in CLIPS.items():
        path = os.path.join(out_dir, name + ".wav")
        write_wav_int16(path, synthesize(text, num_samples))
        # Read back what was committed, so the goldens come from the file bytes.
        waves[name] = read_wav_int16(path).astype(np.float32) / 32768.0
    return waves


def load_clips(out_dir):
    return {name: read_wav_int16(os.path.join(out_dir, name + ".wav")).astype(np.float32) / 32768.0
            for name in CLIPS}
