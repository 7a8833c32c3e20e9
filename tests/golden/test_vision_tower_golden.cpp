// The vision tower (model/vision_encoder.h) against transformers on tiny-v (4 blocks, DeepStack
// taps after blocks 1, 2, 3, an 8x8 position table resampled to larger grids): the merger and
// DeepStack outputs for the processor's pixel_values of images and a clip
// (tests/fixtures/golden/tiny-v/vision_tower, tools/make_vision_fixtures.py).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend.h"
#include "golden_util.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "io/npy.h"
#include "model/vision_encoder.h"

namespace {

struct Tower {
  std::unique_ptr<omni::Backend> be = omni::make_cpu_backend();
  omni::ModelConfig cfg = omni::ModelConfig::load(golden::model_dir("tiny-v") + "/config.json");
  omni::Checkpoint ck{golden::model_dir("tiny-v")};
  std::unique_ptr<omni::VisionEncoder> enc;
  explicit Tower(int64_t max_patches) {
    enc = std::make_unique<omni::VisionEncoder>(*be, cfg.vision,
                                                omni::load_vision_encoder_weights(ck, *be, cfg.vision), max_patches);
  }
};

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Runs every case (or only `only`) through `tower`; returns the largest relative error seen.
double run_cases(Tower& tower, const char* label, const std::string& only = "") {
  const auto cases = golden::subdirs(golden::fixtures() + "/golden/tiny-v/vision_tower");
  EXPECT_GE(cases.size(), 3u);
  double worst = 0.0;
  int ran = 0;
  for (const std::string& c : cases) {
    if (!only.empty() && c.substr(c.rfind('/') + 1) != only) continue;
    ++ran;
    const auto meta = read_json(c + "/meta.json");
    const auto grid = meta.at("grid_thw").get<std::vector<int>>();
    const omni::NpyArray pixels = omni::read_npy(golden::fixtures() + "/golden/vision_preprocess/" +
                                                 meta.at("preprocess_case").get<std::string>() + "/pixel_values.npy");
    const omni::NpyArray pooler = omni::read_npy(c + "/pooler.npy");
    const int64_t tokens = pooler.shape[0], width = pooler.shape[1];
    std::vector<std::vector<float>> ds_host(tower.cfg.vision.deepstack_visual_indexes.size(),
                                            std::vector<float>(size_t(tokens * width)));
    std::vector<float> out_host(size_t(tokens * width));
    std::vector<omni::Tensor> ds;
    for (auto& h : ds_host) ds.emplace_back(h.data(), omni::DType::F32, std::initializer_list<int64_t>{tokens, width});
    const omni::Tensor out(out_host.data(), omni::DType::F32, {tokens, width});
    tower.enc->encode(pixels.f32.data(), grid[0], grid[1], grid[2], out, ds);
    const double e = golden::rel_err(out_host.data(), pooler.f32.data(), out_host.size());
    worst = std::max(worst, e);
    std::printf("%s %-14s grid (%d,%d,%d) merger rel %.2e", label, c.substr(c.rfind('/') + 1).c_str(), grid[0],
                grid[1], grid[2], e);
    for (size_t k = 0; k < ds_host.size(); ++k) {
      const omni::NpyArray ref = omni::read_npy(c + "/deepstack_" + std::to_string(k) + ".npy");
      const double ek = golden::rel_err(ds_host[k].data(), ref.f32.data(), ds_host[k].size());
      worst = std::max(worst, ek);
      std::printf("  deepstack %zu %.2e", k, ek);
    }
    std::printf("\n");
  }
  EXPECT_GT(ran, 0);
  return worst;
}

TEST(VisionTower, MergerAndDeepStackOutputsMatchTransformers) {
  Tower tower(512);
  ASSERT_EQ(tower.cfg.vision.deepstack_visual_indexes.size(), 3u);
  ASSERT_EQ(tower.cfg.vision.position_side(), 8);  // smaller than the images' 10x14 and 12x16 grids
  EXPECT_LE(run_cases(tower, "one pass"), 1e-5);
}

TEST(VisionTower, ClipRunSliceBySliceMatchesToo) {
  // Room for one 24-patch frame at a time: the clip's three temporal pairs run in three passes.
  Tower tower(24);
  EXPECT_LE(run_cases(tower, "by slice", "pan_video"), 1e-5);
}

TEST(VisionTower, RefusesGridsThatDoNotFit) {
  Tower tower(16);
  std::vector<float> px(size_t(64) * 1536), out(size_t(16) * 8);
  const omni::Tensor o(out.data(), omni::DType::F32, {16, 8});
  EXPECT_THROW(tower.enc->encode(px.data(), 1, 8, 8, o, {}), omni::Error);  // 64 patches > 16
  EXPECT_THROW(tower.enc->encode(px.data(), 1, 3, 4, o, {}), omni::Error);  // not a multiple of the merge
}

}  // namespace
