"""Build, re-initialise, save and reload the fixture checkpoints.

The saved checkpoint is bf16 (as the release). Goldens are computed from the *reloaded* checkpoint upcast to
float32, so the engine (fp32 CPU reference) sees exactly the weights that produced them.
"""
import json
import os
import shutil
import zlib

import torch
from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

PREPROCESSOR_CONFIG = {
    "chunk_length": 300,
    "dither": 0.0,
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 128,
    "hop_length": 160,
    "n_fft": 400,
    "n_samples": 4800000,
    "nb_max_frames": 30000,
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "Qwen3OmniMoeProcessor",
    "return_attention_mask": True,
    "sampling_rate": 16000,
}
# The release's preprocessor_config.json holds the image processor's keys next to the Whisper ones; without them
# the processor's class defaults (patch_size 14) would not match the vision tower's patch_size 16.
IMAGE_PREPROCESSOR = dict(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=3136, max_pixels=12845056)


def all_sub_configs(config):
    th, ta = config.thinker_config, config.talker_config
    return [config, th, th.text_config, th.audio_config, th.vision_config, ta, ta.text_config,
            ta.code_predictor_config, config.code2wav_config]


def use_eager(model):
    """Eager attention everywhere (set on every sub-config, docs/model.md §8.1) and the eager experts kernel."""
    for sub in all_sub_configs(model.config):
        sub._attn_implementation = "eager"
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = "eager"
    model.set_experts_implementation("eager")


def build_random_model(config_dict, seed, std, eos_boost):
    """Construct the model and re-initialise every parameter from `seed` (class init leaves some uninitialised).

    Matrices ~ N(0, std); biases ~ N(0, std/2); norm weights ~ 1 + N(0, 0.2); SnakeBeta log-alpha/beta and
    ~ N(0, 0.2); LayerScale / ConvNeXt gamma ~ 0.3 + N(0, 0.1). Output-head rows (thinker lm_head, talker
    codec_head, code-predictor lm_heads) are then scaled by exp(N(0, 0.5)). `eos_boost` scales the thinker lm_head row of
    <|im_end|> and the talker codec_head row of codec EOS, so that end-of-turn paths are exercised by greedy runs.
    """
    config = Qwen3OmniMoeConfig(**config_dict)
    for sub in all_sub_configs(config):
        sub._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(param.shape, generator=_generator(seed, name), dtype=torch.float32)
            if param.dim() >= 2:
                value = noise * std
            elif leaf == "bias":
                value = noise * (std / 2)
            elif leaf in ("alpha", "beta"):
                value = noise * 0.2
            elif leaf in ("scale", "gamma"):
                value = 0.3 + noise * 0.1
            elif leaf == "weight":
                value = 1.0 + noise * 0.2
            else:
                raise RuntimeError(f"no init rule for parameter {name}")
            param.copy_(value.to(param.dtype))
        # Log-normal row norms for the output heads: the argmax is then usually a clear winner (median relative
        # top-2 gap ~3x larger than with equal-norm rows) while many different tokens still win.
        heads = {"thinker.lm_head": model.thinker.lm_head, "talker.codec_head": model.talker.codec_head}
        for i, head in enumerate(model.talker.code_predictor.lm_head):
            heads[f"talker.code_predictor.lm_head.{i}"] = head
        for name, head in heads.items():
            rows = head.weight.shape[0]
            row_scale = torch.exp(0.5 * torch.randn((rows, 1), generator=_generator(seed, name + "/row_scale")))
            head.weight.mul_(row_scale.to(head.weight.dtype))
        _rescale_code2wav_convs(model.code2wav, seed)
        thinker_eos, talker_eos = eos_boost
        model.thinker.lm_head.weight[config.im_end_token_id] *= thinker_eos
        model.talker.codec_head.weight[config.talker_config.codec_eos_token_id] *= talker_eos
    return model


def _generator(seed, name):
    """One generator per tensor (seeded by model seed + tensor name): resizing one part of a config leaves the
    values of every other tensor unchanged."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def _rescale_code2wav_convs(code2wav, seed, gain=0.65):
    """Fan-in scaled init (std = gain / sqrt(fan_in)) for the code2wav conv stack: with a fixed std the narrow
    decoder convs shrink the signal until the waveform is a code-independent DC offset from the biases."""
    for name, module in code2wav.named_modules():
        if name.startswith("pre_transformer") or not hasattr(module, "weight") or module.weight.dim() < 2:
            continue
        weight = module.weight
        if isinstance(module, torch.nn.ConvTranspose1d):
            fan_in = weight.shape[0] * weight.shape[2] / module.stride[0]
        elif isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            fan_in = weight[0].numel()
        else:
            continue
        gen = _generator(seed, f"code2wav.{name}/fan_in")
        weight.copy_(torch.randn(weight.shape, generator=gen) * (gain / fan_in ** 0.5))
        if getattr(module, "bias", None) is not None:
            module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.02)


# Keys the release config.json has that transformers 5.17 does not write (constant for this family; unused or
# default-valued in the HF model), added by the 4.57-style rewrite so tiny-a's config reads like the release's.
RELEASE_EXTRA_KEYS = {
    ("thinker_config", "text_config"): {"shared_expert_intermediate_size": 0, "use_qk_norm": True,
                                        "use_sliding_window": False},
    ("talker_config",): {"seconds_per_chunk": 2, "output_router_logits": False},
    ("talker_config", "text_config"): {"use_sliding_window": False},
    ("talker_config", "code_predictor_config"): {"use_sliding_window": False},
    ("code2wav_config",): {"codebook_dim": 512, "num_semantic_quantizers": 1, "semantic_codebook_size": 4096,
                           "vector_quantization_hidden_dimension": 512},
}


def to_457_style(config_json):
    """Rewrite 5.x `rope_parameters` dicts as 4.57 `rope_scaling` + `rope_theta`, and the talker text config's
    `num_local_experts` (what 5.17 writes) back to the release's `num_experts`: the release's on-disk style."""
    def visit(node):
        if isinstance(node, dict):
            if "rope_parameters" in node:
                rope = dict(node.pop("rope_parameters") or {})
                node["rope_theta"] = rope.pop("rope_theta")
                if "mrope_section" in rope:
                    rope["type"] = rope.get("rope_type", "default")
                    node["rope_scaling"] = rope
                else:
                    node["rope_scaling"] = None
            if "num_local_experts" in node:
                node["num_experts"] = node.pop("num_local_experts")
            for value in node.values():
                visit(value)
    visit(config_json)
    for path, extra in RELEASE_EXTRA_KEYS.items():
        node = config_json
        for key in path:
            node = node[key]
        for key, value in extra.items():
            node.setdefault(key, value)
    return config_json


def save_checkpoint(model, out_dir, sharded, style_457, max_shard_size="4MB"):
    """Save bf16 weights + config.json (+ 4.57 rewrite) + preprocessor_config.json (audio and image keys); no
    tokenizer files."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    bf16 = model.to(torch.bfloat16)
    kwargs = {"max_shard_size": max_shard_size} if sharded else {"max_shard_size": "100GB"}
    bf16.save_pretrained(out_dir, safe_serialization=True, **kwargs)
    model.to(torch.float32)
    for extra in ("generation_config.json",):
        path = os.path.join(out_dir, extra)
        if os.path.exists(path):
            os.remove(path)
    config_path = os.path.join(out_dir, "config.json")
    with open(config_path) as f:
        config_json = json.load(f)
    if style_457:
        config_json = to_457_style(config_json)
    with open(config_path, "w") as f:
        json.dump(config_json, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump(dict(PREPROCESSOR_CONFIG, image_processor_type="Qwen2VLImageProcessor", **IMAGE_PREPROCESSOR), f,
                  indent=2, sort_keys=True)
        f.write("\n")


def load_float32(model_dir, device="cpu"):
    """Reload the saved bf16 checkpoint as float32 (exact upcast) with eager attention and experts."""
    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval().to(device)
    use_eager(model)
    return model


def check_reload(model_bf16_source, reloaded):
    """Every reloaded float32 parameter must equal the bf16-rounded in-memory value exactly."""
    src = dict(model_bf16_source.named_parameters())
    for name, param in reloaded.named_parameters():
        expected = src[name].detach().to(torch.bfloat16).to(torch.float32).to(param.device)
        if not torch.equal(expected, param.detach()):
            raise RuntimeError(f"reloaded parameter {name} differs from the saved bf16 value")
    if set(src) != {n for n, _ in reloaded.named_parameters()}:
        raise RuntimeError("reloaded model has a different parameter set")
