#!/usr/bin/env python3
"""Seeded fixtures for the vision preprocessing tests (transformers 5.17 is the numerical truth).

Writes tests/fixtures/images/ (small procedurally drawn "photographs": PNG, JPEG, RGBA, gray, palette, and the frames
of two short clips) and tests/fixtures/golden/vision_preprocess/ (what transformers' Qwen2-VL image and video
processors make of them). Re-running rewrites the same bytes (same machine, same package versions).

Per case directory (layout is a contract with tests/golden/test_vision_preprocess_golden.cpp):
  meta.json          source file(s), min/max pixels used, grid [t, h, w], resized size, processor class
  decoded.png        the source as PIL decodes it to RGB (alpha composited on white), lossless
  resized.png        transformers' resized 8-bit image (video: resized_NN.png per frame)
  pixel_values.npy   (small cases only) transformers' pixel_values / pixel_values_videos, float32
Also golden/vision_preprocess/smart_resize.json and frame_sampling.json (inputs and transformers' answers).

`--tiny-v` (also part of the default run) builds the vision model tests/fixtures/models/tiny-v (fixturelib.configs.TINY_V,
seeded like tiny-a/b, bf16, sharded) and tests/fixtures/golden/tiny-v/vision_tower/<case>/: the tower's outputs for
the processor's pixel_values of the preprocessing cases, from the reloaded float32 model with eager attention:
  meta.json        preprocessing case the pixels come from, grid_thw, deepstack_visual_indexes
  pooler.npy       merger output [t*h*w/4, out_hidden] (float32)
  deepstack_K.npy  DeepStack merger K's output, same shape
"""
import io
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

import transformers
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor, smart_resize
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.video_utils import VideoMetadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixturelib import checkpoint, configs  # noqa: E402

IMAGES = os.path.join(REPO, "tests", "fixtures", "images")
GOLDEN = os.path.join(REPO, "tests", "fixtures", "golden", "vision_preprocess")

# The checkpoint's preprocessor settings (patch 16, merge 2, temporal 2, 3136..12845056 pixels, CLIP mean/std as
# class defaults) and the Qwen3-Omni processor's video size defaults.
PREPROC = checkpoint.IMAGE_PREPROCESSOR
VIDEO_SIZE = {"shortest_edge": 128 * 32 * 32, "longest_edge": 768 * 32 * 32}


def scene(width, height, seed, kind="outdoor"):
    """A photograph-like picture: lit gradients, textured ground, soft shapes, sensor noise, lens blur."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    if kind == "outdoor":
        sky = np.stack([110 + 90 * y, 150 + 70 * y, 230 - 40 * y], -1) * np.ones((1, width, 1))
        horizon = 0.55 + 0.05 * np.sin(6.0 * x + rng.uniform(0, 6))
        ground = np.stack([70 + 60 * y, 110 + 40 * y, 40 + 20 * y], -1) * np.ones((1, width, 1))
        img = np.where((y > horizon)[..., None], ground, sky)
    else:  # indoor: a wall, a floor and a window light falloff
        wall = np.stack([200 - 40 * x, 185 - 30 * x, 160 - 20 * x], -1) * np.ones((height, 1, 1))
        floor = np.stack([120 + 30 * x, 80 + 20 * x, 50 + 10 * x], -1) * np.ones((height, 1, 1))
        img = np.where((y > 0.7)[..., None], floor, wall)
        img *= (0.75 + 0.35 * np.exp(-((x - 0.2) ** 2 + (y - 0.3) ** 2) * 6.0))[..., None]
    img += rng.normal(0, 9, (height // 4 + 1, width // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:height, :width]
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(pic)
    for _ in range(7):
        cx, cy = rng.uniform(0, width), rng.uniform(0.3 * height, height)
        r = rng.uniform(0.05, 0.2) * min(width, height)
        col = tuple(int(v) for v in rng.integers(20, 235, 3))
        if rng.uniform() < 0.5:
            d.ellipse([cx - r, cy - r, cx + r, cy + r * 0.8], fill=col)
        else:
            d.rectangle([cx - r, cy - r * 1.3, cx + r * 0.9, cy + r * 0.4], fill=col, outline=(30, 30, 30))
    d.text((width * 0.1, height * 0.1), "EXIT 7", fill=(250, 250, 240))
    pic = pic.filter(ImageFilter.GaussianBlur(0.8))
    noise = rng.normal(0, 3.0, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(pic, np.float64) + noise, 0, 255).astype(np.uint8), "RGB")


def save(img, name, **kw):
    path = os.path.join(IMAGES, name)
    img.save(path, **kw)
    return path


def to_rgb(pil):
    """RGB as omnid makes it: transparency composited onto white (qwen-omni-utils does this for RGBA)."""
    if pil.mode in ("RGBA", "LA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.split()[3])
        return white
    return pil.convert("RGB")


def chw(pil):
    return torch.from_numpy(np.asarray(pil, np.uint8).copy()).permute(2, 0, 1).contiguous()


def write_case(name, meta, decoded, resized_list, pixel_values=None):
    out = os.path.join(GOLDEN, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    if decoded is not None:
        decoded.save(os.path.join(out, "decoded.png"))
    if len(resized_list) == 1:
        Image.fromarray(resized_list[0]).save(os.path.join(out, "resized.png"))
    else:
        for i, r in enumerate(resized_list):
            Image.fromarray(r).save(os.path.join(out, "resized_%02d.png" % i))
    if pixel_values is not None:
        np.save(os.path.join(out, "pixel_values.npy"), np.ascontiguousarray(pixel_values.numpy().astype("<f4")))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


def image_case(proc, name, path, min_pixels, max_pixels, keep_pixels):
    src = Image.open(path)
    src.load()
    rgb = to_rgb(src)
    kw = dict(min_pixels=min_pixels, max_pixels=max_pixels)
    out = proc(images=[rgb], return_tensors="pt", **kw)
    grid = out["image_grid_thw"][0].tolist()
    h, w = grid[1] * 16, grid[2] * 16
    from transformers.image_processing_utils import SizeDict
    resized = proc.resize(chw(rgb)[None], size=SizeDict(shortest_edge=min_pixels, longest_edge=max_pixels),
                          resample=proc.resample, factor=32)[0]
    assert tuple(resized.shape[-2:]) == (h, w)
    meta = dict(kind="image", source=os.path.relpath(path, os.path.join(REPO, "tests", "fixtures")),
                source_mode=src.mode, width=rgb.width, height=rgb.height, min_pixels=min_pixels,
                max_pixels=max_pixels, grid_thw=grid, resized=[h, w], processor=type(proc).__name__,
                image_mean=list(proc.image_mean), image_std=list(proc.image_std),
                transformers=transformers.__version__, torch=torch.__version__)
    write_case(name, meta, rgb, [resized.permute(1, 2, 0).numpy()], out["pixel_values"] if keep_pixels else None)


def video_case(vproc, name, paths, size, keep_pixels):
    frames = [to_rgb(Image.open(p)) for p in paths]
    video = torch.stack([chw(f) for f in frames])  # T, C, H, W uint8
    out = vproc(videos=[video], return_tensors="pt", size=size, do_sample_frames=False, cap_pixels_per_frame=False)
    grid = out["video_grid_thw"][0].tolist()
    from transformers.image_processing_utils import SizeDict
    resized = vproc.resize(video[None], size=SizeDict(**size), resample=vproc.resample, factor=32,
                           cap_pixels_per_frame=False)[0]
    meta = dict(kind="video", frames=[os.path.relpath(p, os.path.join(REPO, "tests", "fixtures")) for p in paths],
                width=frames[0].width, height=frames[0].height, min_pixels=size["shortest_edge"],
                max_pixels=size["longest_edge"], grid_thw=grid, resized=list(resized.shape[-2:]),
                processor=type(vproc).__name__, transformers=transformers.__version__, torch=torch.__version__)
    write_case(name, meta, None, [r.permute(1, 2, 0).numpy() for r in resized],
               out["pixel_values_videos"] if keep_pixels else None)


TOWER_CASES = {  # golden case -> (preprocessing case, pixel key, grid key)
    "garden_image": "garden_png_identity",
    "street_image": "street_jpeg_resized",
    "pan_video": "pan_video_identity",
}


def make_tiny_v():
    model_dir = os.path.join(REPO, "tests", "fixtures", "models", "tiny-v")
    built = checkpoint.build_random_model(configs.TINY_V, 4004, 0.08, (6.5, 3.3))
    checkpoint.save_checkpoint(built, model_dir, sharded=True, style_457=False)
    for fname in os.listdir(model_dir):
        if os.path.getsize(os.path.join(model_dir, fname)) >= 5_000_000:
            raise RuntimeError(f"tiny-v/{fname} is 5 MB or larger")
    model = checkpoint.load_float32(model_dir)
    checkpoint.check_reload(built, model)
    del built
    visual = model.thinker.visual
    out_root = os.path.join(REPO, "tests", "fixtures", "golden", "tiny-v", "vision_tower")
    if os.path.isdir(out_root):
        shutil.rmtree(out_root)
    for case, src in TOWER_CASES.items():
        src_dir = os.path.join(GOLDEN, src)
        with open(os.path.join(src_dir, "meta.json")) as f:
            src_meta = json.load(f)
        pixels = torch.from_numpy(np.load(os.path.join(src_dir, "pixel_values.npy")))
        grid = torch.tensor([src_meta["grid_thw"]], dtype=torch.long)
        with torch.no_grad():
            out = visual(pixels, grid_thw=grid)
        out_dir = os.path.join(out_root, case)
        os.makedirs(out_dir)
        np.save(os.path.join(out_dir, "pooler.npy"), out.pooler_output.numpy().astype("<f4"))
        for k, ds in enumerate(out.deepstack_features):
            np.save(os.path.join(out_dir, "deepstack_%d.npy" % k), ds.numpy().astype("<f4"))
        with open(os.path.join(out_dir, "meta.json"), "w") as f:
            json.dump(dict(preprocess_case=src, grid_thw=src_meta["grid_thw"],
                           deepstack_visual_indexes=list(model.config.thinker_config.vision_config
                                                         .deepstack_visual_indexes),
                           transformers=transformers.__version__), f, indent=1, sort_keys=True)
            f.write("\n")
        print("tiny-v vision_tower", case, tuple(out.pooler_output.shape))
    with open(os.path.join(REPO, "tests", "fixtures", "golden", "tiny-v", "mrope_positions.json"), "w") as f:
        json.dump(mrope_cases(model.thinker), f)
        f.write("\n")
    print("tiny-v mrope_positions.json")
    chat_cases(model)
    speech_chat_cases(model)
    messages_cases(model)


def mrope_cases(thinker):
    """3-row positions from transformers' get_rope_index for prompts of text, audio, images and videos (ids
    built as the processor expands placeholders). Written to golden/tiny-v/mrope_positions.json."""
    from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import _get_feat_extract_output_lengths
    VS, VE, IMG, VID, AS, AE, AUD = 151652, 151653, 151655, 151656, 151669, 151670, 151675
    head = [151644, 872, 198]            # <|im_start|>user\n
    tail = [151645, 198, 151644, 77091, 198]  # <|im_end|>\n<|im_start|>assistant\n
    text = [785, 3974, 13876, 38835]

    def image(g):
        return [VS] + [IMG] * (g[0] * g[1] * g[2] // 4) + [VE]

    def video(g):
        return [VS] + [VID] * (g[0] * g[1] * g[2] // 4) + [VE]

    def audio(n):
        return [AS] + [AUD] * n + [AE]

    def av(g, spg, n):  # the processor's interleave: a video token first while its time <= the audio token's
        per = g[1] * g[2] // 4
        v = [k * spg * 13 for k in range(g[0]) for _ in range(per)]
        out, vi, ai = [], 0, 0
        while vi < len(v) and ai < n:
            if v[vi] <= ai:
                out.append(VID)
                vi += 1
            else:
                out.append(AUD)
                ai += 1
        out += [VID] * (len(v) - vi) + [AUD] * (n - ai)
        return [VS, AS] + out + [AE, VE]

    def frames_for(tokens):  # mel frames giving `tokens` audio tokens
        f = 1
        while int(_get_feat_extract_output_lengths(torch.tensor(f), 50)) != tokens:
            f += 1
        return f

    cases = []

    def add(name, ids, images=(), videos=(), audios=(), use_av=False):
        kw = dict(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                  use_audio_in_video=use_av)
        if images:
            kw["image_grid_thw"] = torch.tensor([g for g in images])
        if videos:
            kw["video_grid_thw"] = torch.tensor([g for g, _ in videos])
            kw["second_per_grids"] = torch.tensor([spg for _, spg in videos])
        if audios:
            kw["audio_seqlens"] = torch.tensor([frames_for(n) for n in audios])
        pos, delta = thinker.get_rope_index(**kw)
        cases.append(dict(name=name, ids=ids, images=[list(g) for g in images],
                          videos=[dict(grid=list(g), seconds_per_pair=spg) for g, spg in videos],
                          audio_tokens=list(audios), use_audio_in_video=use_av,
                          t=pos[0, 0].tolist(), h=pos[1, 0].tolist(), w=pos[2, 0].tolist(), delta=float(delta[0, 0])))

    add("one_image", head + image((1, 4, 6)) + text + tail, images=[(1, 4, 6)])
    add("two_images_text_between", head + image((1, 4, 6)) + text + image((1, 6, 4)) + text + tail,
        images=[(1, 4, 6), (1, 6, 4)])
    add("video_fps2", head + video((2, 4, 4)) + text + tail, videos=[((2, 4, 4), 1.0)])
    add("video_fps3_fractional_time", head + video((3, 4, 6)) + text + tail, videos=[((3, 4, 6), 2.0 / 3.0)])
    add("audio_then_image", head + audio(13) + image((1, 4, 4)) + text + tail, images=[(1, 4, 4)], audios=[13])
    add("image_and_video", head + image((1, 4, 6)) + video((2, 4, 4)) + text + tail, images=[(1, 4, 6)],
        videos=[((2, 4, 4), 1.0)])
    add("video_with_audio", head + av((2, 4, 4), 1.0, 26) + text + tail, videos=[((2, 4, 4), 1.0)], audios=[26],
        use_av=True)
    add("video_with_short_audio", head + av((3, 4, 4), 0.5, 5) + text + tail, videos=[((3, 4, 4), 0.5)],
        audios=[5], use_av=True)
    return cases


CHAT_CASES = {  # case -> turns: (image files under tests/fixtures/images, text[, clip under tests/fixtures/audio])
    "garden_identity": [(["garden_224x160.png"], "What is in this picture?")],
    "street_resized": [(["street_250x190.jpg"], "Describe the street.")],
    "image_then_text": [(["garden_224x160.png"], "What is in this picture?"), ([], "And what colour is it?")],
    "audio_and_image": [(["street_250x190.jpg"], "Answer the question about the picture.", "short_0p73s")],
}
CHAT_STEPS = 12  # greedy steps recorded per turn


SPEECH_CASES = {  # case -> turns, as CHAT_CASES; the last turn's answer is spoken
    "garden_spoken": [(["garden_224x160.png"], "What is in this picture?")],
    "image_then_spoken_text": [(["garden_224x160.png"], "What is in this picture?"), ([], "And what colour is it?")],
}
SPEECH_THINKER_TOKENS, SPEECH_TALKER_TOKENS = 8, 12  # the spoken turn's limits (frames = talker tokens - 1)


class Conversation:
    """Builds a conversation turn by turn as the engine renders it (see chat_cases) and answers each earlier
    turn as the engine does: greedy up to CHAT_STEPS tokens, cut after <|im_end|>."""
    IM_END, NEWLINE = 151645, 198

    def __init__(self, model):
        from fixturelib import audio_clips, tokenizer_file
        from fixturelib.prompts import PromptBuilder
        from transformers import WhisperFeatureExtractor
        self.model = model
        self.builder = PromptBuilder(os.path.join(tokenizer_file.committed_tokenizer_dir(), "tokenizer.json"))
        self.proc = Qwen2VLImageProcessor(**PREPROC)
        self.fe = WhisperFeatureExtractor.from_pretrained(os.path.join(REPO, "tests", "fixtures", "models", "tiny-v"))
        self.waves = audio_clips.load_clips(os.path.join(REPO, "tests", "fixtures", "audio"))
        self.conv, self.pixels, self.grids, self.turn_ids, self.answers, self.audio_mm = [], [], [], [], [], {}

    def add_turn(self, files, text, *clip):
        """Appends one user turn (and the previous answer's closing tokens); returns its ids."""
        from fixturelib import golden
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths
        ids = []
        if self.turn_ids:  # the previous answer as the engine closes it
            ans = self.answers[-1]
            ids += ([] if ans and ans[-1] == self.IM_END else [self.IM_END]) + [self.NEWLINE]
        rendered = "<|im_start|>user\n"
        if clip:  # one clip per conversation here: the audio span comes first in the turn
            assert not self.audio_mm, "one clip per conversation"
            features, mask = golden.audio_features(self.fe, self.waves[clip[0]])
            n_audio = int(_get_feat_extract_output_lengths(torch.tensor(features.shape[-1])))
            self.audio_mm = dict(input_features=features[None], feature_attention_mask=mask)
            rendered += "<|audio_start|>" + "<|audio_pad|>" * n_audio + "<|audio_end|>"
        for name in files:
            rgb = to_rgb(Image.open(os.path.join(IMAGES, name)))
            o = self.proc(images=[rgb], return_tensors="pt")
            self.pixels.append(o["pixel_values"])
            g = o["image_grid_thw"][0].tolist()
            self.grids.append(g)
            rendered += "<|vision_start|>" + "<|image_pad|>" * (g[0] * g[1] * g[2] // 4) + "<|vision_end|>"
        rendered += text + "<|im_end|>\n<|im_start|>assistant\n"
        ids += self.builder.encode(rendered)
        self.turn_ids.append(ids)
        self.conv += ids
        return ids

    def mm(self):
        mm = dict(self.audio_mm)
        if self.pixels:
            mm.update(pixel_values=torch.cat(self.pixels), image_grid_thw=torch.tensor(self.grids, dtype=torch.long))
        return mm

    def greedy(self):
        """CHAT_STEPS greedy tokens for the conversation so far: (tokens, logits, recompute diff)."""
        from fixturelib import golden
        tokens, logits, recompute = golden.thinker_greedy(self.model, self.conv, CHAT_STEPS, self.mm())
        return tokens.tolist(), logits, recompute

    def answer(self):
        """The engine's answer to the last turn, appended to the conversation."""
        tokens = self.greedy()[0]
        if self.IM_END in tokens:
            tokens = tokens[:tokens.index(self.IM_END) + 1]
        self.answers.append(tokens)
        self.conv += tokens

    def save_turns(self, out_dir):
        from fixturelib import golden
        for k, ids in enumerate(self.turn_ids):
            golden.save_i64(os.path.join(out_dir, "turn_%d_ids.npy" % k), ids)


def turns_meta(turns):
    return [dict(images=[os.path.join("images", f) for f in t[0]], text=t[1],
                 audio=os.path.join("audio", t[2] + ".wav") if len(t) > 2 else None) for t in turns]


def chat_cases(model):
    """Images in the thinker's prompt, end to end (tests/golden/test_image_chat_golden.cpp).

    Each user turn is rendered as the engine renders it: <|im_start|>user\n, the audio span (the clip's
    <|audio_pad|> count from its mel frames) when the turn has a clip, per image <|vision_start|> +
    <|image_pad|> x (t*h*w/4) + <|vision_end|>, the text, <|im_end|>\n<|im_start|>assistant\n. An earlier turn's
    answer is the engine's: greedy up to CHAT_STEPS tokens, cut after <|im_end|>, then <|im_end|> (when the answer
    did not end) and \n. The last turn is recorded like the text goldens: thinker.generate over the whole
    conversation with every image's pixel_values (the processor's, from the same files the engine reads), greedy,
    never stopped at <|im_end|>, with an uncached forward as a cross-check.
    Per case directory golden/tiny-v/image_chat/<case>/:
      meta.json         turns (images, text), image grids, steps, answers of the earlier turns
      turn_K_ids.npy    the ids turn K adds (K = 0..), earlier answers' closing tokens included
      greedy.npy, logit_cols.npy, logits_sub.npy, logits_full0.npy   the last turn, as golden.text_case writes
    """
    from fixturelib import golden
    root = os.path.join(REPO, "tests", "fixtures", "golden", "tiny-v", "image_chat")
    if os.path.isdir(root):
        shutil.rmtree(root)
    for case, turns in CHAT_CASES.items():
        out_dir = os.path.join(root, case)
        os.makedirs(out_dir)
        c = Conversation(model)
        for k, turn in enumerate(turns):
            c.add_turn(*turn)
            if k + 1 < len(turns):
                c.answer()
        tokens, logits, recompute = c.greedy()
        c.save_turns(out_dir)
        golden.save_i64(os.path.join(out_dir, "greedy.npy"), tokens)
        golden.write_greedy_logits(out_dir, case, logits)
        golden.save_f32(os.path.join(out_dir, "logits_full0.npy"), logits[0])
        gaps = golden.top2_gaps(logits)
        first_end = tokens.index(c.IM_END) if c.IM_END in tokens else None
        golden.save_json(os.path.join(out_dir, "meta.json"), dict(
            turns=turns_meta(turns), image_grids=c.grids, steps=CHAT_STEPS, earlier_answers=c.answers,
            first_im_end_step=first_end, min_top2_gap=round(gaps.min().item(), 6), recompute_max_abs_diff=recompute,
            transformers=transformers.__version__))
        print("tiny-v image_chat", case, "grids", c.grids, "first <|im_end|> at", first_end,
              "min gap %.3g" % gaps.min().item(), "recompute diff %.2g" % recompute)


def speech_chat_cases(model):
    """Spoken answers in conversations with images (tests/golden/test_image_chat_golden.cpp): the talker hears
    every user turn, image placeholders through its hidden projection, with the 3-row positions of the image
    spans (docs/model.md §3.7). Earlier turns as chat_cases answers them; the last turn through transformers'
    greedy generate(return_audio=True) (fixturelib.speech.speech_case: talker prefill, codes, waveform).
    Per case directory golden/tiny-v/image_speech/<case>/: turn_K_ids.npy, meta.json (turns, grids, earlier
    answers) and speech_case's files.
    """
    from fixturelib import speech
    root = os.path.join(REPO, "tests", "fixtures", "golden", "tiny-v", "image_speech")
    if os.path.isdir(root):
        shutil.rmtree(root)
    for case, turns in SPEECH_CASES.items():
        out_dir = os.path.join(root, case)
        c = Conversation(model)
        for k, turn in enumerate(turns):
            c.add_turn(*turn)
            if k + 1 < len(turns):
                c.answer()
        meta = speech.speech_case(model, out_dir, c.conv, "Ethan", SPEECH_THINKER_TOKENS, SPEECH_TALKER_TOKENS,
                                  c.mm(), dict(turns=turns_meta(turns), image_grids=c.grids, steps=CHAT_STEPS,
                                               earlier_answers=c.answers, transformers=transformers.__version__))
        c.save_turns(out_dir)
        print("tiny-v image_speech", case, {k: meta[k] for k in ("frames", "prefill_rows", "thinker_eos_reached",
                                                                  "min_codec_top2_gap")})


MESSAGES_CASES = {  # case -> (messages as a conversation file holds them, tools); paths relative to the case dir
    "two_images_text_between": ([
        {"role": "system", "content": "You are a robot's eyes."},
        {"role": "user", "content": [
            {"type": "text", "text": "Compare the garden "},
            {"type": "image", "image": "../../../../images/garden_224x160.png"},
            {"type": "text", "text": " with the street "},
            {"type": "image", "image": "../../../../images/street_250x190.jpg"},
            {"type": "text", "text": ". Which is brighter?"}]}], None),
    "answered_image_turn": ([
        {"role": "user", "content": [{"type": "image", "image": "../../../../images/garden_224x160.png"},
                                     {"type": "text", "text": "What is in this picture?"}]},
        {"role": "assistant", "content": "A garden with a path and trees."},
        {"role": "user", "content": "And what colour is the path?"}], None),
    "image_before_audio": ([
        {"role": "user", "content": [{"type": "image", "image": "../../../../images/street_250x190.jpg"},
                                     {"type": "audio", "audio": "../../../../audio/short_0p73s.wav"},
                                     {"type": "text", "text": "Answer the question about the picture."}]}], None),
    "tool_call_and_result": ([
        {"role": "system", "content": "You control a robot arm."},
        {"role": "user", "content": [{"type": "image", "image": "../../../../images/garden_224x160.png"},
                                     {"type": "text", "text": "Move the arm above the tree."}]},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "move_arm", "arguments": {"x": 0.25, "y": -0.1, "z": 0.4, "speed": "slow"}}}]},
        {"role": "tool", "content": "{\"ok\": true, \"reached\": [0.25, -0.1, 0.4]}"},
        {"role": "user", "content": "Now close the gripper."}], "move_arm"),
    "video_then_text": ([
        {"role": "user", "content": [{"type": "video", "video": "../../../../videos/pan", "fps": 2.0},
                                     {"type": "text", "text": "Which way does the camera move?"}]}], None),
    "image_and_video": ([
        {"role": "user", "content": [{"type": "text", "text": "This is the room "},
                                     {"type": "image", "image": "../../../../images/garden_224x160.png"},
                                     {"type": "text", "text": " and this a clip at 1 fps "},
                                     {"type": "video", "video": "../../../../videos/pan", "fps": 1.0},
                                     {"type": "text", "text": ". Do they match?"}]}], None),
    "video_with_its_audio": ([
        {"role": "user", "content": [{"type": "video", "video": "../../../../videos/pan", "fps": 2.0,
                                      "audio": "../../../../audio/short_0p73s.wav"},
                                     {"type": "text", "text": "What do you see and hear?"}]}], None),
}
# A spoken answer about a video given with its soundtrack has no reference: transformers 5.17 fails in the
# talker's get_rope_index (use_audio_in_video branch: "'Qwen3OmniMoeTalkerConfig' object has no attribute
# 'audio_config'"), so only the video without audio is recorded.
SPOKEN_MESSAGES_CASES = {  # case -> the MESSAGES_CASES conversation whose answer is spoken
    "video_spoken": "video_then_text",
}
VIDEO_FRAMES = ["pan_%02d.png" % i for i in range(4)]  # tests/fixtures/videos/pan/: the pan clip's first 4 frames


def messages_cases(model):
    """Whole conversations in the Hugging Face chat form (omni-run --messages, Session::respond_messages;
    tests/golden/test_messages_golden.cpp). Each is rendered by transformers' apply_chat_template with
    gen_tool_fixtures.TEMPLATE (the Omni content items in the order listed, tools in the system turn, calls and
    results as the Qwen3 template writes them), each single placeholder expanded to its token count (the image's
    t*h*w/4 from the processor's grid, the clip's from its mel frames), encoded with the real tokenizer and answered
    by thinker.generate with every image's pixel_values and the clip's features (greedy, CHAT_STEPS tokens).
    Per case directory golden/tiny-v/messages/<case>/:
      messages.json     the conversation as a file holds it (paths relative to this directory)
      tools.json        the tools (only when the case has tools)
      prompt_ids.npy    the rendered and expanded prompt
      greedy.npy, logit_cols.npy, logits_sub.npy, meta.json   as chat_cases writes them (no full logits row)
    """
    from fixturelib import audio_clips, golden, tokenizer_file
    from fixturelib.prompts import PromptBuilder
    from transformers import PreTrainedTokenizerFast, WhisperFeatureExtractor
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths
    import gen_tool_fixtures as gtf
    tok_dir = tokenizer_file.committed_tokenizer_dir()
    hf_tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"))
    builder = PromptBuilder(os.path.join(tok_dir, "tokenizer.json"))
    proc = Qwen2VLImageProcessor(**PREPROC)
    fe = WhisperFeatureExtractor.from_pretrained(os.path.join(REPO, "tests", "fixtures", "models", "tiny-v"))
    root = os.path.join(REPO, "tests", "fixtures", "golden", "tiny-v", "messages")
    if os.path.isdir(root):
        shutil.rmtree(root)
    tools_by_name = {"move_arm": [gtf.MOVE_ARM, gtf.SET_GRIPPER]}
    vproc = Qwen2VLVideoProcessor(**PREPROC)
    video_dir = os.path.join(REPO, "tests", "fixtures", "videos", "pan")
    os.makedirs(video_dir, exist_ok=True)
    for k, name in enumerate(VIDEO_FRAMES):
        shutil.copyfile(os.path.join(IMAGES, name), os.path.join(video_dir, "frame_%02d.png" % k))
    def build(messages, tools, out_dir):
        """The prompt ids (the template's rendering, placeholders expanded as the processor does) and the
        multimodal inputs of one conversation; paths relative to out_dir."""
        rendered = hf_tok.apply_chat_template(messages, tools=tools, chat_template=gtf.TEMPLATE, tokenize=False,
                                              add_generation_prompt=True)
        pixels, grids, counts, audio_mm = [], [], [], {}
        vpixels, vgrids, vseconds = [], [], []
        for m in messages:
            if not isinstance(m.get("content"), list):
                continue
            for item in m["content"]:
                if item["type"] == "image":
                    rgb = to_rgb(Image.open(os.path.normpath(os.path.join(out_dir, item["image"]))))
                    o = proc(images=[rgb], return_tensors="pt")
                    pixels.append(o["pixel_values"])
                    g = o["image_grid_thw"][0].tolist()
                    grids.append(g)
                    counts.append(("<|image_pad|>", g[0] * g[1] * g[2] // 4))
                elif item["type"] == "video":
                    folder = os.path.normpath(os.path.join(out_dir, item["video"]))
                    frames = [to_rgb(Image.open(os.path.join(folder, f))) for f in sorted(os.listdir(folder))]
                    video = torch.stack([chw(f) for f in frames])  # T, C, H, W uint8: every frame, as given
                    o = vproc(videos=[video], return_tensors="pt", size=VIDEO_SIZE, do_sample_frames=False,
                              cap_pixels_per_frame=False)
                    vpixels.append(o["pixel_values_videos"])
                    g = o["video_grid_thw"][0].tolist()
                    vgrids.append(g)
                    spg = 2.0 / item["fps"]  # temporal_patch_size / fps, as the processor computes it
                    vseconds.append(spg)
                    if "audio" not in item:
                        counts.append(("<|video_pad|>", g[0] * g[1] * g[2] // 4))
                        continue
                    # use_audio_in_video: the video's soundtrack is interleaved with it by time, as the processor
                    # does (video token of pair t at t * spg * 13, audio token j at j; the video first on a tie).
                    assert not audio_mm, "one clip per conversation (transformers pads several clips together)"
                    path = os.path.normpath(os.path.join(out_dir, item["audio"]))
                    wave = audio_clips.read_wav_int16(path).astype(np.float32) / 32768.0
                    features, mask = golden.audio_features(fe, wave)
                    n = int(_get_feat_extract_output_lengths(torch.tensor(features.shape[-1])))
                    audio_mm = dict(input_features=features[None], feature_attention_mask=mask, use_audio_in_video=True)
                    per = g[1] * g[2] // 4
                    v = [k * spg * 13 for k in range(g[0]) for _ in range(per)]
                    out, vi, ai = "", 0, 0
                    while vi < len(v) and ai < n:
                        if v[vi] <= ai:
                            out, vi = out + "<|video_pad|>", vi + 1
                        else:
                            out, ai = out + "<|audio_pad|>", ai + 1
                    out += "<|video_pad|>" * (len(v) - vi) + "<|audio_pad|>" * (n - ai)
                    counts.append(("<|vision_start|><|video_pad|><|vision_end|>",
                                   "<|vision_start|><|audio_start|>" + out + "<|audio_end|><|vision_end|>"))
                elif item["type"] == "audio":
                    assert not audio_mm, "one clip per conversation (transformers pads several clips together)"
                    path = os.path.normpath(os.path.join(out_dir, item["audio"]))
                    wave = audio_clips.read_wav_int16(path).astype(np.float32) / 32768.0
                    features, mask = golden.audio_features(fe, wave)
                    n = int(_get_feat_extract_output_lengths(torch.tensor(features.shape[-1])))
                    audio_mm = dict(input_features=features[None], feature_attention_mask=mask)
                    counts.append(("<|audio_pad|>", n))
        expanded, rest = "", rendered
        for pad, n in counts:  # the placeholders in order, as the processor expands them
            at = rest.index(pad)
            expanded += rest[:at] + (pad * n if isinstance(n, int) else n)
            rest = rest[at + len(pad):]
        expanded += rest
        ids = builder.encode(expanded)
        mm = dict(audio_mm)
        if pixels:
            mm.update(pixel_values=torch.cat(pixels), image_grid_thw=torch.tensor(grids, dtype=torch.long))
        if vpixels:
            mm.update(pixel_values_videos=torch.cat(vpixels), video_grid_thw=torch.tensor(vgrids, dtype=torch.long),
                      video_second_per_grid=torch.tensor(vseconds))
        return ids, mm, rendered, grids, vgrids, vseconds

    for case, (messages, tools_key) in MESSAGES_CASES.items():
        out_dir = os.path.join(root, case)
        os.makedirs(out_dir)
        tools = tools_by_name.get(tools_key)
        ids, mm, rendered, grids, vgrids, vseconds = build(messages, tools, out_dir)
        tokens, logits, recompute = golden.thinker_greedy(model, ids, CHAT_STEPS, mm)
        tokens = tokens.tolist()
        with open(os.path.join(out_dir, "messages.json"), "w") as f:
            json.dump(messages, f, indent=1, ensure_ascii=False)
            f.write("\n")
        if tools:
            with open(os.path.join(out_dir, "tools.json"), "w") as f:
                json.dump(tools, f, indent=1, ensure_ascii=False)
                f.write("\n")
        golden.save_i64(os.path.join(out_dir, "prompt_ids.npy"), ids)
        golden.save_i64(os.path.join(out_dir, "greedy.npy"), tokens)
        golden.write_greedy_logits(out_dir, case, logits)
        gaps = golden.top2_gaps(logits)
        golden.save_json(os.path.join(out_dir, "meta.json"), dict(
            rendered=rendered, image_grids=grids, video_grids=vgrids, video_second_per_grid=vseconds, steps=CHAT_STEPS, min_top2_gap=round(gaps.min().item(), 6),
            recompute_max_abs_diff=recompute, transformers=transformers.__version__))
        print("tiny-v messages", case, "prompt", len(ids), "grids", grids, "video grids", vgrids, "min gap %.3g" % gaps.min().item(),
              "recompute diff %.2g" % recompute)

    # Spoken answers about videos (tests/golden/test_messages_golden.cpp): transformers' greedy
    # generate(return_audio=True) over the same conversation (fixturelib.speech.speech_case: talker prefill, codes,
    # waveform). The talker hears the video rows at the span's 3-row positions (time row at t * 2/fps * 13).
    from fixturelib import speech
    sroot = os.path.join(REPO, "tests", "fixtures", "golden", "tiny-v", "messages_speech")
    if os.path.isdir(sroot):
        shutil.rmtree(sroot)
    for case, source in SPOKEN_MESSAGES_CASES.items():
        messages, tools_key = MESSAGES_CASES[source]
        out_dir = os.path.join(sroot, case)
        os.makedirs(out_dir)
        ids, mm, rendered, grids, vgrids, vseconds = build(messages, tools_by_name.get(tools_key), out_dir)
        with open(os.path.join(out_dir, "messages.json"), "w") as f:
            json.dump(messages, f, indent=1, ensure_ascii=False)
            f.write("\n")
        meta = speech.speech_case(model, out_dir, ids, "Ethan", SPEECH_THINKER_TOKENS, SPEECH_TALKER_TOKENS, mm,
                                  dict(rendered=rendered, video_grids=vgrids, video_second_per_grid=vseconds,
                                       transformers=transformers.__version__))
        print("tiny-v messages_speech", case, {k: meta[k] for k in ("frames", "prefill_rows", "thinker_eos_reached",
                                                                    "min_codec_top2_gap")})


def photo_cases():
    """Two real photographs (CC0, from scikit-image's sample data: Stefan van der Walt's cat "chelsea" and Rachel
    Michetti's "coffee"), cropped to 256x192 and stored as JPEG (quality 92, 4:2:0 as cameras write them), through
    the decode (against PIL) and resize (against torchvision, downscaled to 25088 pixels) comparisons of the drawn
    scenes. Sources: `--photos DIR` names the folder
    holding chelsea.png and coffee.png (pip download --no-deps scikit-image; unzip skimage/data/*)."""
    src = sys.argv[sys.argv.index("--photos") + 1]
    proc = Qwen2VLImageProcessor(**PREPROC)
    for name, box in (("chelsea", (150, 20, 406, 212)), ("coffee", (180, 60, 436, 252))):
        img = Image.open(os.path.join(src, name + ".png")).convert("RGB").crop(box)
        path = save(img, "photo_%s_256x192.jpg" % name, quality=92, subsampling=2)
        image_case(proc, "photo_%s_jpeg_downscaled" % name, path, 3136, 25088, keep_pixels=False)


def main():
    if "--photos" in sys.argv[1:]:
        photo_cases()
        return
    if "--tiny-v" in sys.argv[1:]:
        make_tiny_v()
        return
    if "--tiny-v-chat" in sys.argv[1:]:  # the chat goldens only, from the committed tiny-v
        model = checkpoint.load_float32(os.path.join(REPO, "tests", "fixtures", "models", "tiny-v"))
        chat_cases(model)
        speech_chat_cases(model)
        messages_cases(model)
        return
    if "--tiny-v-messages" in sys.argv[1:]:  # the conversation-file goldens only, from the committed tiny-v
        messages_cases(checkpoint.load_float32(os.path.join(REPO, "tests", "fixtures", "models", "tiny-v")))
        return
    torch.manual_seed(0)
    os.makedirs(IMAGES, exist_ok=True)
    os.makedirs(GOLDEN, exist_ok=True)
    proc = Qwen2VLImageProcessor(**PREPROC)
    vproc = Qwen2VLVideoProcessor(**PREPROC)

    # Sources.
    p_exact = save(scene(224, 160, 11), "garden_224x160.png")
    p_street = save(scene(250, 190, 12), "street_250x190.jpg", quality=88)
    p_room = save(scene(640, 480, 13, "indoor"), "room_640x480.jpg", quality=85)
    p_odd = save(scene(333, 97, 14), "panorama_333x97.jpg", quality=90, subsampling=0)
    logo = scene(160, 120, 15, "indoor").convert("RGBA")
    alpha = np.zeros((120, 160), np.uint8)
    yy, xx = np.mgrid[0:120, 0:160]
    alpha[:] = np.clip(300 - 4.0 * np.hypot(xx - 80, yy - 60), 0, 255).astype(np.uint8)
    logo.putalpha(Image.fromarray(alpha))
    p_rgba = save(logo, "badge_rgba_160x120.png")
    p_gray = save(scene(180, 135, 16).convert("L"), "hall_gray_180x135.jpg", quality=80)
    p_pal = save(scene(96, 64, 17).quantize(colors=48, method=Image.Quantize.MEDIANCUT), "sign_palette_96x64.png")
    clip = scene(160, 64, 18)
    frames = []
    for i in range(5):  # a camera panning right over a wider scene
        frames.append(save(clip.crop((8 * i, 0, 8 * i + 96, 64)), "pan_%02d.png" % i))

    image_case(proc, "garden_png_identity", p_exact, 3136, 12845056, keep_pixels=True)
    image_case(proc, "street_jpeg_resized", p_street, 3136, 12845056, keep_pixels=True)
    image_case(proc, "room_jpeg_downscaled", p_room, 3136, 100352, keep_pixels=False)
    image_case(proc, "panorama_jpeg_444", p_odd, 3136, 12845056, keep_pixels=False)
    image_case(proc, "badge_rgba_png", p_rgba, 3136, 12845056, keep_pixels=False)
    image_case(proc, "hall_gray_jpeg", p_gray, 3136, 12845056, keep_pixels=False)
    image_case(proc, "sign_palette_png", p_pal, 3136, 12845056, keep_pixels=False)
    video_case(vproc, "pan_video_identity", frames, {"shortest_edge": 3136, "longest_edge": 12845056}, True)
    video_case(vproc, "pan_video_default_size", frames[:4], VIDEO_SIZE, False)

    # smart_resize: ties (x.5 rounds to even), the min and max branches, factor 32.
    sizes = [(224, 224), (480, 640), (700, 1000), (48, 80), (80, 48), (112, 112), (16, 3000), (10, 10),
             (1, 150), (33, 17), (4000, 3000), (97, 333), (2160, 3840)]
    limits = [(3136, 12845056), (3136, 100352), (131072, 786432)]
    sr = []
    for h, w in sizes:
        for lo, hi in limits:
            try:
                res = list(smart_resize(h, w, factor=32, min_pixels=lo, max_pixels=hi))
            except ValueError:
                res = None
            sr.append(dict(height=h, width=w, factor=32, min_pixels=lo, max_pixels=hi, result=res))
    sr.append(dict(height=2, width=401, factor=32, min_pixels=3136, max_pixels=12845056, result=None))
    try:
        smart_resize(2, 401, factor=32, min_pixels=3136, max_pixels=12845056)
        sys.exit("expected aspect ratio error")
    except ValueError:
        pass
    with open(os.path.join(GOLDEN, "smart_resize.json"), "w") as f:
        json.dump(sr, f, indent=0)
        f.write("\n")

    fs = []
    for total, vfps, fps in [(60, 30.0, 2.0), (10, 25.0, 2.0), (7, 1.0, 1.0), (300, 29.97, 2.0), (9, 3.0, 2.0),
                             (50, 10.0, 3.3), (2000, 30.0, 1.0), (5, 30.0, 2.0)]:
        md = VideoMetadata(total_num_frames=total, fps=vfps)
        idx = vproc.sample_frames(md, fps=fps).tolist()
        fs.append(dict(total=total, video_fps=vfps, fps=fps, indices=idx))
    with open(os.path.join(GOLDEN, "frame_sampling.json"), "w") as f:
        json.dump(fs, f, indent=0)
        f.write("\n")
    print("wrote", IMAGES, GOLDEN)
    make_tiny_v()


if __name__ == "__main__":
    main()
