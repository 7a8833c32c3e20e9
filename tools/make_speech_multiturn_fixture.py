#!/usr/bin/env python3
"""Golden for the talker prefill of a multi-turn chat (docs/model.md §3.7, §9.17: the talker hears ALL user
turns, never the system turn or earlier assistant turns). Reference tooling only.

    python3 tools/make_speech_multiturn_fixture.py tests/fixtures/models/tiny-a \
        tests/fixtures/golden/tiny-a/speech_multiturn/text_chelsie

Runs transformers' greedy generate(..., return_audio=True) on a hand-built ChatML prompt
(system, user, assistant, user, assistant header) and writes prompt_ids.npy, thinker_tokens.npy,
talker_prefill.npy, codes.npy, waveform.npy and meta.json."""
import json
import os
import sys

import numpy as np
import torch
from transformers import Qwen3OmniMoeForConditionalGeneration

IM_START, IM_END, SYSTEM, USER, ASSISTANT, NL = 151644, 151645, 8948, 872, 77091, 198


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    model.set_experts_implementation("eager")
    prompt = ([IM_START, SYSTEM, NL, 2610, 525, 264, 10950, IM_END, NL] +
              [IM_START, USER, NL, 9707, 11, 1879, 30, IM_END, NL] +
              [IM_START, ASSISTANT, NL, 13048, 0, 2585, IM_END, NL] +
              [IM_START, USER, NL, 3838, 882, 374, 432, 30, IM_END, NL] +
              [IM_START, ASSISTANT, NL])
    cap = {}
    talker_generate, chunked = model.talker.generate, model.code2wav.chunked_decode

    def grab_talker(**kw):
        cap["prefill"] = kw["inputs_embeds"][0].detach().clone()
        return talker_generate(**kw)

    def grab_codes(codes, **kw):
        cap["codes"] = codes[0].detach().clone()
        return chunked(codes, **kw)

    model.talker.generate, model.code2wav.chunked_decode = grab_talker, grab_codes
    ids = torch.tensor([prompt])
    talker_max_new_tokens = 12
    with torch.no_grad():
        seq, wav = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), speaker="Chelsie",
                                  return_audio=True, thinker_max_new_tokens=6, thinker_do_sample=False,
                                  talker_do_sample=False, talker_max_new_tokens=talker_max_new_tokens)
    thinker = seq[0, len(prompt):]
    os.makedirs(out_dir, exist_ok=True)
    save = lambda name, a: np.save(os.path.join(out_dir, name), np.ascontiguousarray(a))
    save("prompt_ids.npy", np.array(prompt, dtype=np.int64))
    save("thinker_tokens.npy", thinker.numpy().astype(np.int64))
    save("talker_prefill.npy", cap["prefill"].numpy().astype(np.float32))
    save("codes.npy", cap["codes"].numpy().astype(np.int64))
    save("waveform.npy", wav.reshape(-1).numpy().astype(np.float32))
    meta = dict(speaker="chelsie", talker_max_new_tokens=talker_max_new_tokens, frames=int(cap["codes"].shape[1]),
                thinker_eos_reached=bool((thinker == IM_END).any()), prefill_rows=int(cap["prefill"].shape[0]),
                samples=int(wav.numel()))
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(meta)


if __name__ == "__main__":
    main()
