"""Config dicts for the fixture checkpoints (docs/model.md §8.1/§8.2).

Every config keeps the release's special-token ids, thinker vocab 152064, talker codec vocab 3072, 2048-entry
codebooks and 16 code groups, so the real tokenizer and the real Whisper front end apply. Fields whose class
default differs from the release (docs/model.md §2.5, §9.1) are always passed explicitly.
"""
import copy

SPEAKERS = {"chelsie": 2301, "ethan": 2302, "aiden": 2303}

TOP_LEVEL_IDS = dict(
    enable_audio_output=True,
    im_start_token_id=151644, im_end_token_id=151645, system_token_id=8948, user_token_id=872,
    assistant_token_id=77091, tts_pad_token_id=151671, tts_bos_token_id=151672, tts_eos_token_id=151673,
)

THINKER_IDS = dict(
    audio_token_id=151675, image_token_id=151655, video_token_id=151656,
    audio_start_token_id=151669, audio_end_token_id=151670,
    vision_start_token_id=151652, vision_end_token_id=151653,
    user_token_id=872, position_id_per_seconds=13, seconds_per_chunk=2,
)

TALKER_IDS = dict(
    num_code_groups=16, spatial_merge_size=2,
    audio_token_id=151675, image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
    audio_start_token_id=151669, audio_end_token_id=151670, position_id_per_seconds=13,
    codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_nothink_id=2155,
    codec_think_bos_id=2156, codec_think_eos_id=2157, speaker_id=dict(SPEAKERS),
)


def _mrope(theta, section, thinker):
    rope = dict(rope_type="default", rope_theta=theta, mrope_section=list(section), interleaved=True)
    if thinker:
        rope["mrope_interleaved"] = True
    return rope


def make_config(*, thinker, audio, talker, code_predictor, code2wav, vision):
    """Assemble a Qwen3OmniMoeConfig kwargs dict from per-part size dicts."""
    th, ta = thinker, talker
    assert sum(th["mrope_section"]) * 2 == th["head_dim"], "thinker mrope_section must sum to head_dim/2"
    assert sum(ta["mrope_section"]) * 2 == ta["head_dim"], "talker mrope_section must sum to head_dim/2"
    assert ta["accept_hidden_layer"] <= th["layers"], "accept_hidden_layer must be <= thinker layers"
    assert code2wav["decoder_dim"] % 16 == 0, "code2wav decoder_dim must be divisible by 16"
    hidden = th["hidden"]
    text_config = dict(
        vocab_size=152064, hidden_size=hidden, intermediate_size=th["moe_intermediate"],
        moe_intermediate_size=th["moe_intermediate"], num_hidden_layers=th["layers"],
        num_attention_heads=th["heads"], num_key_value_heads=th["kv_heads"], head_dim=th["head_dim"],
        num_experts=th["experts"], num_experts_per_tok=th["top_k"], norm_topk_prob=th["norm_topk_prob"],
        decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6, max_position_embeddings=65536,
        tie_word_embeddings=False, attention_bias=False, hidden_act="silu",
        rope_parameters=_mrope(1000000.0, th["mrope_section"], thinker=True),
    )
    audio_config = dict(
        num_mel_bins=128, encoder_layers=audio["layers"], encoder_attention_heads=audio["heads"],
        encoder_ffn_dim=audio["ffn"], d_model=audio["d_model"], downsample_hidden_size=audio["conv_channels"],
        output_dim=hidden, n_window=50, n_window_infer=800, conv_chunksize=500, max_source_positions=1500,
        activation_function="gelu", scale_embedding=False,
    )
    vision_config = dict(
        depth=vision["depth"], hidden_size=vision["hidden"], intermediate_size=vision["intermediate"],
        num_heads=vision["heads"], out_hidden_size=hidden, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, num_position_embeddings=vision.get("positions", 2304),
        deepstack_visual_indexes=vision.get("deepstack", list(range(min(vision["depth"], th["layers"], 3)))),
    )
    talker_text = dict(
        vocab_size=3072, hidden_size=ta["hidden"], intermediate_size=ta["projection_intermediate"],
        moe_intermediate_size=ta["moe_intermediate"], shared_expert_intermediate_size=ta["shared_intermediate"],
        num_hidden_layers=ta["layers"], num_attention_heads=ta["heads"], num_key_value_heads=ta["kv_heads"],
        head_dim=ta["head_dim"], num_experts=ta["experts"], num_experts_per_tok=ta["top_k"],
        norm_topk_prob=ta["norm_topk_prob"], decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6,
        max_position_embeddings=65536, hidden_act="silu",
        rope_parameters=_mrope(1000000.0, ta["mrope_section"], thinker=False),
    )
    cp = code_predictor
    code_predictor_config = dict(
        vocab_size=2048, hidden_size=ta["hidden"], intermediate_size=cp["intermediate"],
        num_hidden_layers=cp["layers"], num_attention_heads=cp["heads"], num_key_value_heads=cp["kv_heads"],
        head_dim=cp["head_dim"], num_code_groups=16, rms_norm_eps=1e-6, max_position_embeddings=32768,
        layer_types=["full_attention"] * cp["layers"], hidden_act="silu",
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
    )
    cw = code2wav
    code2wav_config = dict(
        codebook_size=2048, num_quantizers=16, hidden_size=cw["hidden"], intermediate_size=cw["intermediate"],
        num_hidden_layers=cw["layers"], num_attention_heads=cw["heads"], num_key_value_heads=cw["heads"],
        sliding_window=72, max_position_embeddings=8000, rms_norm_eps=1e-5, layer_scale_initial_scale=0.01,
        decoder_dim=cw["decoder_dim"], upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2],
        rope_parameters=dict(rope_type="default", rope_theta=10000.0),
    )
    talker_config = dict(
        TALKER_IDS, thinker_hidden_size=hidden, accept_hidden_layer=ta["accept_hidden_layer"],
        text_config=talker_text, code_predictor_config=code_predictor_config,
    )
    thinker_config = dict(THINKER_IDS, audio_config=audio_config, vision_config=vision_config,
                          text_config=text_config)
    return copy.deepcopy(dict(TOP_LEVEL_IDS, thinker_config=thinker_config, talker_config=talker_config,
                              code2wav_config=code2wav_config))


# tiny-a: sharded, 4.57-style config.json. Thinker 4 q / 2 kv heads, head_dim 8, 2 layers, 8 experts top-2,
# norm_topk_prob true. Hidden 16 keeps each 152064-row table (embed, lm_head) at 4.87 MB in bf16.
TINY_A = make_config(
    thinker=dict(hidden=16, layers=2, heads=4, kv_heads=2, head_dim=8, mrope_section=[2, 1, 1],
                 experts=8, top_k=2, norm_topk_prob=True, moe_intermediate=32),
    audio=dict(layers=2, heads=4, ffn=64, d_model=32, conv_channels=16),
    vision=dict(depth=2, hidden=16, intermediate=32, heads=2),
    talker=dict(hidden=16, layers=2, heads=4, kv_heads=2, head_dim=8, mrope_section=[2, 1, 1],
                experts=8, top_k=2, norm_topk_prob=True, moe_intermediate=16, shared_intermediate=32,
                projection_intermediate=32, accept_hidden_layer=1),
    code_predictor=dict(layers=2, heads=4, kv_heads=2, head_dim=8, intermediate=48),
    code2wav=dict(hidden=16, intermediate=32, layers=2, heads=2, decoder_dim=32),
)

# tiny-v: the vision model (tools/make_vision_fixtures.py). Thinker hidden 8, 3 layers (every DeepStack tap lands);
# vision tower of 4 blocks, width 32, 2 heads of 16, DeepStack taps after blocks 1, 2, 3, and a position table of
# 8 x 8 (smaller than the grids, so the bilinear resampling matters).
TINY_V = make_config(
    thinker=dict(hidden=8, layers=3, heads=2, kv_heads=1, head_dim=8, mrope_section=[2, 1, 1],
                 experts=4, top_k=2, norm_topk_prob=True, moe_intermediate=16),
    audio=dict(layers=2, heads=2, ffn=32, d_model=16, conv_channels=8),
    vision=dict(depth=4, hidden=32, intermediate=64, heads=2, positions=64, deepstack=[1, 2, 3]),
    talker=dict(hidden=8, layers=2, heads=2, kv_heads=1, head_dim=8, mrope_section=[2, 1, 1],
                experts=3, top_k=2, norm_topk_prob=True, moe_intermediate=12, shared_intermediate=16,
                projection_intermediate=16, accept_hidden_layer=2),
    code_predictor=dict(layers=1, heads=2, kv_heads=1, head_dim=8, intermediate=24),
    code2wav=dict(hidden=8, intermediate=16, layers=1, heads=2, decoder_dim=16),
)

# tiny-b: one model.safetensors (< 5 MB, so the thinker hidden is 4: the two 152064-row tables take 2.4 MB),
# rope_parameters-style (5.x) config.json. Thinker 2 q / 1 kv heads, head_dim 16, 3 layers, 4 experts top-3,
# norm_topk_prob false. Talker 1 q group of 4 heads / 1 kv head, 3 experts top-2, norm false, 3 layers.
TINY_B = make_config(
    thinker=dict(hidden=4, layers=3, heads=2, kv_heads=1, head_dim=16, mrope_section=[4, 2, 2],
                 experts=4, top_k=3, norm_topk_prob=False, moe_intermediate=12),
    audio=dict(layers=3, heads=2, ffn=48, d_model=24, conv_channels=8),
    vision=dict(depth=1, hidden=8, intermediate=16, heads=1),
    talker=dict(hidden=8, layers=3, heads=4, kv_heads=1, head_dim=16, mrope_section=[4, 2, 2],
                experts=3, top_k=2, norm_topk_prob=False, moe_intermediate=12, shared_intermediate=16,
                projection_intermediate=16, accept_hidden_layer=2),
    code_predictor=dict(layers=1, heads=2, kv_heads=1, head_dim=16, intermediate=24),
    code2wav=dict(hidden=8, intermediate=16, layers=1, heads=2, decoder_dim=16),
)


def _mrope_section(head_dim):
    """Release proportions [24, 20, 20] of head_dim/2 = 64, scaled to another head_dim."""
    half = head_dim // 2
    hw = half * 20 // 64
    return [half - 2 * hw, hw, hw]


def full_width(thinker_layers, talker_layers=2, audio_layers=2, code2wav_layers=2, shrink=1):
    """The release's widths (docs/model.md §2) with few layers; accept_hidden_layer = min(24, max(1, layers // 2)).

    `shrink` > 1 divides every width (and expert count) by that factor: the same code path, small enough to run
    on a laptop-class machine. shrink=1 is the real thing.
    """
    def w(x):
        return max(1, x // shrink)

    accept = min(24, max(1, thinker_layers // 2))
    head_dim = w(128)
    return make_config(
        thinker=dict(hidden=w(2048), layers=thinker_layers, heads=32, kv_heads=4, head_dim=head_dim,
                     mrope_section=_mrope_section(head_dim), experts=w(128), top_k=8, norm_topk_prob=True,
                     moe_intermediate=w(768)),
        audio=dict(layers=audio_layers, heads=w(20), ffn=w(5120), d_model=w(1280), conv_channels=w(480)),
        vision=dict(depth=1, hidden=w(1152), intermediate=w(4304), heads=w(16)),
        talker=dict(hidden=w(1024), layers=talker_layers, heads=16, kv_heads=2, head_dim=head_dim,
                    mrope_section=_mrope_section(head_dim), experts=w(128), top_k=6, norm_topk_prob=True,
                    moe_intermediate=w(384), shared_intermediate=w(768), projection_intermediate=w(2048),
                    accept_hidden_layer=accept),
        code_predictor=dict(layers=5, heads=16, kv_heads=8, head_dim=head_dim, intermediate=w(3072)),
        code2wav=dict(hidden=w(1024), intermediate=w(3072), layers=code2wav_layers, heads=w(16),
                      decoder_dim=w(1536)),
    )
