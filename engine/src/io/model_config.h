// The parts of a Qwen3-Omni config.json the engine uses, read from either key style:
// 4.57 (`rope_scaling` + `rope_theta`, as the release writes it) or 5.x (`rope_parameters`).
// Nothing about the release's sizes is assumed: every dimension and id comes from the file.
#pragma once
#include "omni/engine.h"
#include <map>
#include <string>
#include <vector>

namespace omni {

struct RopeConfig {
  double theta = 10000.0;
  std::vector<int> mrope_section;  // empty for plain 1-D RoPE
  bool interleaved = false;
};

// A decoder stack of the Qwen3 family (thinker text LM, talker, code predictor).
struct DecoderConfig {
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;      // dense MLP width (code predictor), ResizeMLP width (talker)
  int moe_intermediate_size = 0;  // per-expert width; 0 for a dense stack
  int num_experts = 0;            // 0 for a dense stack
  int num_experts_per_tok = 0;
  bool norm_topk_prob = false;
  int shared_expert_intermediate_size = 0;  // talker only
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool is_moe_layer(int layer) const;
};

struct AudioEncoderConfig {
  int num_mel_bins = 128;
  int d_model = 0;
  int num_layers = 0;
  int num_heads = 0;
  int ffn_dim = 0;
  int downsample_hidden_size = 0;
  int output_dim = 0;
  int n_window = 50;
  int n_window_infer = 800;
  int max_source_positions = 1500;
};

// thinker_config.vision_config (docs/model.md §3.4).
struct VisionConfig {
  int depth = 0;
  int hidden_size = 0;
  int num_heads = 0;
  int intermediate_size = 0;
  int in_channels = 3;
  int patch_size = 16;
  int temporal_patch_size = 2;
  int spatial_merge_size = 2;
  int num_position_embeddings = 0;  // a square: side x side learned positions
  std::vector<int> deepstack_visual_indexes;
  int out_hidden_size = 0;
  double rope_theta = 10000.0;
  int head_dim() const { return hidden_size / num_heads; }
  int position_side() const;  // sqrt(num_position_embeddings)
  int patch_row_size() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
};

struct TalkerConfig {
  DecoderConfig text;
  DecoderConfig code_predictor;
  int thinker_hidden_size = 0;
  int accept_hidden_layer = 0;
  int num_code_groups = 0;
  int codec_pad_id = 0, codec_bos_id = 0, codec_eos_id = 0;
  int codec_nothink_id = 0, codec_think_bos_id = 0, codec_think_eos_id = 0;
  std::map<std::string, int> speaker_ids;  // lower-case name -> codec id
  int spatial_merge_size = 2;  // its own copy, for the 3-row positions of image spans (docs/model.md §3.7)
};

struct Code2WavConfig {
  int codebook_size = 0;
  int num_quantizers = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int sliding_window = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int decoder_dim = 0;
  std::vector<int> upsample_rates;     // decoder blocks, e.g. [8,5,4,3]
  std::vector<int> upsampling_ratios;  // pre-decoder, e.g. [2,2]
  int samples_per_frame() const;       // product of all rates (1920 in the release)
};

struct TokenIds {
  int im_start = 151644, im_end = 151645;
  int system = 8948, user = 872, assistant = 77091;
  int tts_pad = 151671, tts_bos = 151672, tts_eos = 151673;
  int audio_pad = 151675, audio_start = 151669, audio_end = 151670;
  int image_pad = 151655, video_pad = 151656;
  int vision_start = 151652, vision_end = 151653;
  int newline = -1;  // "\n" (after <|im_end|> and each role name in ChatML): from the tokenizer when it loads
};

struct ModelConfig {
  DecoderConfig thinker;
  AudioEncoderConfig audio;
  bool has_vision = false;  // a vision_config present
  VisionConfig vision;
  bool has_talker = false;  // enable_audio_output and a talker_config present
  TalkerConfig talker;
  Code2WavConfig code2wav;
  TokenIds ids;

  // Reads and validates <dir>/config.json. Throws ConfigError naming the file and key.
  static ModelConfig load(const std::string& path);
  static ModelConfig parse(const std::string& json_text, const std::string& origin);
};

// <dir>/generation_config.json: the checkpoint's sampling defaults, read as transformers reads them. A missing
// file, or one without `do_sample: true`, means greedy (transformers' default); absent values take transformers'
// defaults (temperature 1, top_k 50, top_p 1, repetition_penalty 1). Checked: do_sample a bool, temperature > 0,
// top_k an integer in [0, 2^31), top_p in (0, 1], repetition_penalty > 0; a bad value throws ConfigError naming
// the file and the key. Keys this engine does not use are ignored, as transformers ignores unknown ones.
Sampling load_generation_config(const std::string& path);
Sampling parse_generation_config(const std::string& json_text, const std::string& origin);

}  // namespace omni
