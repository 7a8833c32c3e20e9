#include "vision/preprocess.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/json_file.h"

namespace omni {
namespace {

int64_t json_int(const nlohmann::json& j, const char* key, const std::string& path, int64_t lo, int64_t hi) {
  const auto& v = j.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    throw ConfigError(path + ": \"" + key + "\" must be an integer in [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
  return v.get<int64_t>();
}

bool json_bool(const nlohmann::json& j, const char* key, const std::string& path) {
  const auto& v = j.at(key);
  if (!v.is_boolean()) throw ConfigError(path + ": \"" + key + "\" must be true or false");
  return v.get<bool>();
}

std::array<float, 3> json_triple(const nlohmann::json& j, const char* key, const std::string& path, bool positive) {
  const auto& v = j.at(key);
  std::array<float, 3> out{};
  if (v.is_number()) {
    out.fill(v.get<float>());
  } else if (v.is_array() && v.size() == 3) {
    for (size_t i = 0; i < 3; ++i) {
      if (!v[i].is_number()) throw ConfigError(path + ": \"" + key + "\" must hold 3 numbers");
      out[i] = v[i].get<float>();
    }
  } else {
    throw ConfigError(path + ": \"" + key + "\" must be a number or a list of 3 numbers (R, G, B)");
  }
  for (float x : out)
    if (!std::isfinite(x) || (positive && !(x > 0.0f)))
      throw ConfigError(path + ": \"" + key + "\" holds " + (positive ? "a value that is not positive" : "a non-finite value"));
  return out;
}

// Python's round(): to nearest, ties to even (the default FE_TONEAREST mode).
double round_half_even(double x) {
  const int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(x);
  std::fesetround(saved);
  return r;
}

// Keys' cubic convolution kernel with a = -0.5, evaluated as torch's antialiased bicubic does.
double cubic(double x) {
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
  return 0.0;
}

// Taps of an antialiased resampling from `in` samples to `out` in fixed point, as torch's
// uint8 path (a port of Pillow-SIMD) makes them: for output i the first input index, the
// count, and the weights normalised in double then scaled by 2^precision and rounded half
// away from zero to int16. `precision` is the largest (< 22) for which the biggest weight of
// the whole axis still fits in 15 bits.
struct Taps {
  std::vector<int> first;
  std::vector<int> count;
  int max_count = 0;
  int precision = 0;
  std::vector<int32_t> w;  // [out][max_count]
};

Taps make_taps(int in, int out) {
  const double scale = double(in) / double(out);
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  Taps t;
  t.max_count = int(std::ceil(support)) * 2 + 1;
  t.first.resize(size_t(out));
  t.count.resize(size_t(out));
  std::vector<double> wd(size_t(out) * size_t(t.max_count), 0.0);
  double wt_max = 0.0;
  for (int i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);
    const int lo = std::max(int(int64_t(center - support + 0.5)), 0);
    const int n = std::clamp(int(std::min(int64_t(center + support + 0.5), int64_t(in))) - lo, 0, t.max_count);
    double total = 0.0;
    double* w = &wd[size_t(i) * size_t(t.max_count)];
    for (int j = 0; j < n; ++j) {
      w[j] = cubic((j + lo - center + 0.5) * invscale);
      total += w[j];
    }
    if (total != 0.0)
      for (int j = 0; j < n; ++j) {
        w[j] /= total;
        wt_max = std::max(wt_max, w[j]);
      }
    t.first[size_t(i)] = lo;
    t.count[size_t(i)] = n;
  }
  for (t.precision = 0; t.precision < 22; ++t.precision)
    if (int(0.5 + wt_max * double(1 << (t.precision + 1))) >= (1 << 15)) break;
  t.w.resize(wd.size());
  for (size_t k = 0; k < wd.size(); ++k) {
    const double v = wd[k] * double(1 << t.precision);
    t.w[k] = int16_t(v < 0 ? int(-0.5 + v) : int(0.5 + v));
  }
  return t;
}

// One pass along x (horizontal) or y (vertical) of an HWC RGB image: integer sums of
// weight * sample, plus half, shifted down by the precision and clamped to 0..255.
RgbImage pass(const RgbImage& in, int out_h, int out_w, bool horizontal) {
  RgbImage out;
  out.width = out_w;
  out.height = out_h;
  out.rgb.resize(size_t(out_w) * size_t(out_h) * 3);
  const Taps t = horizontal ? make_taps(in.width, out_w) : make_taps(in.height, out_h);
  const int32_t half = t.precision > 0 ? int32_t(1) << (t.precision - 1) : 0;
  for (int y = 0; y < out_h; ++y) {
    for (int x = 0; x < out_w; ++x) {
      const int i = horizontal ? x : y;
      const int32_t* w = &t.w[size_t(i) * size_t(t.max_count)];
      int32_t acc[3] = {half, half, half};
      for (int j = 0; j < t.count[size_t(i)]; ++j) {
        const int sy = horizontal ? y : t.first[size_t(i)] + j;
        const int sx = horizontal ? t.first[size_t(i)] + j : x;
        const uint8_t* p = &in.rgb[(size_t(sy) * size_t(in.width) + size_t(sx)) * 3];
        for (int c = 0; c < 3; ++c) acc[c] += w[j] * int32_t(p[c]);
      }
      uint8_t* q = &out.rgb[(size_t(y) * size_t(out_w) + size_t(x)) * 3];
      for (int c = 0; c < 3; ++c) q[c] = uint8_t(std::clamp(acc[c] >> t.precision, 0, 255));
    }
  }
  return out;
}

void check_config(const VisionPreprocessConfig& c, const std::string& path) {
  if (c.patch_size <= 0 || c.temporal_patch_size <= 0 || c.merge_size <= 0)
    throw ConfigError(path + ": patch_size, temporal_patch_size and merge_size must be positive");
  if (c.min_pixels <= 0 || c.max_pixels < c.min_pixels)
    throw ConfigError(path + ": the pixel limits need 0 < min_pixels <= max_pixels (got " +
                      std::to_string(c.min_pixels) + ", " + std::to_string(c.max_pixels) + ")");
  if (!(c.rescale_factor > 0.0) || !std::isfinite(c.rescale_factor))
    throw ConfigError(path + ": \"rescale_factor\" must be a positive number");
}

// Writes the frames (each [H][W][3] after resizing, values already normalised into `norm`,
// CHW float per frame) as patch rows: row ((t*bh_n + bh)*bw_n + bw)*m*m + ih*m + iw holds
// pixel (c, ti, py, px) at column ((c*tp + ti)*p + py)*p + px.
VisualPatches patchify(const VisionPreprocessConfig& cfg, const std::vector<std::vector<float>>& frames, int H, int W) {
  const int p = cfg.patch_size, m = cfg.merge_size, tp = cfg.temporal_patch_size;
  VisualPatches out;
  out.grid_t = int((frames.size() + size_t(tp) - 1) / size_t(tp));
  out.grid_h = H / p;
  out.grid_w = W / p;
  out.row_size = cfg.row_size();
  out.pixels.resize(size_t(out.rows()) * size_t(out.row_size));
  const int bh_n = out.grid_h / m, bw_n = out.grid_w / m;
  size_t r = 0;
  for (int t = 0; t < out.grid_t; ++t)
    for (int bh = 0; bh < bh_n; ++bh)
      for (int bw = 0; bw < bw_n; ++bw)
        for (int ih = 0; ih < m; ++ih)
          for (int iw = 0; iw < m; ++iw, ++r) {
            float* row = &out.pixels[r * size_t(out.row_size)];
            const int y0 = (bh * m + ih) * p, x0 = (bw * m + iw) * p;
            for (int c = 0; c < 3; ++c)
              for (int ti = 0; ti < tp; ++ti) {
                // The last frame repeats where the count is not a multiple of the pair.
                const size_t f = std::min(size_t(t) * size_t(tp) + size_t(ti), frames.size() - 1);
                const float* src = frames[f].data() + size_t(c) * size_t(H) * size_t(W);
                for (int py = 0; py < p; ++py)
                  for (int px = 0; px < p; ++px)
                    *row++ = src[size_t(y0 + py) * size_t(W) + size_t(x0 + px)];
              }
          }
  return out;
}

// Rescale and normalise one RGB frame into CHW float32 as torchvision does it fused:
// (x - mean/rescale) / (std/rescale), mean and std scaled in float32.
std::vector<float> normalise(const VisionPreprocessConfig& cfg, const RgbImage& img) {
  const size_t hw = size_t(img.width) * size_t(img.height);
  std::vector<float> out(hw * 3);
  const float inv = float(1.0 / cfg.rescale_factor);
  for (int c = 0; c < 3; ++c) {
    const float mean = cfg.mean[size_t(c)] * inv, sd = cfg.std[size_t(c)] * inv;
    const float rescale = float(cfg.rescale_factor);
    float* dst = out.data() + size_t(c) * hw;
    for (size_t i = 0; i < hw; ++i) {
      const float x = float(img.rgb[i * 3 + size_t(c)]);
      if (cfg.do_normalize && cfg.do_rescale)
        dst[i] = (x - mean) / sd;
      else if (cfg.do_normalize)
        dst[i] = (x - cfg.mean[size_t(c)]) / cfg.std[size_t(c)];
      else if (cfg.do_rescale)
        dst[i] = x * rescale;
      else
        dst[i] = x;
    }
  }
  return out;
}

ResizeTarget target_for(const VisionPreprocessConfig& cfg, int height, int width, int64_t lo, int64_t hi) {
  if (!cfg.do_resize) {
    if (height <= 0 || width <= 0) throw ImageError("empty image");
    if (height % cfg.factor() || width % cfg.factor())
      throw ImageError("image " + std::to_string(width) + "x" + std::to_string(height) +
                       " is not a multiple of " + std::to_string(cfg.factor()) +
                       " on each side and the preprocessor does not resize (do_resize false)");
    return {height, width};
  }
  return smart_resize(height, width, cfg.factor(), lo, hi);
}

}  // namespace

VisionPreprocessConfig VisionPreprocessConfig::load(const std::string& path) {
  const nlohmann::json j = read_json_object(path, "the preprocessor config");
  VisionPreprocessConfig c;
  const int64_t big = int64_t(1) << 40;
  if (j.contains("patch_size")) c.patch_size = int(json_int(j, "patch_size", path, 1, 1024));
  if (j.contains("temporal_patch_size")) c.temporal_patch_size = int(json_int(j, "temporal_patch_size", path, 1, 64));
  if (j.contains("merge_size")) c.merge_size = int(json_int(j, "merge_size", path, 1, 64));
  if (j.contains("size")) {
    const auto& s = j.at("size");
    if (!s.is_object()) throw ConfigError(path + ": \"size\" must be an object");
    if (s.contains("shortest_edge")) c.min_pixels = json_int(s, "shortest_edge", path + " size", 1, big);
    if (s.contains("longest_edge")) c.max_pixels = json_int(s, "longest_edge", path + " size", 1, big);
  }
  if (j.contains("min_pixels")) c.min_pixels = json_int(j, "min_pixels", path, 1, big);
  if (j.contains("max_pixels")) c.max_pixels = json_int(j, "max_pixels", path, 1, big);
  if (j.contains("image_mean")) c.mean = json_triple(j, "image_mean", path, false);
  if (j.contains("image_std")) c.std = json_triple(j, "image_std", path, true);
  if (j.contains("rescale_factor")) {
    if (!j.at("rescale_factor").is_number()) throw ConfigError(path + ": \"rescale_factor\" must be a number");
    c.rescale_factor = j.at("rescale_factor").get<double>();
  }
  if (j.contains("do_resize")) c.do_resize = json_bool(j, "do_resize", path);
  if (j.contains("do_rescale")) c.do_rescale = json_bool(j, "do_rescale", path);
  if (j.contains("do_normalize")) c.do_normalize = json_bool(j, "do_normalize", path);
  check_config(c, path);
  return c;
}

ResizeTarget smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels) {
  if (height <= 0 || width <= 0)
    throw ImageError("empty image (" + std::to_string(width) + "x" + std::to_string(height) + ")");
  const double ratio = double(std::max(height, width)) / double(std::min(height, width));
  if (ratio > 200.0)
    throw ImageError("image " + std::to_string(width) + "x" + std::to_string(height) + ": aspect ratio " +
                     std::to_string(ratio) + " is over 200");
  const double f = factor;
  double h_bar = round_half_even(height / f) * f;
  double w_bar = round_half_even(width / f) * f;
  if (h_bar * w_bar > double(max_pixels)) {
    const double beta = std::sqrt(double(height) * double(width) / double(max_pixels));
    h_bar = std::max(f, std::floor(height / beta / f) * f);
    w_bar = std::max(f, std::floor(width / beta / f) * f);
  } else if (h_bar * w_bar < double(min_pixels)) {
    const double beta = std::sqrt(double(min_pixels) / (double(height) * double(width)));
    h_bar = std::ceil(height * beta / f) * f;
    w_bar = std::ceil(width * beta / f) * f;
  }
  if (h_bar <= 0 || w_bar <= 0 || h_bar > 1e6 || w_bar > 1e6)
    throw ImageError("image " + std::to_string(width) + "x" + std::to_string(height) + " resizes to " +
                     std::to_string(int64_t(w_bar)) + "x" + std::to_string(int64_t(h_bar)) +
                     ", which is empty or too large");
  return {int(h_bar), int(w_bar)};
}

RgbImage resize_bicubic_aa(const RgbImage& in, int out_height, int out_width) {
  if (in.width <= 0 || in.height <= 0 || out_height <= 0 || out_width <= 0)
    throw ImageError("resize of an empty image");
  if (out_width == in.width && out_height == in.height) return in;
  if (out_width == in.width) return pass(in, out_height, out_width, false);
  RgbImage h = pass(in, in.height, out_width, true);
  if (out_height == in.height) return h;
  return pass(h, out_height, out_width, false);
}

ResizeTarget image_target(const VisionPreprocessConfig& cfg, int height, int width) {
  return target_for(cfg, height, width, cfg.min_pixels, cfg.max_pixels);
}

ResizeTarget video_target(const VisionPreprocessConfig& cfg, int height, int width) {
  return target_for(cfg, height, width, cfg.video_min_pixels, cfg.video_max_pixels);
}

VisualPatches preprocess_image(const VisionPreprocessConfig& cfg, const RgbImage& image) {
  const ResizeTarget t = image_target(cfg, image.height, image.width);
  const RgbImage resized = resize_bicubic_aa(image, t.height, t.width);
  return patchify(cfg, {normalise(cfg, resized)}, t.height, t.width);
}

VisualPatches preprocess_video(const VisionPreprocessConfig& cfg, const std::vector<RgbImage>& frames) {
  if (frames.empty()) throw ImageError("video without frames");
  const int h = frames[0].height, w = frames[0].width;
  for (size_t i = 1; i < frames.size(); ++i)
    if (frames[i].height != h || frames[i].width != w)
      throw ImageError("video frame " + std::to_string(i) + " is " + std::to_string(frames[i].width) + "x" +
                       std::to_string(frames[i].height) + ", frame 0 is " + std::to_string(w) + "x" +
                       std::to_string(h) + " (all frames of a video must have one size)");
  const ResizeTarget t = video_target(cfg, h, w);
  std::vector<std::vector<float>> norm;
  norm.reserve(frames.size());
  for (const RgbImage& f : frames) norm.push_back(normalise(cfg, resize_bicubic_aa(f, t.height, t.width)));
  return patchify(cfg, norm, t.height, t.width);
}

std::vector<int> sample_frame_indices(int total, double video_fps, double fps, int temporal_patch_size,
                                      int min_frames, int max_frames) {
  if (total <= 0) throw ImageError("video without frames");
  if (!(video_fps > 0.0) || !(fps > 0.0) || !std::isfinite(video_fps) || !std::isfinite(fps))
    throw ImageError("frame sampling needs positive frame rates (video " + std::to_string(video_fps) +
                     " fps, asked " + std::to_string(fps) + " fps)");
  const int tp = temporal_patch_size;
  const double cap = std::floor(double(std::min(max_frames, total)) / tp) * tp;
  double n = double(total) / video_fps * fps;
  n = std::min(std::min(std::max(n, double(min_frames)), cap), double(total));
  n = std::floor(n / tp) * tp;
  if (n <= 0)
    throw ImageError("video of " + std::to_string(total) + " frames is too short to sample pairs of " +
                     std::to_string(tp) + " frames");
  // torch.arange(0, total, total / n).int(): float32 values, truncated.
  const double step = double(total) / n;
  const int64_t count = int64_t(std::ceil(double(total) / step));
  std::vector<int> idx;
  idx.reserve(size_t(count));
  for (int64_t i = 0; i < count; ++i) idx.push_back(int(float(double(i) * step)));
  return idx;
}

}  // namespace omni
