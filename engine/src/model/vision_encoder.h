// VisionEncoder: Qwen3-Omni's vision tower (docs/model.md §3.4) over Backend operations.
// One image or video at a time: patch rows [t*h*w, 3*tp*p*p] (vision/preprocess.h, merge-block
// order) -> patch embedding (a linear over the row) + the learned position table resampled
// bilinearly (align_corners) to the h x w grid, 2-D rotary, pre-LN blocks with full attention
// inside each temporal slice, then the merger (LN, 2x2 concat, MLP) to [t*h*w/4, out_hidden]
// and the DeepStack mergers (2x2 concat, LN, MLP) at the configured blocks.
// Slices never attend to each other, so a long clip runs a few slices at a time: scratch is
// sized at construction for `max_patches` patch rows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend.h"
#include "io/checkpoint.h"
#include "io/model_config.h"

namespace omni {

struct VisionBlockWeights {
  Tensor norm1_w, norm1_b, norm2_w, norm2_b;  // LayerNorm, eps 1e-6
  AttentionWeights attn;                      // the fused qkv split into q/k/v, with biases
  Tensor fc1_w, fc1_b, fc2_w, fc2_b;          // MLP, gelu_pytorch_tanh
};

struct VisionMergerWeights {
  bool norm_after_concat = false;  // DeepStack mergers: LN over the concatenated 4 rows
  Tensor ln_w, ln_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

struct VisionEncoderWeights {
  Tensor patch_w, patch_b;  // [hidden, 3*tp*p*p] (the Conv3d kernel flattened), [hidden]
  Tensor pos_table;         // [side*side, hidden]
  std::vector<VisionBlockWeights> blocks;
  VisionMergerWeights merger;
  std::vector<VisionMergerWeights> deepstack;  // one per deepstack_visual_indexes entry
};

// Reads `<prefix>.*` (default thinker.visual), checking every shape against `cfg`.
VisionEncoderWeights load_vision_encoder_weights(const Checkpoint& ck, Backend& be, const VisionConfig& cfg,
                                                 const std::string& prefix = "thinker.visual");
VisionEncoderWeights synthetic_vision_encoder_weights(Backend& be, const VisionConfig& cfg, uint64_t seed);

// Host-side tables for one grid (t, h, w), rows in merge-block order, slice after slice:
// the 4 position-table taps and weights of each patch (float32 as transformers computes them),
// and the rotary cos/sin [rows, head_dim/2] (height angles, then width angles).
struct VisionGridTables {
  std::vector<int32_t> taps;     // [rows, 4]
  std::vector<float> weights;    // [rows, 4]
  std::vector<float> cos, sin;   // [rows, head_dim / 2]
};
VisionGridTables vision_grid_tables(const VisionConfig& cfg, int t, int h, int w);

class VisionEncoder {
 public:
  VisionEncoder(Backend& be, const VisionConfig& cfg, VisionEncoderWeights weights, int64_t max_patches);

  const VisionConfig& config() const { return cfg_; }
  int64_t max_patches() const { return max_patches_; }

  // pixels: host [t*h*w, patch_row_size] floats; grid in patches (h, w multiples of the merge
  // size). out: backend [t*h*w/m^2, out_hidden]; deepstack: one such tensor per DeepStack merger
  // (may be empty to skip them). Throws omni::Error for a grid that does not fit. Not re-entrant.
  void encode(const float* pixels, int t, int h, int w, const Tensor& out, const std::vector<Tensor>& deepstack);

 private:
  void merge(const VisionMergerWeights& m, int64_t rows, const Tensor& out);

  Backend& be_;
  VisionConfig cfg_;
  VisionEncoderWeights w_;
  int64_t max_patches_;
  Tensor pixels_, taps_, tap_w_, cos_, sin_;
  Tensor hidden_, normed_, branch_, ffn_, merged_;
};

}  // namespace omni
