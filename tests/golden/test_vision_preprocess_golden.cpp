// Vision preprocessing against transformers' Qwen2-VL image and video processors
// (tests/fixtures/golden/vision_preprocess, written by tools/make_vision_fixtures.py from small
// procedurally drawn photographs). Each test prints the largest difference in 8-bit levels;
// decoding and resizing are bit-exact against PIL's decoders and torchvision's uint8 resize on
// x86-64 (where the fixtures are made).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "golden_util.h"
#include "omni/npy.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace {

using omni::RgbImage;

std::string dir() { return golden::fixtures() + "/golden/vision_preprocess"; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

// The checkpoint's settings with the case's pixel limits.
omni::VisionPreprocessConfig config_for(const nlohmann::json& meta) {
  omni::VisionPreprocessConfig c;
  c.patch_size = 16;
  c.min_pixels = c.video_min_pixels = meta.at("min_pixels").get<int64_t>();
  c.max_pixels = c.video_max_pixels = meta.at("max_pixels").get<int64_t>();
  return c;
}

struct LevelDiff {
  int max = 0;
  size_t differing = 0;
  size_t total = 0;
};

LevelDiff compare(const RgbImage& a, const RgbImage& b) {
  LevelDiff d;
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  if (a.rgb.size() != b.rgb.size()) return {255, a.rgb.size(), a.rgb.size()};
  d.total = a.rgb.size();
  for (size_t i = 0; i < a.rgb.size(); ++i) {
    const int diff = std::abs(int(a.rgb[i]) - int(b.rgb[i]));
    d.max = std::max(d.max, diff);
    d.differing += diff != 0;
  }
  return d;
}

std::vector<std::string> cases(const char* kind) {
  std::vector<std::string> out;
  for (const std::string& c : golden::subdirs(dir()))
    if (read_json(c + "/meta.json").at("kind") == kind) out.push_back(c);
  return out;
}

std::string base(const std::string& p) { return p.substr(p.rfind('/') + 1); }

TEST(VisionPreprocess, DecodedPixelsEqualPil) {
  const auto imgs = cases("image");
  ASSERT_GE(imgs.size(), 6u);
  for (const std::string& c : imgs) {
    const auto meta = read_json(c + "/meta.json");
    const std::string src = golden::fixtures() + "/" + meta.at("source").get<std::string>();
    const RgbImage ours = omni::load_image_file(src);
    const RgbImage pil = omni::load_image_file(c + "/decoded.png");
    const LevelDiff d = compare(ours, pil);
    std::printf("decode %-24s %-5s %dx%d: max %d levels, %zu of %zu samples differ\n", base(c).c_str(),
                meta.at("source_mode").get<std::string>().c_str(), ours.width, ours.height, d.max, d.differing,
                d.total);
    EXPECT_EQ(d.max, 0) << c;
  }
}

TEST(VisionPreprocess, ResizeIsWithinOneLevelOfTorchvision) {
  const auto imgs = cases("image");
  int worst = 0;
  for (const std::string& c : imgs) {
    const auto meta = read_json(c + "/meta.json");
    const RgbImage pil = omni::load_image_file(c + "/decoded.png");
    const RgbImage hf = omni::load_image_file(c + "/resized.png");
    const auto cfg = config_for(meta);
    const omni::ResizeTarget t = omni::image_target(cfg, pil.height, pil.width);
    EXPECT_EQ(t.height, meta.at("resized")[0].get<int>()) << c;
    EXPECT_EQ(t.width, meta.at("resized")[1].get<int>()) << c;
    const RgbImage ours = omni::resize_bicubic_aa(pil, t.height, t.width);
    const LevelDiff d = compare(ours, hf);
    worst = std::max(worst, d.max);
    std::printf("resize %-24s %dx%d -> %dx%d: max %d levels, %zu of %zu samples differ\n", base(c).c_str(),
                pil.width, pil.height, t.width, t.height, d.max, d.differing, d.total);
    EXPECT_EQ(d.max, 0) << c;  // the same fixed-point arithmetic as torch's uint8 path
  }
  std::printf("resize: largest difference over all images %d levels\n", worst);
}

// pixel_values from the source file through the whole pipeline (decode, resize, normalise,
// patch layout) against the processor's; differences are reported in 8-bit levels
// (|diff| * std * 255). Decoding and resizing are exact, so only float rounding may differ.
void check_pixel_values(const std::string& c, const omni::VisualPatches& ours) {
  const auto meta = read_json(c + "/meta.json");
  const auto grid = meta.at("grid_thw");
  EXPECT_EQ(ours.grid_t, grid[0].get<int>()) << c;
  EXPECT_EQ(ours.grid_h, grid[1].get<int>()) << c;
  EXPECT_EQ(ours.grid_w, grid[2].get<int>()) << c;
  const std::string npy = c + "/pixel_values.npy";
  if (!std::ifstream(npy).good()) return;
  const omni::NpyArray ref = omni::read_npy(npy);
  ASSERT_EQ(ref.shape.size(), 2u);
  ASSERT_EQ(ref.shape[0], ours.rows()) << c;
  ASSERT_EQ(ref.shape[1], ours.row_size) << c;
  const omni::VisionPreprocessConfig cfg;
  double max_levels = 0.0, max_abs = 0.0;
  const int p2 = ours.row_size / 3;  // columns per channel
  for (size_t i = 0; i < ref.f32.size(); ++i) {
    const double d = std::fabs(double(ours.pixels[i]) - double(ref.f32[i]));
    const int channel = int(i % size_t(ours.row_size)) / p2;
    max_abs = std::max(max_abs, d);
    max_levels = std::max(max_levels, d * double(cfg.std[size_t(channel)]) * 255.0);
  }
  std::printf("pixel_values %-22s grid (%d,%d,%d): max %.3g abs = %.4f levels\n", base(c).c_str(), ours.grid_t,
              ours.grid_h, ours.grid_w, max_abs, max_levels);
  EXPECT_LE(max_abs, 1e-6) << c;
}

TEST(VisionPreprocess, ImagePixelValuesMatchTheProcessor) {
  int with_values = 0;
  for (const std::string& c : cases("image")) {
    const auto meta = read_json(c + "/meta.json");
    const auto cfg = config_for(meta);
    const RgbImage img = omni::load_image_file(golden::fixtures() + "/" + meta.at("source").get<std::string>());
    const omni::VisualPatches p = omni::preprocess_image(cfg, img);
    EXPECT_EQ(p.tokens(cfg.merge_size), p.grid_h * p.grid_w / 4);
    check_pixel_values(c, p);
    with_values += std::ifstream(c + "/pixel_values.npy").good();
  }
  EXPECT_GE(with_values, 2);
}

TEST(VisionPreprocess, VideoPixelValuesMatchTheProcessor) {
  const auto vids = cases("video");
  ASSERT_GE(vids.size(), 2u);
  for (const std::string& c : vids) {
    const auto meta = read_json(c + "/meta.json");
    const auto cfg = config_for(meta);
    std::vector<RgbImage> frames;
    for (const auto& f : meta.at("frames"))
      frames.push_back(omni::load_image_file(golden::fixtures() + "/" + f.get<std::string>()));
    const omni::ResizeTarget t = omni::video_target(cfg, frames[0].height, frames[0].width);
    EXPECT_EQ(t.height, meta.at("resized")[0].get<int>()) << c;
    EXPECT_EQ(t.width, meta.at("resized")[1].get<int>()) << c;
    int worst = 0;
    for (size_t i = 0; i < frames.size(); ++i) {
      char name[48];
      std::snprintf(name, sizeof name, "/resized_%02zu.png", i);
      const LevelDiff d = compare(omni::resize_bicubic_aa(frames[i], t.height, t.width),
                                  omni::load_image_file(c + name));
      worst = std::max(worst, d.max);
    }
    std::printf("video %-24s %zu frames %dx%d -> %dx%d: max %d levels\n", base(c).c_str(), frames.size(),
                frames[0].width, frames[0].height, t.width, t.height, worst);
    EXPECT_EQ(worst, 0) << c;
    check_pixel_values(c, omni::preprocess_video(cfg, frames));
  }
}

TEST(VisionPreprocess, SmartResizeMatchesTransformers) {
  const auto cases = read_json(dir() + "/smart_resize.json");
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const int h = c.at("height"), w = c.at("width");
    const std::string what = std::to_string(h) + "x" + std::to_string(w) + " in [" + c.at("min_pixels").dump() +
                             ", " + c.at("max_pixels").dump() + "]";
    if (c.at("result").is_null()) {
      EXPECT_THROW(omni::smart_resize(h, w, c.at("factor"), c.at("min_pixels"), c.at("max_pixels")), omni::ImageError)
          << what;
      continue;
    }
    const auto r = omni::smart_resize(h, w, c.at("factor"), c.at("min_pixels"), c.at("max_pixels"));
    EXPECT_EQ(r.height, c.at("result")[0].get<int>()) << what;
    EXPECT_EQ(r.width, c.at("result")[1].get<int>()) << what;
  }
}

TEST(VisionPreprocess, FrameSamplingMatchesTransformers) {
  const auto cases = read_json(dir() + "/frame_sampling.json");
  ASSERT_GE(cases.size(), 5u);
  for (const auto& c : cases) {
    const auto idx = omni::sample_frame_indices(c.at("total"), c.at("video_fps"), c.at("fps"));
    EXPECT_EQ(idx, c.at("indices").get<std::vector<int>>()) << c.dump();
  }
}

}  // namespace
