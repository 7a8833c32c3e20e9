#!/usr/bin/env python3
"""Golden for code2wav's HF chunking (chunk 300, left context 25) on a code sequence longer than
one chunk, which the generate() fixtures never reach. Reference tooling only (never at run time).

    python3 tools/make_speech_chunk_fixture.py tests/fixtures/models/tiny-a \
        tests/fixtures/golden/tiny-a/speech_code2wav/chunked_t305

Writes codes.npy (int64 [Q, T], seeded uniform codes) and chunked.npy (float32, HF
Qwen3OmniMoeCode2Wav.chunked_decode(codes, 300, 25)), and meta.json."""
import json
import os
import sys

import numpy as np
import torch
from transformers import Qwen3OmniMoeForConditionalGeneration


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else 305
    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config.code2wav_config
    gen = torch.Generator().manual_seed(305)
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, frames), generator=gen)
    with torch.no_grad():
        wav = model.code2wav.chunked_decode(codes, chunk_size=300, left_context_size=25).reshape(-1)
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "codes.npy"), np.ascontiguousarray(codes[0].numpy().astype(np.int64)))
    np.save(os.path.join(out_dir, "chunked.npy"), np.ascontiguousarray(wav.numpy().astype(np.float32)))
    meta = dict(frames=frames, chunk_size=300, left_context=25, samples=int(wav.numel()),
                rms=round(float(wav.pow(2).mean().sqrt()), 5),
                clipped_fraction=round(float((wav.abs() >= 1.0).float().mean()), 4))
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(meta)


if __name__ == "__main__":
    main()
