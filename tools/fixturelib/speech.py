"""Speech-out goldens: one greedy Qwen3OmniMoeForConditionalGeneration.generate run, with its intermediate
tensors captured by hooks (talker prefill / trailing text / per-step inputs, first-step logits, codes)."""
import os

import torch

from .golden import save_f32, save_i64, save_json, top2_gaps


class Capture:
    """Wraps talker.generate and code2wav.chunked_decode and hooks the talker and code predictor."""

    def __init__(self, model):
        self.model = model
        self.talker_kwargs = None
        self.talker_result = None
        self.codes = None
        self.talker_inputs = []      # inputs_embeds of every talker.model call (prefill, then one row per step)
        self.talker_last_hidden = []  # final-normed hidden of the last position of every talker.model call
        self.codec_logits = []       # codec_head output, last position, every call
        self.cp_logits = []          # code predictor lm_head outputs (last position), every call
        self.handles = []

    def __enter__(self):
        talker, code2wav = self.model.talker, self.model.code2wav
        orig_generate, orig_decode = talker.generate, code2wav.chunked_decode

        def talker_generate(**kwargs):
            self.talker_kwargs = kwargs
            self.talker_result = orig_generate(**kwargs)
            return self.talker_result

        def chunked_decode(codes, **kwargs):
            self.codes = codes
            return orig_decode(codes, **kwargs)

        talker.generate, code2wav.chunked_decode = talker_generate, chunked_decode
        self.handles.append(talker.model.register_forward_pre_hook(self._talker_in, with_kwargs=True))
        self.handles.append(talker.model.register_forward_hook(self._talker_out))
        self.handles.append(talker.codec_head.register_forward_hook(
            lambda m, a, out: self.codec_logits.append(out[0, -1].detach().float().cpu())))
        self.handles.append(talker.code_predictor.register_forward_hook(
            lambda m, a, out: self.cp_logits.append(out.logits[0, -1].detach().float().cpu())))
        return self

    def _talker_in(self, module, args, kwargs):
        self.talker_inputs.append(kwargs["inputs_embeds"][0].detach().float().cpu())

    def _talker_out(self, module, args, out):
        self.talker_last_hidden.append(out.last_hidden_state[0, -1].detach().float().cpu())

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        del self.model.talker.generate
        del self.model.code2wav.chunked_decode


def speech_case(model, out_dir, prompt_ids, speaker, thinker_max_new_tokens, talker_max_new_tokens, mm, meta):
    os.makedirs(out_dir, exist_ok=True)
    device = model.thinker.device
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    with Capture(model) as cap:
        sequences, wav = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), speaker=speaker, return_audio=True,
            thinker_max_new_tokens=thinker_max_new_tokens, talker_max_new_tokens=talker_max_new_tokens,
            thinker_do_sample=False, talker_do_sample=False, **mm)
    cfg = model.config
    thinker_tokens = sequences[0, len(prompt_ids):].cpu()
    talker_tokens = cap.talker_result.sequences[0].cpu()  # codebook-0 ids incl. the final (EOS) one
    codes = cap.codes[0].cpu()                             # [16, T]
    frames = codes.shape[-1]
    eos_reached = bool(talker_tokens[-1].item() == cfg.talker_config.codec_eos_token_id)
    prefill = cap.talker_kwargs["inputs_embeds"][0]
    trailing = cap.talker_kwargs["trailing_text_hidden"][0]
    if not torch.equal(cap.talker_inputs[0], prefill.float().cpu()):
        raise RuntimeError("talker.model prefill input differs from talker.generate inputs_embeds")
    step_inputs = torch.stack([x[0] for x in cap.talker_inputs[1:]]) if len(cap.talker_inputs) > 1 else None
    oneshot = model.code2wav(cap.codes)  # [1, 1, 1920*T - 555], one call
    wav = wav.reshape(-1).cpu()
    if frames <= 300 and not torch.equal(oneshot.reshape(-1).cpu(), wav):
        raise RuntimeError("one-shot code2wav differs from generate's chunked decode for T <= 300")
    if frames != len(talker_tokens) - 1:
        raise RuntimeError(f"frames {frames} != talker tokens {len(talker_tokens)} - 1")
    if not torch.equal(codes[0], talker_tokens[:-1]):
        raise RuntimeError("codes row 0 differs from the talker's codebook-0 tokens")
    n_cp = cfg.talker_config.num_code_groups - 1
    cp_first = torch.stack(cap.cp_logits[:n_cp]) if frames > 0 else None
    codec_gap = _check_talker_choices(cap.codec_logits, talker_tokens, cfg.talker_config)
    cp_gap = _check_code_predictor_choices(cap.cp_logits, codes, n_cp)

    save_i64(os.path.join(out_dir, "prompt_ids.npy"), prompt_ids)
    save_i64(os.path.join(out_dir, "thinker_tokens.npy"), thinker_tokens)
    save_f32(os.path.join(out_dir, "talker_prefill.npy"), prefill)
    save_f32(os.path.join(out_dir, "talker_trailing.npy"), trailing)
    save_i64(os.path.join(out_dir, "talker_input_ids.npy"), cap.talker_kwargs["talker_input_ids"][0])
    save_f32(os.path.join(out_dir, "tts_pad_embed.npy"), cap.talker_kwargs["tts_pad_embed"][0, 0])
    save_i64(os.path.join(out_dir, "talker_tokens.npy"), talker_tokens)
    save_i64(os.path.join(out_dir, "codes.npy"), codes)
    save_f32(os.path.join(out_dir, "waveform.npy"), wav)
    save_f32(os.path.join(out_dir, "code2wav_oneshot.npy"), oneshot.reshape(-1))
    save_f32(os.path.join(out_dir, "talker_logits0.npy"), cap.codec_logits[0])
    save_f32(os.path.join(out_dir, "talker_hidden0.npy"), cap.talker_last_hidden[0])
    if step_inputs is not None:
        save_f32(os.path.join(out_dir, "talker_step_inputs.npy"), step_inputs)
    if cp_first is not None:
        save_f32(os.path.join(out_dir, "code_predictor_logits0.npy"), cp_first)
    thinker_eos = bool((thinker_tokens == cfg.im_end_token_id).any())
    meta = dict(meta, speaker=speaker, talker_max_new_tokens=talker_max_new_tokens,
                thinker_max_new_tokens=thinker_max_new_tokens, eos_reached=eos_reached,
                thinker_eos_reached=thinker_eos, thinker_hit_token_limit=len(thinker_tokens) == thinker_max_new_tokens
                and not thinker_eos, frames=frames, samples=int(wav.numel()), prefill_rows=int(prefill.shape[0]),
                trailing_rows=int(trailing.shape[0]),
                waveform_clipped_fraction=round(float((wav.abs() >= 1.0).float().mean()), 4),
                waveform_rms=round(float(wav.pow(2).mean().sqrt()), 5),
                min_codec_top2_gap=round(codec_gap, 6), min_code_predictor_top2_gap=round(cp_gap, 6),
                cp_first_frame_argmax=[int(x) for x in cp_first.argmax(-1)] if cp_first is not None else [])
    save_json(os.path.join(out_dir, "meta.json"), meta)
    return meta


def _check_talker_choices(codec_logits, talker_tokens, talker_config, penalty=1.05):
    """Re-derive every greedy codebook-0 choice from the raw codec logits with HF's processing (repetition
    penalty on earlier generated ids, suppress [vocab-1024, vocab) except EOS); returns the smallest top-2 gap."""
    steps = len(talker_tokens)
    logits = torch.stack(codec_logits[:steps]).clone()
    vocab = logits.shape[-1]
    eos = talker_config.codec_eos_token_id
    for i in range(steps):
        seen = talker_tokens[:i].unique()
        picked = logits[i, seen]
        logits[i, seen] = torch.where(picked < 0, picked * penalty, picked / penalty)
    suppressed = torch.ones(vocab, dtype=torch.bool)
    suppressed[: vocab - 1024] = False
    suppressed[eos] = False
    logits[:, suppressed] = float("-inf")
    if not torch.equal(logits.argmax(-1), talker_tokens):
        raise RuntimeError("talker tokens are not the greedy choices of the processed codec logits")
    return top2_gaps(logits).min().item()


def _check_code_predictor_choices(cp_logits, codes, groups):
    """Code predictor call f*groups + j chose residual code codes[1 + j, f]; returns the smallest top-2 gap."""
    frames = codes.shape[-1]
    if frames == 0:
        return float("inf")
    logits = torch.stack(cp_logits[: frames * groups]).view(frames, groups, -1)
    if not torch.equal(logits.argmax(-1).T, codes[1:]):
        raise RuntimeError("residual codes are not the greedy choices of the code predictor logits")
    return top2_gaps(logits).min().item()
