// AudioEncoder: Qwen3-Omni's audio tower (AuT, docs/model.md §3.2) over Backend operations.
// One clip's log-mel [bins, T] -> [N, output_dim] rows for the thinker's <|audio_pad|> slots:
//   100-frame chunks (tail zero-padded to 100 iff the clip has >= 100 frames), 3 x (3x3 stride-2
//   conv + GELU), flatten (channel*freq), conv_out, sinusoidal positions restarted per chunk,
//   padded rows dropped, pre-LN encoder layers with bidirectional attention inside windows of
//   W tokens, ln_post, proj2(GELU(proj1)).
// Windows never mix, so the clip is processed a few windows at a time: scratch is sized at
// construction for `max_windows_per_pass` windows, whatever the clip length.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend.h"
#include "io/checkpoint.h"
#include "model/mel.h"
#include "io/model_config.h"

namespace omni {

// Audio tokens for a clip of `mel_frames` frames: 13*(T//100) + ceil((T%100)/8) for the
// release config, computed from n_window and the conv stack in general (docs/model.md §5.2).
int audio_token_count(int mel_frames, const AudioEncoderConfig& cfg);

struct AudioEncoderLayerWeights {
  Tensor attn_norm_w, attn_norm_b;  // self_attn_layer_norm
  AttentionWeights attn;            // q/k/v/out with biases, no RoPE
  Tensor ffn_norm_w, ffn_norm_b;    // final_layer_norm
  Tensor fc1_w, fc1_b, fc2_w, fc2_b;
};

struct AudioEncoderWeights {
  Tensor conv1_w, conv1_b, conv2_w, conv2_b, conv3_w, conv3_b;
  Tensor conv_out_w;  // [d_model, channels * freq], no bias
  std::vector<AudioEncoderLayerWeights> layers;
  Tensor ln_post_w, ln_post_b, proj1_w, proj1_b, proj2_w, proj2_b;
};

// Reads `<prefix>.*` (default thinker.audio_tower), checking every shape against `cfg`.
AudioEncoderWeights load_audio_encoder_weights(const Checkpoint& ck, Backend& be, const AudioEncoderConfig& cfg,
                                               const std::string& prefix = "thinker.audio_tower");
// Synthetic weights of the config's shapes (synthetic_weight_for, seeds from `seed`): benchmarks
// without a checkpoint.
AudioEncoderWeights synthetic_audio_encoder_weights(Backend& be, const AudioEncoderConfig& cfg, uint64_t seed);

class AudioEncoder {
 public:
  AudioEncoder(Backend& be, const AudioEncoderConfig& cfg, AudioEncoderWeights weights, int max_windows_per_pass = 4);

  const AudioEncoderConfig& config() const { return cfg_; }
  int token_count(int mel_frames) const { return audio_token_count(mel_frames, cfg_); }

  // out: [token_count(mel.frames), output_dim] backend tensor. Not re-entrant (shared scratch).
  void encode(const MelFeatures& mel, const Tensor& out);

 private:
  struct Geometry;
  Geometry plan(const MelFeatures& mel) const;
  // Runs chunks [c0, c1) through the whole tower; leaves `rows` output rows in head_out_.
  int64_t run_pass(const MelFeatures& mel, const Geometry& g, int64_t c0, int64_t c1);
  void conv_batch(const MelFeatures& mel, const Geometry& g, int64_t c0, int64_t count, int64_t row_offset);
  template <class Sink>
  void encode_with(const MelFeatures& mel, Sink&& sink);

  Backend& be_;
  AudioEncoderConfig cfg_;
  AudioEncoderWeights w_;
  int chunk_frames_;       // 2 * n_window mel frames per chunk
  int chunks_per_window_;  // n_window_infer / chunk_frames_
  int full_chunk_tokens_;  // conv output length of a full chunk (13)
  int freq_out_;           // mel bins after three stride-2 convs (16)
  int conv_batch_chunks_;  // chunks per conv call
  int max_pass_chunks_;
  std::vector<float> host_chunks_;  // [conv_batch, 1, bins, chunk_frames] staging for upload
  Tensor mel_in_, conv1_, conv2_, conv3_, flat_;
  Tensor pos_;  // [full_chunk_tokens, d_model] sinusoid table
  Tensor hidden_, normed_, branch_, ffn_, head_, head_out_;
};

}  // namespace omni
