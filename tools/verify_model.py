#!/usr/bin/env python3
"""Checks omni-run against transformers goldens for one checkpoint (reference tooling, not run time).

The goldens are what tools/make_fixtures.py writes (tests/fixtures/README.md): text/<case>, audio/<clip>,
speech/<case>. For each case omni-run runs the way a user would (--ids, --system/--prompt, --audio, --speech)
and the outputs are compared: prompt tokens and greedy tokens identical, logits within --logits-tol relative
(‖a−b‖/‖b‖ over the recorded columns), speech waveform within 1e-3 relative over the frames where both get
the same inputs (see tests/golden/test_session_speech_golden.cpp).

  python3 tools/verify_model.py --omni-run build/tools/omni-run --model DIR --golden GOLDEN_DIR \
      [--audio-dir tests/fixtures/audio] [--device cpu|cuda] [--dtype f32|bf16] [--logits-tol 1e-3]
Exit status 0 when every case agrees.
"""
import argparse, json, os, subprocess, sys, tempfile
import numpy as np


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def read_float_wav(path):
    """Samples of a mono IEEE-float WAV (what omni-run --speech writes)."""
    raw = open(path, "rb").read()
    pos = 12
    while pos + 8 <= len(raw):
        size = int.from_bytes(raw[pos + 4:pos + 8], "little")
        if raw[pos:pos + 4] == b"data":
            return np.frombuffer(raw[pos + 8:pos + 8 + size], dtype="<f4")
        pos += 8 + size + (size & 1)
    raise RuntimeError(f"{path}: no data chunk")


def omni_run(args, extra):
    cmd = [args.omni_run, "--model", args.model, "--device", args.device, "--json", "--greedy"] + extra
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"omni-run failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout)


def chat_flags(meta, audio_dir):
    flags = []
    if meta.get("system"):
        flags += ["--system", meta["system"]]
    if meta.get("prompt") is not None:
        flags += ["--prompt", meta["prompt"]]
    clip = meta.get("audio_clip")
    if clip:
        flags += ["--audio", os.path.join(audio_dir, clip + ".wav")]
    return flags


def check_logits(args, case, flags, steps, tmp):
    npy = os.path.join(tmp, "logits.npy")
    out = omni_run(args, flags + ["--max-new-tokens", str(steps), "--logits-out", npy])
    greedy = np.load(os.path.join(case, "greedy.npy")).tolist()
    n = len(out["tokens"])  # omni-run stops at <|im_end|>; the golden does not
    prompt_ok = out["prompt_tokens"] == np.load(os.path.join(case, "prompt_ids.npy")).tolist()
    cols = np.load(os.path.join(case, "logit_cols.npy"))
    sub = np.load(os.path.join(case, "logits_sub.npy"))
    mine = np.load(npy)[:, cols]
    diverge = next((s for s in range(n) if out["tokens"][s] != greedy[s]), n)
    # Logits are comparable up to (and including) the first differing choice.
    errs = [rel(mine[s], sub[s]) for s in range(min(n, diverge + 1))]
    err = max(errs)
    ok = prompt_ok and diverge == n and err < args.logits_tol
    msg = f"{n} tokens {'match' if diverge == n else f'DIFFER from step {diverge}'}, logits rel err {err:.2e}"
    if not prompt_ok:
        msg += ", prompt tokens DIFFER"
    if not ok:
        msg += " (per step: " + " ".join(f"{e:.1e}" for e in errs) + ")"
        if diverge < n:
            top2 = np.sort(sub[diverge])[-2:]
            msg += f"; transformers' top-2 gap at step {diverge}: {top2[1] - top2[0]:.3g}"
    return ok, msg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--omni-run", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--golden", required=True, help="the golden directory of this model (text/, audio/, speech/)")
    ap.add_argument("--audio-dir", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "audio"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="", help="omni-run --dtype (activations: f32 or bf16; default: the device's)")
    ap.add_argument("--logits-tol", type=float, default=1e-3)
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for stage in ("text", "audio", "speech"):
            root = os.path.join(args.golden, stage)
            for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
                case = os.path.join(root, name)
                meta = json.load(open(os.path.join(case, "meta.json")))
                try:
                    if stage == "text" and name == "ids":
                        ids = ",".join(str(i) for i in np.load(os.path.join(case, "prompt_ids.npy")).tolist())
                        ok, msg = check_logits(args, case, ["--ids", ids], meta["steps"], tmp)
                    elif stage == "text":
                        ok, msg = check_logits(args, case, chat_flags(meta, args.audio_dir), meta["steps"], tmp)
                    elif stage == "audio":
                        m = dict(meta, audio_clip=name)
                        ok, msg = check_logits(args, case, chat_flags(m, args.audio_dir), meta["steps"], tmp)
                    else:
                        wav_out = os.path.join(tmp, "speech.wav")
                        out = omni_run(args, chat_flags(meta, args.audio_dir) + [
                            "--max-new-tokens", str(meta["thinker_max_new_tokens"]), "--speech", wav_out,
                            "--speaker", meta["speaker"], "--max-speech-frames", str(meta["talker_max_new_tokens"] - 1)])
                        want = np.load(os.path.join(case, "waveform.npy")).ravel()
                        got = read_float_wav(wav_out)
                        thinker = np.load(os.path.join(case, "thinker_tokens.npy")).tolist()
                        same = meta["frames"]
                        if meta.get("thinker_hit_token_limit"):
                            same = min(same, len(thinker) - 1)
                        n = max(0, same * 1920 - 555)
                        err = rel(got[:n], want[:n]) if n else 0.0
                        ok = out["tokens"] == thinker and len(got) >= n and err < 1e-3
                        msg = f"{same}/{meta['frames']} frames compared, waveform rel err {err:.2e}"
                except Exception as e:  # a failing case is reported, the others still run
                    ok, msg = False, str(e)
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {stage}/{name}: {msg}")
    print(f"{failures} case(s) failed" if failures else "all cases agree with transformers")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
