// The thinker's 3-row MRoPE positions (model/mrope_positions.h) against transformers'
// get_rope_index on prompts with images, videos (whole and fractional time steps), audio, and
// videos with their audio interleaved (tests/fixtures/golden/tiny-v/mrope_positions.json).
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "golden_util.h"
#include "io/model_config.h"
#include "model/mrope_positions.h"

namespace {

nlohmann::json cases() {
  std::ifstream in(golden::fixtures() + "/golden/tiny-v/mrope_positions.json");
  return nlohmann::json::parse(in);
}

omni::MropeInput input_of(const nlohmann::json& c) {
  omni::MropeInput in;
  for (const auto& g : c.at("images")) in.images.push_back({g[0].get<int>(), g[1].get<int>(), g[2].get<int>(), 1.0});
  for (const auto& v : c.at("videos")) {
    const auto& g = v.at("grid");
    in.videos.push_back({g[0].get<int>(), g[1].get<int>(), g[2].get<int>(), v.at("seconds_per_pair").get<double>()});
  }
  in.audio_tokens = c.at("audio_tokens").get<std::vector<int>>();
  in.use_audio_in_video = c.at("use_audio_in_video").get<bool>();
  return in;
}

TEST(MropePositions, EqualTransformersGetRopeIndex) {
  const auto all = cases();
  ASSERT_GE(all.size(), 8u);
  const omni::TokenIds tok;
  for (const auto& c : all) {
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    const omni::MropePositions p = omni::mrope_positions(ids, tok, input_of(c));
    const std::string name = c.at("name");
    ASSERT_EQ(p.t.size(), ids.size()) << name;
    EXPECT_EQ(p.t, c.at("t").get<std::vector<float>>()) << name;
    EXPECT_EQ(p.h, c.at("h").get<std::vector<float>>()) << name;
    EXPECT_EQ(p.w, c.at("w").get<std::vector<float>>()) << name;
    EXPECT_EQ(p.next - float(ids.size()), c.at("delta").get<float>()) << name;
  }
}

TEST(MropePositions, MismatchedSpansAreErrorsNamingTheProblem) {
  const auto all = cases();
  const omni::TokenIds tok;
  for (const auto& c : all) {
    if (c.at("name") != "one_image") continue;
    auto ids = c.at("ids").get<std::vector<int32_t>>();
    omni::MropeInput in = input_of(c);
    in.images[0].w = 8;  // the grid says 8 tokens, the prompt holds 6
    EXPECT_THROW(omni::mrope_positions(ids, tok, in), omni::Error);
    in = input_of(c);
    in.images.push_back(in.images[0]);  // a grid without a span
    EXPECT_THROW(omni::mrope_positions(ids, tok, in), omni::Error);
    in = input_of(c);
    in.images.clear();  // a span without a grid
    EXPECT_THROW(omni::mrope_positions(ids, tok, in), omni::Error);
  }
}

}  // namespace
