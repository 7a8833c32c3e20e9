// Session behaviour the daemon relies on: later turns reuse the cache exactly (the same
// logits as recomputing the whole conversation), trimming when the context fills, say(),
// cancel() from another thread, reset().
#include <gtest/gtest.h>

#include <thread>

#include "omni/engine.h"

namespace {

const std::string kTinyA = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";

std::unique_ptr<omni::Model> load(int context) {
  omni::LoadOptions lo;
  lo.model_dir = kTinyA;
  lo.context_tokens = context;
  return omni::Model::load(lo);
}

omni::UserTurn text_turn(const std::string& text) {
  omni::UserTurn t;
  t.text = text;
  return t;
}

struct Collected {
  std::vector<std::vector<float>> logits;
  omni::Callbacks cb() {
    omni::Callbacks c;
    c.on_logits = [this](const float* l, size_t n) { logits.emplace_back(l, l + n); };
    return c;
  }
};

}  // namespace

TEST(Session, SecondTurnReusesTheCacheExactly) {
  auto model = load(256);
  auto session = model->new_session({.system_prompt = "Be brief."});
  omni::GenerateOptions opt;
  opt.max_new_tokens = 5;
  omni::TurnResult t1 = session->respond(text_turn("First question"), opt, {});
  Collected a;
  omni::TurnResult t2 = session->respond(text_turn("Second one"), opt, a.cb());

  // The same conversation as one raw prompt: system, turn 1 with its answer closed the ChatML
  // way, turn 2.
  std::vector<int32_t> all = t1.prompt_tokens;
  all.insert(all.end(), t1.tokens.begin(), t1.tokens.end());
  if (t1.tokens.back() != 151645) all.push_back(151645);
  all.push_back(198);
  all.insert(all.end(), t2.prompt_tokens.begin(), t2.prompt_tokens.end());
  Collected b;
  auto fresh = model->new_session();
  omni::TurnResult t2b = fresh->generate_from_ids(all, opt, b.cb());
  EXPECT_EQ(t2.tokens, t2b.tokens);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t s = 0; s < a.logits.size(); ++s)
    for (size_t i = 0; i < a.logits[s].size(); i += 997) ASSERT_FLOAT_EQ(a.logits[s][i], b.logits[s][i]);
  EXPECT_EQ(session->context_used(), int(all.size()) + int(t2.tokens.size()) - 1);
}

TEST(Session, OldTurnsAreDroppedWhenTheContextFills) {
  auto model = load(64);
  auto session = model->new_session({.system_prompt = "S"});
  omni::GenerateOptions opt;
  opt.max_new_tokens = 8;
  for (int i = 0; i < 6; ++i) {
    omni::TurnResult r = session->respond(text_turn("Turn number " + std::to_string(i)), opt, {});
    EXPECT_EQ(r.tokens.size() <= 8, true);
    EXPECT_LE(session->context_used(), 64);
  }
  // A turn that can never fit is an error, not a crash.
  omni::GenerateOptions big;
  big.max_new_tokens = 100;
  EXPECT_THROW(session->respond(text_turn("x"), big, {}), omni::Error);
  session->reset();
  EXPECT_EQ(session->context_used(), 0);
}

TEST(Session, SayAndCancel) {
  auto model = load(256);
  ASSERT_TRUE(model->has_talker());
  auto session = model->new_session();
  size_t samples = 0;
  omni::Callbacks cb;
  cb.on_audio = [&](const float*, size_t n) { samples += n; };
  omni::GenerateOptions opt;
  opt.max_speech_frames = 6;
  omni::TurnResult r = session->say("Hello there, robot.", opt, cb);
  EXPECT_GT(samples, 0u);
  EXPECT_EQ(samples, r.speech_samples);
  EXPECT_EQ(session->context_used(), 0);  // say() does not touch the conversation

  // Cancel mid-answer from another thread: the turn returns promptly as Cancelled.
  omni::GenerateOptions longer;
  longer.max_new_tokens = 200;
  std::atomic<int> tokens{0};
  omni::Callbacks slow;
  slow.on_token = [&](int32_t) { ++tokens; };
  std::thread canceller([&] {
    while (tokens.load() < 3) std::this_thread::yield();
    session->cancel();
  });
  omni::TurnResult c = session->respond(text_turn("Talk for a long time"), longer, slow);
  canceller.join();
  EXPECT_EQ(c.stop, omni::StopReason::Cancelled);
  EXPECT_LT(c.tokens.size(), 200u);
  // The session stays usable.
  omni::GenerateOptions small;
  small.max_new_tokens = 2;
  EXPECT_EQ(session->respond(text_turn("again"), small, {}).tokens.size(), 2u);
}
