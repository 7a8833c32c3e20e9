// omni-bench's vision stages on synthetic weights (docs/model.md §3.4): one camera frame or a short
// clip of frames, preprocessed on the host exactly as the engine does it (vision/preprocess.h with the
// release's pixel limits), then the vision tower with its DeepStack mergers on the device. The visual
// prefill (the thinker over the resulting tokens) is timed by omni-bench itself with the thinker it holds.
#pragma once
#include <cstdint>
#include <string>

#include "backend.h"
#include "io/model_config.h"

namespace omni {

struct VisionTiming {
  std::string what;  // e.g. "640x480 frame"
  int frames = 0, grid_t = 0, grid_h = 0, grid_w = 0;
  int64_t tokens = 0;        // thinker rows the visual input becomes
  double preprocess_ms = 0;  // host: resize, normalize, patch layout (median of 3 after a warm-up)
  double tower_ms = 0;       // device: patch rows uploaded, tower + merger + DeepStack mergers (same)
};

// `frames` synthetic RGB frames of `width` x `height`: 1 frame is an image, more a video (frames
// already sampled, e.g. 4 for 2 s at 2 fps).
VisionTiming bench_vision(Backend& be, const VisionConfig& cfg, const std::string& what, int frames, int width,
                          int height);

// Rows of the thinker prefill for those inputs, computed without running them (sizes scratch).
int64_t vision_tokens(const VisionConfig& cfg, int frames, int width, int height);

}  // namespace omni
