// The thinker's 3-row MRoPE positions (time, height, width) for a prompt with text, audio,
// image and video spans, as transformers' get_rope_index computes them (docs/model.md §3.5):
// text and audio advance all three rows together; an image or video span's tokens take
// (t·13·seconds_per_pair + s, row + s, column + s) over its merged grid; the token after a
// span (and the span's closing marker) continues from the largest position of the span + 1.
// Positions are reals: a clip's time row steps by 13 · 2/fps, which need not be whole.
#pragma once
#include <cstdint>
#include <vector>

#include "io/model_config.h"

namespace omni {

struct VisualSpan {
  int t = 1, h = 0, w = 0;           // grid in patches (before merging)
  double seconds_per_pair = 1.0;     // video: temporal_patch_size / fps; images: 1 (time row 0)
};

struct MropeInput {
  std::vector<VisualSpan> images;    // in prompt order
  std::vector<VisualSpan> videos;    // in prompt order
  std::vector<int> audio_tokens;     // audio spans' token counts, in prompt order (clips in videos too)
  bool use_audio_in_video = false;   // videos are <|vision_start|><|audio_start|>...interleaved...
  int spatial_merge_size = 2;
  double position_id_per_seconds = 13.0;
};

struct MropePositions {
  std::vector<float> t, h, w;  // one per prompt token
  // Position of the first generated token on all three rows: max over the prompt + 1. A decode
  // step at cache length n has position n + delta, delta = next - prompt length.
  float next = 0.f;
};

// Throws omni::Error naming the problem when the ids do not hold the spans `in` describes
// (a placeholder count that does not match its grid, a missing span, a leftover one).
MropePositions mrope_positions(const std::vector<int32_t>& ids, const TokenIds& tok, const MropeInput& in);

// The thinker's rotary for rows with 3-row positions (docs/model.md §3.1, interleaved MRoPE): for row r and
// frequency i < head_dim/2 the angle is p·inv_freq[i] in float32, p taken from row h where i % 3 == 1 and
// i < 3·mrope_section[1], from row w where i % 3 == 2 and i < 3·mrope_section[2], else from row t (transformers
// recomposes the thinker's frequencies this way whatever the config's `interleaved` says). Writes cos and sin
// [n, head_dim/2] (AttentionArgs::rope_cos / rope_sin). Throws omni::Error when mrope_section does not cover
// head_dim/2.
void mrope_rotary_tables(const RopeConfig& rope, int head_dim, const float* t, const float* h, const float* w,
                         size_t n, float* cos, float* sin);

}  // namespace omni
