// Speech through the public API, as omni-run and the daemon use it: Session::respond with
// speak=true (thinker and talker interleaved, code2wav streamed) against transformers'
// generate(). The waveform is compared over the frames where omnid and transformers get the
// same inputs: all of them when the thinker ends with <|im_end|>; when it stops on its token
// limit, transformers never speaks the last text token (docs/model.md §9.12) and omnid does, so the
// frames from the step that would read that token on differ by design.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "audio/io/wav.h"
#include "golden_util.h"
#include "omni/engine.h"
#include "omni/npy.h"

namespace {

void check_speech_case(omni::Model& model, const std::string& dir) {
  ASSERT_TRUE(model.has_talker());
  SCOPED_TRACE(dir);
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(dir + "/meta.json"));
  const omni::NpyArray prompt = omni::read_npy(dir + "/prompt_ids.npy");
  const omni::NpyArray thinker = omni::read_npy(dir + "/thinker_tokens.npy");
  const omni::NpyArray wave = omni::read_npy(dir + "/waveform.npy");

  omni::SessionOptions so;
  if (meta["system"].is_string()) so.system_prompt = meta["system"].get<std::string>();
  auto session = model.new_session(so);
  omni::UserTurn turn;
  turn.text = meta["prompt"].get<std::string>();
  if (meta.contains("audio_clip") && meta["audio_clip"].is_string())
    turn.audio_16k = omni::audio::load_wav_mono(golden::fixtures() + "/audio/" +
                                                meta["audio_clip"].get<std::string>() + ".wav");
  omni::GenerateOptions opt;
  opt.speak = true;
  opt.speaker = meta["speaker"].get<std::string>();
  opt.max_new_tokens = meta["thinker_max_new_tokens"].get<int>();
  opt.max_speech_frames = meta["talker_max_new_tokens"].get<int>() - 1;  // HF counts the EOS step
  std::vector<float> audio;
  omni::Callbacks cb;
  cb.on_audio = [&](const float* s, size_t n) { audio.insert(audio.end(), s, s + n); };
  omni::TurnResult r = session->respond(turn, opt, cb);

  std::vector<int32_t> want_prompt(prompt.i64.begin(), prompt.i64.end());
  EXPECT_EQ(r.prompt_tokens, want_prompt);
  std::vector<int32_t> want_tokens(thinker.i64.begin(), thinker.i64.end());
  ASSERT_EQ(r.tokens, want_tokens);
  ASSERT_EQ(audio.size(), r.speech_samples);
  EXPECT_GE(r.timings.first_audio_ms, 0.0);

  golden::expect_speech_like(meta, r, audio, wave, dir);
}

}  // namespace

TEST(SessionSpeechGolden, RespondSpeaksLikeTransformers) {
  const int cases = golden::for_each_case("speech", check_speech_case);
  EXPECT_GE(cases, 4);
}
