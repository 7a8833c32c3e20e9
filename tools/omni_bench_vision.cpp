#include "omni_bench_vision.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "model/vision_encoder.h"
#include "vision/preprocess.h"

namespace omni {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The release checkpoint's preprocessor_config.json: the tower's patch geometry, images between 3136 and
// 12845056 pixels; video frames keep the processor's own limits (VisionPreprocessConfig's defaults).
VisionPreprocessConfig release_preprocess(const VisionConfig& cfg) {
  VisionPreprocessConfig p;
  p.patch_size = cfg.patch_size;
  p.temporal_patch_size = cfg.temporal_patch_size;
  p.merge_size = cfg.spatial_merge_size;
  p.min_pixels = 3136;
  p.max_pixels = 12845056;
  return p;
}

std::vector<RgbImage> synthetic_frames(int frames, int width, int height) {
  std::mt19937 rng(13);
  std::vector<RgbImage> out(static_cast<size_t>(frames));
  for (RgbImage& im : out) {
    im.width = width;
    im.height = height;
    im.rgb.resize(size_t(width) * size_t(height) * 3);
    for (uint8_t& v : im.rgb) v = uint8_t(rng());
  }
  return out;
}

VisualPatches preprocess(const VisionPreprocessConfig& p, const std::vector<RgbImage>& frames) {
  return frames.size() == 1 ? preprocess_image(p, frames[0]) : preprocess_video(p, frames);
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int64_t vision_tokens(const VisionConfig& cfg, int frames, int width, int height) {
  const VisionPreprocessConfig p = release_preprocess(cfg);
  const ResizeTarget r = frames == 1 ? image_target(p, height, width) : video_target(p, height, width);
  const int64_t t = (frames + p.temporal_patch_size - 1) / p.temporal_patch_size;
  return t * (r.height / p.factor()) * (r.width / p.factor());
}

VisionTiming bench_vision(Backend& be, const VisionConfig& cfg, const std::string& what, int frames, int width,
                          int height) {
  const VisionPreprocessConfig p = release_preprocess(cfg);
  const std::vector<RgbImage> input = synthetic_frames(frames, width, height);
  VisualPatches patches = preprocess(p, input);
  VisionEncoder enc(be, cfg, synthetic_vision_encoder_weights(be, cfg, 51), patches.rows());
  const int64_t tokens = patches.tokens(p.merge_size);
  Tensor out = be.alloc({tokens, int64_t(cfg.out_hidden_size)});
  std::vector<Tensor> deepstack;
  for (size_t i = 0; i < cfg.deepstack_visual_indexes.size(); ++i)
    deepstack.push_back(be.alloc({tokens, int64_t(cfg.out_hidden_size)}));

  std::vector<double> pre_ms, tower_ms;
  for (int r = 0; r < 4; ++r) {  // the first is a warm-up (plans, cuBLAS handles)
    auto t0 = Clock::now();
    patches = preprocess(p, input);
    const double pm = ms_since(t0);
    be.synchronize();
    t0 = Clock::now();
    enc.encode(patches.pixels.data(), patches.grid_t, patches.grid_h, patches.grid_w, out, deepstack);
    be.synchronize();
    if (r > 0) {
      pre_ms.push_back(pm);
      tower_ms.push_back(ms_since(t0));
    }
  }
  VisionTiming t;
  t.what = what;
  t.frames = frames;
  t.grid_t = patches.grid_t;
  t.grid_h = patches.grid_h;
  t.grid_w = patches.grid_w;
  t.tokens = tokens;
  t.preprocess_ms = median(pre_ms);
  t.tower_ms = median(tower_ms);
  return t;
}

}  // namespace omni
