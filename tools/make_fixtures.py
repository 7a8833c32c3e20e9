#!/usr/bin/env python3
"""Seeded reference-fixture generator for omnid (transformers 5.17 is the numerical truth).

Default (no arguments): rebuilds tests/fixtures/{audio,models/tiny-a,models/tiny-b,golden/tiny-a,golden/tiny-b}
bit-identically (same machine, same package versions). `--full-width --layers N --out DIR` makes a checkpoint with
the release's widths and N thinker layers plus the same goldens, on CUDA when present (not committed).
Layout of the outputs: tests/fixtures/README.md.
"""
import argparse
import lzma
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixturelib import audio_clips, checkpoint, configs, golden, speech  # noqa: E402
from fixturelib.prompts import PromptBuilder  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")

# name -> build recipe. seed drives every random number of that model; std = matrix init std; eos_boost scales the
# lm_head row of <|im_end|> and the codec_head row of codec EOS so greedy runs reach both end-of-turn paths.
# talker_max overrides SPEECH_CASES' talker_max_new_tokens per case (tiny-a audio_aiden: its code predictor has a
# near-tie, top-2 gap 4e-5, at frame 12, so that run is cut at 12 talker tokens = 11 frames).
MODELS = {
    "tiny-a": dict(config=configs.TINY_A, seed=1001, std=0.08, eos_boost=(6.5, 3.3), sharded=True, style_457=True,
                   talker_max={"audio_aiden": 12}),
    "tiny-b": dict(config=configs.TINY_B, seed=2002, std=0.08, eos_boost=(16.0, 4.6), sharded=False,
                   style_457=False, talker_max={}),
}

SYSTEM_ROBOT = "You are a helpful voice assistant on a robot. Answer briefly."
SYSTEM_QWEN = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
               "auditory and visual inputs, as well as generating text and speech.")


def text_cases(builder):
    raw = builder.encode("The quick brown fox") + [0, 151643, 100000, 42, 151644, 872]
    return {
        "ids": dict(ids=raw, meta=dict(system=None, prompt=None,
                                       note="raw ids, no chat template (omni-run --ids)")),
        "chat_system": dict(ids=builder.chat("What can you do for me?", system=SYSTEM_ROBOT),
                            meta=dict(system=SYSTEM_ROBOT, prompt="What can you do for me?",
                                      note="ChatML with a system turn, add_generation_prompt")),
        "chat_plain": dict(ids=builder.chat("Tell me a short story about a cat."),
                           meta=dict(system=None, prompt="Tell me a short story about a cat.",
                                     note="ChatML without a system turn, add_generation_prompt")),
    }


AUDIO_CASES = {  # clip -> (prompt text after the audio, system prompt)
    "short_0p73s": ("What did you hear?", None),
    "mid_3p37s": ("Answer the question in the audio.", SYSTEM_QWEN),
    "long_9p6s": ("Summarize the audio.", None),
}

SPEECH_CASES = {  # case -> (speaker, clip or None, prompt, system, thinker_max_new_tokens, talker_max_new_tokens)
    "text_ethan": ("ethan", None, "What time is it?", SYSTEM_ROBOT, 10, 30),
    "audio_aiden": ("aiden", "short_0p73s", "Reply to what you heard.", None, 8, 30),
}


def find_tokenizer(explicit):
    candidates = [explicit, os.environ.get("OMNI_TOKENIZER")]
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    packed = os.path.join(FIXTURES, "tokenizer", "tokenizer.json.xz")
    if os.path.isfile(packed):
        out = os.path.join("/tmp", "omni_fixture_tokenizer.json")
        with lzma.open(packed) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return out
    sys.exit("make_fixtures: no tokenizer.json found (pass --tokenizer PATH)")


def write_goldens(model, model_dir, golden_dir, features_root, builder, waves, text_steps, audio_steps, log,
                  talker_max_overrides=None):
    from transformers import WhisperFeatureExtractor
    if os.path.isdir(golden_dir):
        shutil.rmtree(golden_dir)
    for case, spec in text_cases(builder).items():
        meta = golden.text_case(model, os.path.join(golden_dir, "text", case), case, spec["ids"], text_steps,
                                spec["meta"])
        log(f"  text/{case}: P={len(spec['ids'])} min_top2_gap={meta['min_top2_gap']} "
            f"im_end={meta['im_end_in_greedy']} recompute_diff={meta['recompute_max_abs_diff']:.2e}")
    fe = WhisperFeatureExtractor.from_pretrained(model_dir)
    mm_by_clip = {}
    for clip, (prompt, system) in AUDIO_CASES.items():
        meta, mm = golden.audio_case(model, fe, builder, os.path.join(golden_dir, "audio", clip),
                                     os.path.join(features_root, clip), clip, waves[clip], prompt, system,
                                     audio_steps)
        mm_by_clip[clip] = (mm, meta["audio_tokens"])
        log(f"  audio/{clip}: frames={meta['mel_frames']} tokens={meta['audio_tokens']} "
            f"min_top2_gap={meta['min_top2_gap']} recompute_diff={meta['recompute_max_abs_diff']:.2e}")
    for case, (speaker, clip, prompt, system, thinker_max, talker_max) in SPEECH_CASES.items():
        mm, n_audio = mm_by_clip[clip] if clip else ({}, 0)
        ids = builder.chat(prompt, system=system, audio_tokens=n_audio)
        talker_max = (talker_max_overrides or {}).get(case, talker_max)
        meta = speech.speech_case(model, os.path.join(golden_dir, "speech", case), ids, speaker, thinker_max,
                                  talker_max, mm, dict(system=system, prompt=prompt, audio_clip=clip))
        log(f"  speech/{case}: thinker_eos={meta['thinker_eos_reached']} frames={meta['frames']} "
            f"talker_eos={meta['eos_reached']} clipped={meta['waveform_clipped_fraction']} "
            f"rms={meta['waveform_rms']} min_codec_gap={meta['min_codec_top2_gap']} "
            f"min_cp_gap={meta['min_code_predictor_top2_gap']}")


def make_tiny(names, args, log):
    builder = PromptBuilder(find_tokenizer(args.tokenizer))
    audio_dir = os.path.join(FIXTURES, "audio")
    if args.reuse_audio:
        waves = audio_clips.load_clips(audio_dir)
    else:
        waves = audio_clips.make_clips(audio_dir)
    for name in names:
        recipe = MODELS[name]
        start = time.time()
        model_dir = os.path.join(FIXTURES, "models", name)
        built = checkpoint.build_random_model(recipe["config"], recipe["seed"], recipe["std"], recipe["eos_boost"])
        checkpoint.save_checkpoint(built, model_dir, recipe["sharded"], recipe["style_457"])
        for fname in os.listdir(model_dir):
            if os.path.getsize(os.path.join(model_dir, fname)) >= 5_000_000:
                raise RuntimeError(f"{name}/{fname} is 5 MB or larger")
        model = checkpoint.load_float32(model_dir)
        checkpoint.check_reload(built, model)
        del built
        log(f"{name}: checkpoint saved and reloaded ({time.time() - start:.1f}s)")
        torch.manual_seed(recipe["seed"])
        write_goldens(model, model_dir, os.path.join(FIXTURES, "golden", name),
                      os.path.join(FIXTURES, "golden", "audio"), builder, waves,
                      args.text_steps, args.audio_steps, log, recipe["talker_max"])
        log(f"{name}: done ({time.time() - start:.1f}s)")


def make_full_width(args, log):
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = configs.full_width(args.layers, talker_layers=args.talker_layers, audio_layers=args.audio_layers,
                                code2wav_layers=args.code2wav_layers, shrink=args.reduced_width)
    builder = PromptBuilder(find_tokenizer(args.tokenizer))
    waves = audio_clips.load_clips(os.path.join(FIXTURES, "audio"))
    model_dir = os.path.join(args.out, "models", "full-width")
    start = time.time()
    built = checkpoint.build_random_model(config, args.seed, args.std, (1.0, 1.0))
    checkpoint.save_checkpoint(built, model_dir, sharded=True, style_457=True, max_shard_size="4GB")
    del built
    log(f"full-width: checkpoint saved ({time.time() - start:.1f}s)")
    model = checkpoint.load_float32(model_dir, device=device)
    log(f"full-width: reloaded on {device} ({time.time() - start:.1f}s)")
    write_goldens(model, model_dir, os.path.join(args.out, "golden", "full-width"),
                  os.path.join(args.out, "golden", "audio"),
                  builder, waves, args.text_steps,
                  args.audio_steps, log)
    log(f"full-width: done ({time.time() - start:.1f}s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(MODELS), action="append", help="rebuild only this tiny model")
    parser.add_argument("--reuse-audio", action="store_true",
                        help="use the committed tests/fixtures/audio/*.wav instead of re-synthesising them")
    parser.add_argument("--tokenizer", help="tokenizer.json (default: shared copy or tests/fixtures/tokenizer)")
    parser.add_argument("--text-steps", type=int, default=24)
    parser.add_argument("--audio-steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on it)")
    full = parser.add_argument_group("full-width mode (release widths, few layers; not committed)")
    full.add_argument("--full-width", action="store_true")
    full.add_argument("--layers", type=int, default=2, help="thinker layers")
    full.add_argument("--talker-layers", type=int, default=2)
    full.add_argument("--audio-layers", type=int, default=2)
    full.add_argument("--code2wav-layers", type=int, default=2)
    full.add_argument("--out", help="output root: models/full-width/ and golden/{full-width,audio}/ inside")
    full.add_argument("--seed", type=int, default=3003)
    full.add_argument("--std", type=float, default=0.02)
    full.add_argument("--cpu", action="store_true", help="do not use CUDA even if present")
    full.add_argument("--reduced-width", type=int, default=1,
                      help="divide the release widths by this factor (tests the full-width code path cheaply)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)

    def log(msg):
        print(msg, flush=True)

    if args.full_width:
        if not args.out:
            parser.error("--full-width needs --out DIR")
        make_full_width(args, log)
    else:
        make_tiny(args.only or list(MODELS), args, log)


if __name__ == "__main__":
    main()
