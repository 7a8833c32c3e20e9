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
"""
import io
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

import transformers
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor, smart_resize
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.video_utils import VideoMetadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(REPO, "tests", "fixtures", "images")
GOLDEN = os.path.join(REPO, "tests", "fixtures", "golden", "vision_preprocess")

# The checkpoint's preprocessor settings (patch 16, merge 2, temporal 2, 3136..12845056 pixels, CLIP mean/std as
# class defaults) and the Qwen3-Omni processor's video size defaults.
PREPROC = dict(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=3136, max_pixels=12845056)
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


def main():
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


if __name__ == "__main__":
    main()
