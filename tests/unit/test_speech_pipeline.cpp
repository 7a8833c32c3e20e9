// SpeechPipeline behaviour on the tiny-b checkpoint (its greedy talker does not stop early): the talker steps as soon as its text
// exists, audio arrives before the text is finished, cancel / max_frames / empty text, seeded
// sampling, and clear errors for bad input. (Numerics vs transformers: tests/golden.)
#include <gtest/gtest.h>

#include <atomic>

#include "io/checkpoint.h"
#include "io/model_config.h"
#include "omni/errors.h"
#include "speech.h"

using namespace omni;

namespace {

struct Tiny {
  std::unique_ptr<Backend> be = make_cpu_backend();
  ModelConfig cfg = ModelConfig::load(std::string(OMNI_FIXTURES) + "/models/tiny-b/config.json");
  Checkpoint ck{std::string(OMNI_FIXTURES) + "/models/tiny-b"};
  SpeechModel speech{ck, *be, cfg, 64, 40, 1};
  Tensor embed;
  Tiny() { embed = be->weight(ck.get("thinker.model.embed_tokens.weight", {cfg.thinker.vocab_size, cfg.thinker.hidden_size})); }
  std::vector<int32_t> header() const { return {cfg.ids.im_start, cfg.ids.assistant, 198}; }
  std::vector<int32_t> user() const { return {cfg.ids.im_start, cfg.ids.user, 198, 9707, 11, 1879, cfg.ids.im_end, 198}; }
};

Tiny& tiny() {
  static Tiny t;
  return t;
}

const std::vector<int32_t> kText = {9707, 11, 1879, 13, 3555, 374, 279, 9104, 3351, 30, 1084, 5780};

SpeechOptions greedy(int max_frames = 40) {
  SpeechOptions o;
  o.sampling.greedy = true;
  o.max_frames = max_frames;
  return o;
}

TEST(SpeechPipeline, TalkerStepsAsSoonAsItsTextExistsAndAudioStreams) {
  Tiny& m = tiny();
  size_t samples = 0;
  SpeechPipeline sp(m.speech, m.embed, [&](const float*, size_t n) { samples += n; });
  sp.keep_inputs_for_tests(true);
  sp.start(m.user(), Tensor(), m.header(), greedy(20));
  const size_t H = size_t(m.cfg.talker.text.hidden_size);
  for (size_t k = 1; k <= kText.size(); ++k) {
    sp.on_thinker_token(kText[k - 1]);
    ASSERT_FALSE(sp.done()) << "the talker stopped after " << k << " tokens; this test needs a longer utterance";
    // Talker step n needs text token n+2 (1-based): after k tokens exactly k-1 steps ran, and
    // frame k-1 (whose codes need no new text) is already made.
    EXPECT_EQ(sp.text_rows().size() / H, k - 1) << "after " << k << " tokens";
    EXPECT_EQ(sp.frames().size(), k) << "after " << k << " tokens";
  }
  const size_t before_finish = samples;
  EXPECT_GT(before_finish, 0u) << "no audio before the text was finished";
  EXPECT_NE(sp.first_audio_time(), std::chrono::steady_clock::time_point{});
  sp.finish_text();
  EXPECT_TRUE(sp.done());
  EXPECT_EQ(samples, sp.samples());
  EXPECT_GE(samples, before_finish);
  // Same codes when the whole text is known up front (say()).
  SpeechPipeline whole(m.speech, m.embed, nullptr);
  whole.start(m.user(), Tensor(), m.header(), greedy(20));
  for (int32_t t : kText) whole.on_thinker_token(t);
  whole.finish_text();
  EXPECT_EQ(sp.frames().size(), 20u);
  EXPECT_EQ(whole.frames(), sp.frames());
}

TEST(SpeechPipeline, MaxFramesCancelAndEmptyText) {
  Tiny& m = tiny();
  SpeechPipeline sp(m.speech, m.embed, nullptr);
  sp.say(kText, m.header(), greedy(3));
  EXPECT_TRUE(sp.done());
  EXPECT_EQ(sp.frames().size(), 3u);
  EXPECT_FALSE(sp.reached_eos());
  EXPECT_EQ(sp.talker_tokens().size(), 4u);  // the token after the limit gets no codes (HF)

  SpeechPipeline* self = nullptr;
  SpeechPipeline cancelled(m.speech, m.embed, [&](const float*, size_t) { self->cancel(); });
  self = &cancelled;
  cancelled.start(m.user(), Tensor(), m.header(), greedy());
  for (int32_t t : kText) cancelled.on_thinker_token(t);
  cancelled.finish_text();
  EXPECT_TRUE(cancelled.done());
  EXPECT_TRUE(cancelled.cancelled());
  EXPECT_LE(cancelled.frames().size(), 2u);

  SpeechPipeline empty(m.speech, m.embed, nullptr);
  empty.start(m.user(), Tensor(), m.header(), greedy());
  empty.on_thinker_token(m.cfg.ids.im_end);
  EXPECT_TRUE(empty.done());
  EXPECT_TRUE(empty.frames().empty());
  EXPECT_EQ(empty.samples(), 0u);
}

TEST(SpeechPipeline, SeededSamplingIsReproducibleAndNeverPicksCodecSpecials) {
  Tiny& m = tiny();
  SpeechOptions o;  // HF defaults: sampling, temperature 0.9, top-k 50, penalty 1.05
  o.sampling.seed = 7;
  o.max_frames = 12;
  SpeechPipeline a(m.speech, m.embed, nullptr), b(m.speech, m.embed, nullptr), c(m.speech, m.embed, nullptr);
  a.say(kText, m.header(), o);
  b.say(kText, m.header(), o);
  o.sampling.seed = 8;
  c.say(kText, m.header(), o);
  EXPECT_EQ(a.frames(), b.frames());
  EXPECT_NE(a.frames(), c.frames());
  const int V = m.cfg.talker.text.vocab_size;
  for (const auto* p : {&a, &c})
    for (int32_t t : p->talker_tokens()) EXPECT_TRUE(t < V - 1024 || t == m.cfg.talker.codec_eos_id) << t;
}

TEST(SpeechPipeline, BadInputIsReported) {
  Tiny& m = tiny();
  SpeechPipeline sp(m.speech, m.embed, nullptr);
  try {
    sp.start(m.user(), Tensor(), m.header(), [] { SpeechOptions o = greedy(); o.speaker = "nobody"; return o; }());
    FAIL() << "unknown speaker accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ethan"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sp.start(m.user(), Tensor(), {m.cfg.ids.im_start}, greedy()), Error);
  std::vector<int32_t> with_audio = m.user();
  with_audio.insert(with_audio.begin() + 3, m.cfg.ids.audio_pad);
  EXPECT_THROW(sp.start(with_audio, Tensor(), m.header(), greedy()), Error);  // no hidden rows for the audio
  EXPECT_THROW(sp.start(std::vector<int32_t>(100, 9707), Tensor(), m.header(), greedy()), Error);  // too long
  EXPECT_THROW(sp.start(m.user(), Tensor(), m.header(), greedy(1000)), Error);  // beyond max_frames
  EXPECT_THROW(SpeechPipeline(m.speech, m.embed, nullptr).on_thinker_token(1), Error);  // before start()
  ModelConfig no_talker = m.cfg;
  no_talker.has_talker = false;
  EXPECT_THROW(SpeechModel(m.ck, *m.be, no_talker, 16, 4), ConfigError);
}

TEST(SpeechPipeline, UserPartFollowsHfTurnRule) {
  const TokenIds ids;
  // system turn, user turn, assistant turn, user turn, assistant header
  const std::vector<int32_t> p = {ids.im_start, ids.system, 198, 5, ids.im_end, 198,
                                  ids.im_start, ids.user, 198, 6, ids.im_end, 198,
                                  ids.im_start, ids.assistant, 198, 7, ids.im_end, 198,
                                  ids.im_start, ids.user, 198, 8, ids.im_end, 198,
                                  ids.im_start, ids.assistant, 198};
  const std::vector<int> want = {6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23};
  EXPECT_EQ(talker_user_positions(p, ids), want);
}

}  // namespace
