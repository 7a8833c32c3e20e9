// A spoken answer through the public API (Model::load -> Session::respond with speak=true)
// against transformers' generate(..., return_audio=True) on the tiny checkpoints: prompt ids,
// thinker tokens and the waveform. This covers the Session's wiring of SpeechPipeline (user
// turns, accept-layer rows, interleaving) on top of what test_speech_golden.cpp checks.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "golden_util.h"
#include "io/wav.h"
#include "npy.h"
#include "omni/engine.h"

namespace {

double max_rel(const std::vector<float>& got, const std::vector<float>& want, size_t n) {
  double md = 0, mw = 0;
  for (size_t i = 0; i < n; ++i) {
    md = std::max(md, std::fabs(double(got[i]) - double(want[i])));
    mw = std::max(mw, std::fabs(double(want[i])));
  }
  return md / std::max(mw, 1e-30);
}

void check_case(omni::Model& model, const std::string& name, const std::string& dir) {
  SCOPED_TRACE(dir);
  std::ifstream in(dir + "/meta.json");
  const nlohmann::json meta = nlohmann::json::parse(in);
  const omni::NpyArray prompt = omni::read_npy(dir + "/prompt_ids.npy");
  const omni::NpyArray thinker = omni::read_npy(dir + "/thinker_tokens.npy");
  const omni::NpyArray wav = omni::read_npy(dir + "/waveform.npy");
  omni::SessionOptions so;
  if (meta.at("system").is_string()) so.system_prompt = meta.at("system").get<std::string>();
  auto session = model.new_session(so);
  omni::UserTurn turn;
  turn.text = meta.at("prompt").get<std::string>();
  if (meta.at("audio_clip").is_string())
    turn.audio_16k = omni::audio::load_wav_mono(golden::fixtures() + "/audio/" + meta.at("audio_clip").get<std::string>() + ".wav");
  omni::GenerateOptions opt;
  opt.max_new_tokens = meta.at("thinker_max_new_tokens").get<int>();
  opt.speak = true;
  opt.speaker = meta.at("speaker").get<std::string>();
  opt.max_speech_frames = meta.at("talker_max_new_tokens").get<int>() - 1;  // HF counts the code-less last token
  std::vector<float> audio;
  omni::Callbacks cb;
  cb.on_audio = [&](const float* s, size_t n) { audio.insert(audio.end(), s, s + n); };
  const omni::TurnResult r = session->respond(turn, opt, cb);

  std::vector<int32_t> want_prompt(prompt.i64.begin(), prompt.i64.end() - 3);  // without the assistant header
  std::vector<int32_t> got_prompt = r.prompt_tokens;
  ASSERT_GE(got_prompt.size(), 3u);
  EXPECT_EQ(std::vector<int32_t>(r.prompt_tokens.end() - 3, r.prompt_tokens.end()),
            std::vector<int32_t>(prompt.i64.end() - 3, prompt.i64.end()));
  got_prompt.resize(got_prompt.size() - 3);
  ASSERT_EQ(got_prompt, want_prompt) << "the Session renders another prompt than the fixture";
  ASSERT_EQ(r.tokens, std::vector<int32_t>(thinker.i64.begin(), thinker.i64.end()));
  EXPECT_EQ(r.speech_samples, audio.size());
  EXPECT_GT(r.timings.first_audio_ms, 0);
  const int frames = meta.at("frames").get<int>();
  if (meta.at("thinker_eos_reached").get<bool>()) {
    // Every text token reached the talker in HF too: the whole utterance must match.
    EXPECT_EQ(r.speech_frames, frames);
    ASSERT_EQ(audio.size(), wav.f32.size());
    const double rel = max_rel(audio, wav.f32, audio.size());
    std::printf("[%s %s] Session speech: %zu samples, max rel %.3g\n", name.c_str(), dir.c_str(), audio.size(), rel);
    EXPECT_LT(rel, 1e-3);
  } else {
    // The thinker hit its limit: HF drops the last token, omnid speaks it. Frames before the
    // talker reads it (HF's trailing rows) and their samples must match.
    const size_t K = meta.at("trailing_rows").get<size_t>();
    const size_t same = K * 1920 - 555;
    ASSERT_GE(audio.size(), same);
    const double rel = max_rel(audio, wav.f32, same);
    std::printf("[%s %s] Session speech (last token spoken): first %zu samples max rel %.3g\n", name.c_str(),
                dir.c_str(), same, rel);
    EXPECT_LT(rel, 1e-3);
  }
}

}  // namespace

TEST(SpeechSessionGolden, RespondSpeaksLikeTransformers) {
  int cases = 0;
  for (const std::string& name : golden::models()) {
    omni::LoadOptions lo;
    lo.model_dir = golden::model_dir(name);
    lo.context_tokens = 512;
    auto model = omni::Model::load(lo);
    ASSERT_TRUE(model->has_talker());
    for (const std::string& dir : golden::subdirs(golden::fixtures() + "/golden/" + name + "/speech")) {
      check_case(*model, name, dir);
      ++cases;
    }
  }
  EXPECT_GE(cases, 4);
}
