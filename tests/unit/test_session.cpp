// Session behaviour the daemon relies on: later turns reuse the cache exactly (the same
// logits as recomputing the whole conversation), trimming when the context fills, say(),
// cancel() from another thread, reset().
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "audio/io/wav.h"
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

namespace {

// Everything a turn hands out, to compare two runs bit for bit.
struct Recorded {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
  std::vector<float> audio;
  omni::Callbacks cb() {
    omni::Callbacks c;
    c.on_logits = [this](const float* l, size_t n) { logits.emplace_back(l, l + n); };
    c.on_token = [this](int32_t t) { tokens.push_back(t); };
    c.on_audio = [this](const float* s, size_t n) { audio.insert(audio.end(), s, s + n); };
    return c;
  }
};

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void expect_same_turn(const Recorded& a, const Recorded& b) {
  EXPECT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t s = 0; s < a.logits.size(); ++s) EXPECT_TRUE(bit_equal(a.logits[s], b.logits[s])) << "step " << s;
  EXPECT_FALSE(a.audio.empty());
  EXPECT_TRUE(bit_equal(a.audio, b.audio)) << a.audio.size() << " vs " << b.audio.size() << " samples";
}

omni::UserTurn voice_turn() {
  omni::UserTurn t;
  t.audio_16k = omni::audio::load_wav_mono(std::string(OMNI_FIXTURES) + "/audio/short_0p73s.wav");
  return t;
}

}  // namespace

// The speculative-turn contract: a turn that ran (spoken, with speech) and was rolled back leaves no
// trace; the next turn is bit-identical to the same turn in a session that never ran the first.
TEST(Session, RolledBackTurnLeavesNoTrace) {
  auto model = load(512);
  omni::GenerateOptions opt;
  opt.max_new_tokens = 4;
  opt.speak = true;
  opt.max_speech_frames = 4;
  omni::GenerateOptions text_only = opt;
  text_only.speak = false;

  auto plain = model->new_session({.system_prompt = "Be brief."});
  plain->respond(text_turn("First question"), text_only, {});
  Recorded want;
  omni::TurnResult w = plain->respond(voice_turn(), opt, want.cb());

  auto spec = model->new_session({.system_prompt = "Be brief."});
  spec->respond(text_turn("First question"), text_only, {});
  const int before = spec->context_used();
  const omni::SessionMark m = spec->mark();
  // A speculative answer to a different utterance (half the clip), run to its end, taken back.
  omni::UserTurn half = voice_turn();
  half.audio_16k.resize(half.audio_16k.size() / 2);
  spec->respond(half, opt, {});
  EXPECT_GT(spec->context_used(), before);
  spec->rollback(m);
  EXPECT_EQ(spec->context_used(), before);
  Recorded got;
  omni::TurnResult g = spec->respond(voice_turn(), opt, got.cb());
  expect_same_turn(got, want);
  EXPECT_EQ(g.text, w.text);
  EXPECT_EQ(spec->context_used(), plain->context_used());

  // And the turn after that still matches: the rolled-back session's history is the plain one's.
  Recorded want3, got3;
  plain->respond(text_turn("And then?"), text_only, want3.cb());
  spec->respond(text_turn("And then?"), text_only, got3.cb());
  EXPECT_EQ(got3.tokens, want3.tokens);
  ASSERT_EQ(got3.logits.size(), want3.logits.size());
  for (size_t s = 0; s < got3.logits.size(); ++s) EXPECT_TRUE(bit_equal(got3.logits[s], want3.logits[s]));
}

// A speculative turn is usually cut off mid-answer (cancel()), then rolled back; the same mark can be
// returned to more than once.
TEST(Session, CancelledTurnRollsBackAndAMarkCanBeReused) {
  auto model = load(512);
  omni::GenerateOptions opt;
  opt.max_new_tokens = 4;
  opt.speak = true;
  opt.max_speech_frames = 4;
  auto plain = model->new_session();
  Recorded want;
  plain->respond(voice_turn(), opt, want.cb());

  auto spec = model->new_session();
  const omni::SessionMark m = spec->mark();
  for (int attempt = 0; attempt < 2; ++attempt) {
    omni::GenerateOptions longer = opt;
    longer.max_new_tokens = 50;
    int tokens = 0;
    omni::Callbacks cb;
    cb.on_token = [&](int32_t) {
      if (++tokens == 2 + attempt) spec->cancel();
    };
    EXPECT_EQ(spec->respond(text_turn("Speculate " + std::to_string(attempt)), longer, cb).stop,
              omni::StopReason::Cancelled);
    spec->rollback(m);
    EXPECT_EQ(spec->context_used(), 0);
  }
  Recorded got;
  spec->respond(voice_turn(), opt, got.cb());
  expect_same_turn(got, want);
}

// Rolling back across a turn that dropped the oldest turns is refused (the cache was rebuilt; the
// dropped turns would have to be recomputed), leaving the session as it is. A turn run with
// drop_oldest_turns = false refuses to drop instead, before changing anything, so the mark stays usable.
TEST(Session, RollbackAcrossDroppedTurnsIsRefused) {
  auto model = load(64);
  auto session = model->new_session({.system_prompt = "S"});
  omni::GenerateOptions opt;
  opt.max_new_tokens = 8;
  session->respond(text_turn("Turn number 0"), opt, {});
  // Fill until the next turn would not fit without dropping.
  omni::GenerateOptions keep = opt;
  keep.drop_oldest_turns = false;
  int guard = 0;
  omni::SessionMark m = session->mark();
  for (;; ++guard) {
    ASSERT_LT(guard, 10);
    m = session->mark();
    const int used = session->context_used();
    try {
      session->respond(text_turn("Turn number 1"), keep, {});
    } catch (const omni::Error& e) {
      EXPECT_NE(std::string(e.what()).find("drop_oldest_turns"), std::string::npos) << e.what();
      EXPECT_EQ(session->context_used(), used);  // refused before changing anything
      break;
    }
  }
  ASSERT_GE(guard, 1);
  // The turn that does drop: its mark is stale afterwards.
  const int used = session->context_used();
  session->respond(text_turn("Turn number 1"), opt, {});
  const int after = session->context_used();
  EXPECT_LT(after, used + 8);  // oldest turns went
  try {
    session->rollback(m);
    ADD_FAILURE() << "rollback across dropped turns was accepted";
  } catch (const omni::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rebuilt"), std::string::npos) << e.what();
  }
  EXPECT_EQ(session->context_used(), after);
  // A fresh mark after the drop works as usual.
  const omni::SessionMark m2 = session->mark();
  session->respond(text_turn("x"), keep, {});
  session->rollback(m2);
  EXPECT_EQ(session->context_used(), after);

  // Empty, foreign and pre-reset marks are refused too.
  EXPECT_THROW(session->rollback(omni::SessionMark{}), omni::Error);
  auto other = model->new_session();
  EXPECT_THROW(other->rollback(m2), omni::Error);
  session->reset();
  EXPECT_THROW(session->rollback(m2), omni::Error);
  EXPECT_EQ(session->context_used(), 0);
}
