"""Golden outputs computed with transformers (float32 weights = the saved bf16 values upcast, eager kernels).

Layout and dtypes are a contract with the C++ golden tests; see tests/fixtures/README.md.
"""
import json
import os
import zlib

import numpy as np
import torch

IM_END = 151645
LOGIT_COLUMNS = 2048


def save_f32(path, tensor):
    arr = tensor.detach().to("cpu", torch.float32).numpy() if torch.is_tensor(tensor) else np.asarray(tensor)
    arr = np.ascontiguousarray(arr.astype("<f4"))
    if not np.isfinite(arr).all():
        raise RuntimeError(f"{path}: non-finite values")
    np.save(path, arr)


def save_i64(path, values):
    arr = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    np.save(path, np.ascontiguousarray(arr.astype("<i8")))


def save_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def top2_gaps(logits):
    """Per row: top1 - top2 logit (how clear each greedy choice is)."""
    top = torch.topk(logits.float(), 2, dim=-1).values
    return (top[..., 0] - top[..., 1])


def thinker_greedy(model, prompt_ids, steps, mm_inputs):
    """`steps` greedy thinker tokens via thinker.generate (KV cache), never stopping at <|im_end|>.

    Returns (tokens [steps], logits [steps, vocab]); logits row i chose token i (row 0 = last prompt position).
    """
    device = model.thinker.device
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    out = model.thinker.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, do_sample=False,
        eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True, **mm_inputs)
    tokens = out.sequences[0, len(prompt_ids):]
    if tokens.numel() != steps:
        raise RuntimeError(f"thinker.generate stopped after {tokens.numel()} of {steps} steps")
    logits = torch.cat(out.logits, dim=0).float()
    if not torch.equal(logits.argmax(-1), tokens):
        raise RuntimeError("greedy tokens are not the argmax of the recorded logits")
    # Cross-check: one uncached forward over prompt + tokens[:-1] gives the same rows.
    full = torch.cat([ids, tokens[None, :-1]], dim=1)
    ref = model.thinker(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False,
                        **mm_inputs).logits[0, len(prompt_ids) - 1:].float()
    recompute_diff = (ref - logits).abs().max().item()
    return tokens.cpu(), logits.cpu(), recompute_diff


def logit_columns(logits, case_name):
    """Fixed seeded subset of vocab columns (always incl. each step's top-2 columns), sorted, int64 [2048]."""
    vocab = logits.shape[-1]
    must = set(torch.topk(logits, 2, dim=-1).indices.flatten().tolist())
    rng = np.random.default_rng(zlib.crc32(case_name.encode()))
    cols = set(must)
    for c in rng.permutation(vocab):
        if len(cols) >= LOGIT_COLUMNS:
            break
        cols.add(int(c))
    return torch.tensor(sorted(cols), dtype=torch.long)


def write_greedy_logits(out_dir, case_name, logits):
    cols = logit_columns(logits, case_name)
    save_i64(os.path.join(out_dir, "logit_cols.npy"), cols)
    save_f32(os.path.join(out_dir, "logits_sub.npy"), logits[:, cols])


def text_case(model, out_dir, case_name, prompt_ids, steps, meta):
    os.makedirs(out_dir, exist_ok=True)
    tokens, logits, recompute_diff = thinker_greedy(model, prompt_ids, steps, {})
    save_i64(os.path.join(out_dir, "prompt_ids.npy"), prompt_ids)
    save_i64(os.path.join(out_dir, "greedy.npy"), tokens)
    write_greedy_logits(out_dir, case_name, logits)
    save_f32(os.path.join(out_dir, "logits_full0.npy"), logits[0])
    gaps = top2_gaps(logits)
    meta = dict(meta, steps=steps, im_end_in_greedy=bool((tokens == IM_END).any()),
                min_top2_gap=round(gaps.min().item(), 6), max_abs_logit=round(logits.abs().max().item(), 4),
                recompute_max_abs_diff=recompute_diff)
    save_json(os.path.join(out_dir, "meta.json"), meta)
    return meta


def audio_features(feature_extractor, wave):
    """One clip per call (docs/model.md §5.1): padding=True, truncation=False → (features [128, T], mask [1, T])."""
    out = feature_extractor(wave, sampling_rate=16000, padding=True, truncation=False,
                            return_attention_mask=True, return_tensors="pt")
    features, mask = out["input_features"], out["attention_mask"]
    if features.shape[0] != 1 or int(mask.sum()) != features.shape[-1]:
        raise RuntimeError("unexpected feature-extractor output for a single clip")
    return features[0].float(), mask


def audio_case(model, feature_extractor, builder, out_dir, features_dir, case_name, wave, prompt, system, steps):
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths
    os.makedirs(out_dir, exist_ok=True)
    device = model.thinker.device
    features, mask = audio_features(feature_extractor, wave)
    frames = features.shape[-1]
    n_tokens = int(_get_feat_extract_output_lengths(torch.tensor(frames)))
    input_features = features[None].to(device)
    mask = mask.to(device)
    encoder_out = model.thinker.get_audio_features(input_features, feature_attention_mask=mask).last_hidden_state
    if encoder_out.shape[0] != n_tokens:
        raise RuntimeError(f"{case_name}: encoder gave {encoder_out.shape[0]} tokens, formula {n_tokens}")
    prompt_ids = builder.chat(prompt, system=system, audio_tokens=n_tokens)
    mm = dict(input_features=input_features, feature_attention_mask=mask)
    tokens, logits, recompute_diff = thinker_greedy(model, prompt_ids, steps, mm)
    os.makedirs(features_dir, exist_ok=True)
    save_f32(os.path.join(features_dir, "features.npy"), features)  # model independent: stored once
    save_f32(os.path.join(out_dir, "encoder_out.npy"), encoder_out)
    save_i64(os.path.join(out_dir, "prompt_ids.npy"), prompt_ids)
    save_i64(os.path.join(out_dir, "greedy.npy"), tokens)
    write_greedy_logits(out_dir, case_name, logits)
    gaps = top2_gaps(logits)
    meta = dict(system=system, prompt=prompt, samples=len(wave), mel_frames=frames, audio_tokens=n_tokens,
                steps=steps, im_end_in_greedy=bool((tokens == IM_END).any()),
                min_top2_gap=round(gaps.min().item(), 6), recompute_max_abs_diff=recompute_diff,
                note="prompt: ChatML user turn <|audio_start|> + audio_tokens x <|audio_pad|> + <|audio_end|> + "
                     "prompt text; greedy: thinker.generate with the audio, never stopped at <|im_end|>")
    save_json(os.path.join(out_dir, "meta.json"), meta)
    return meta, mm
