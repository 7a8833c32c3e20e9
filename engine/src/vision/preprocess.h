// Vision preprocessing as transformers' Qwen2-VL image and video processors do it for
// Qwen3-Omni (docs/model.md, "Vision"): smart_resize to multiples of patch*merge, antialiased
// bicubic resampling on 8-bit RGB, rescale + normalize, and the patch layout the vision tower
// reads: one row of C*temporal_patch*patch*patch values per patch, rows in 2x2 merge-block
// order, frames paired in time (an image is its own pair).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vision/image.h"

namespace omni {

struct VisionPreprocessConfig {
  // Qwen2VLImageProcessor's class defaults; load() replaces those the file names.
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  // Video frames: the Qwen3-Omni processor's video defaults (128 and 768 tokens of 32x32).
  int64_t video_min_pixels = 128 * 32 * 32;
  int64_t video_max_pixels = 768 * 32 * 32;
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};  // OpenAI CLIP
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
  double rescale_factor = 1.0 / 255.0;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;

  int factor() const { return patch_size * merge_size; }
  int row_size() const { return 3 * temporal_patch_size * patch_size * patch_size; }
  // Reads <path> (preprocessor_config.json): patch_size, temporal_patch_size, merge_size,
  // size.shortest_edge / size.longest_edge, min_pixels / max_pixels (these win over size),
  // image_mean, image_std, rescale_factor, do_resize / do_rescale / do_normalize. Absent keys
  // keep the defaults above; a key of the wrong type or range is a ConfigError naming it.
  static VisionPreprocessConfig load(const std::string& path);
};

struct ResizeTarget {
  int height = 0;
  int width = 0;
};

// transformers' smart_resize: both sides multiples of `factor` (rounded half to even), the area
// brought inside [min_pixels, max_pixels] keeping the aspect ratio. Throws ImageError for an
// aspect ratio over 200 or an empty image.
ResizeTarget smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels);

// Antialiased bicubic (Keys, a = -0.5) resampling of 8-bit RGB as torchvision resizes uint8
// images on the CPU: separable, the horizontal pass then the vertical one, each in fixed point
// (int16 weights) and clamped to 8 bits; a pass whose size does not change is skipped. Same
// size returns a copy.
RgbImage resize_bicubic_aa(const RgbImage& in, int out_height, int out_width);

// The tower's input for one image or one video.
struct VisualPatches {
  int grid_t = 0;  // temporal pairs
  int grid_h = 0;  // patch rows (before merging)
  int grid_w = 0;
  int row_size = 0;
  std::vector<float> pixels;  // [grid_t*grid_h*grid_w, row_size]
  bool video = false;            // a clip (<|video_pad|> in the prompt) rather than a still image
  double seconds_per_pair = 1.0;  // a clip: temporal_patch_size / fps, the time between its pairs
  int64_t rows() const { return int64_t(grid_t) * grid_h * grid_w; }
  // Tokens in the prompt: rows / merge_size^2.
  int64_t tokens(int merge_size) const { return rows() / (int64_t(merge_size) * merge_size); }
};

// The size an image of `height` x `width` is resized to (images use min/max_pixels).
ResizeTarget image_target(const VisionPreprocessConfig& cfg, int height, int width);
ResizeTarget video_target(const VisionPreprocessConfig& cfg, int height, int width);

VisualPatches preprocess_image(const VisionPreprocessConfig& cfg, const RgbImage& image);
// Frames of one video, all of one size; an odd count repeats the last frame to fill the pair.
VisualPatches preprocess_video(const VisionPreprocessConfig& cfg, const std::vector<RgbImage>& frames);

// Frame indices the video processor samples from `total` frames recorded at `video_fps` for a
// target `fps` (min_frames 4, max_frames 768, counts even; transformers' sample_frames).
std::vector<int> sample_frame_indices(int total, double video_fps, double fps, int temporal_patch_size = 2,
                                      int min_frames = 4, int max_frames = 768);

}  // namespace omni
