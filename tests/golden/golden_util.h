// Helpers shared by the golden tests: fixture paths and the relative error ‖a−b‖/‖b‖.
#pragma once
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "omni/engine.h"
#include "omni/npy.h"

namespace golden {

inline std::string fixtures() { return OMNI_FIXTURES; }
inline std::string model_dir(const std::string& name) { return std::string(OMNI_BUILD_DIR) + "/models/" + name; }

// Sub-directories of `dir` (sorted), e.g. the cases of one golden stage.
inline std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::is_directory(dir)) return out;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The options of a spoken turn recorded by fixturelib.speech.speech_case (its meta.json), with `audio` collecting
// the speech: thinker and talker limits (HF counts the talker's EOS step), the speaker.
inline omni::GenerateOptions spoken_turn_options(const nlohmann::json& meta, omni::Callbacks& cb,
                                                 std::vector<float>& audio) {
  omni::GenerateOptions opt;
  opt.max_new_tokens = meta.at("thinker_max_new_tokens").get<int>();
  opt.speak = true;
  opt.speaker = meta.at("speaker").get<std::string>();
  opt.max_speech_frames = meta.at("talker_max_new_tokens").get<int>() - 1;
  cb.on_audio = [&audio](const float* s, size_t n) { audio.insert(audio.end(), s, s + n); };
  return opt;
}

// A spoken answer against transformers' generate(return_audio=True) (fixturelib.speech.speech_case's meta.json and
// waveform.npy): the frame count and length when the thinker ended with <|im_end|>, and the waveform over the
// frames where omnid and transformers get the same inputs. When the thinker stops on its token limit transformers
// never speaks the last text token (docs/model.md §9.12) and omnid does: talker step k reads trailing text
// k = g_{k+2}, which first differs at k = N-2, so frames from N-1 on differ by design. Each call's last 555
// samples look one frame ahead. Returns the relative error; prints `what`.
inline double expect_speech_like(const nlohmann::json& meta, const omni::TurnResult& r, const std::vector<float>& audio,
                                 const omni::NpyArray& wave, const std::string& what) {
  const int spf = 1920;
  const int hf_frames = meta.at("frames").get<int>();
  int same_frames = hf_frames;
  if (meta.at("thinker_hit_token_limit").get<bool>()) {
    same_frames = std::min(hf_frames, int(r.tokens.size()) - 1);
  } else {
    EXPECT_EQ(r.speech_frames, hf_frames);
    EXPECT_EQ(audio.size(), wave.f32.size());
  }
  const size_t n = size_t(std::max(0, same_frames * spf - 555));
  EXPECT_GT(n, 0u);
  EXPECT_GE(audio.size(), n);
  EXPECT_GE(wave.f32.size(), n);
  if (n == 0 || audio.size() < n || wave.f32.size() < n) return 1.0;
  const double e = rel_err(audio.data(), wave.f32.data(), n);
  EXPECT_LT(e, 1e-3) << "waveform over the first " << same_frames << " frames";
  std::printf("[ speech ] %s: %d/%d frames compared, waveform rel err %.3g, first audio %.1f ms\n", what.c_str(),
              same_frames, hf_frames, e, r.timings.first_audio_ms);
  return e;
}

inline const std::vector<std::string>& models() {
  static const std::vector<std::string> m = {"tiny-a", "tiny-b"};
  return m;
}

// Loads each tiny model and calls `check` for every case directory of one golden stage
// (e.g. "text", "speech"); returns how many cases ran.
inline int for_each_case(const std::string& stage, const std::function<void(omni::Model&, const std::string&)>& check,
                         const std::string& device = "cpu") {
  int cases = 0;
  for (const std::string& name : models()) {
    omni::LoadOptions lo;
    lo.model_dir = model_dir(name);
    lo.device = device;
    lo.context_tokens = 512;
    auto model = omni::Model::load(lo);
    for (const std::string& dir : subdirs(fixtures() + "/golden/" + name + "/" + stage)) {
      check(*model, dir);
      ++cases;
    }
  }
  return cases;
}

}  // namespace golden
