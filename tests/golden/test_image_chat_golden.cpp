// Images in the thinker's prompt against transformers, end to end through the public API (tiny-v: a vision
// tower of 4 blocks with DeepStack taps into thinker layers 0, 1, 2; golden/tiny-v/image_chat from
// tools/make_vision_fixtures.py). The engine reads the image file itself (decoding, resizing and normalising
// as the processor does), expands the placeholder, replaces the pad rows with the tower's rows, adds the
// DeepStack rows after layers 0-2 and rotates with the 3-row positions (docs/model.md §3.4, §3.5); the
// fixture is transformers' thinker.generate over the same conversation (one case puts a clip before the image:
// audio and image spans in one turn). Logits within 1e-4 relative per
// step and identical greedy tokens; an earlier turn's answer equal to transformers' too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "audio/io/wav.h"
#include "golden_util.h"
#include "omni/engine.h"
#include "omni/npy.h"

namespace {

constexpr int32_t kImEnd = 151645;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<int32_t> ids_of(const omni::NpyArray& a) { return std::vector<int32_t>(a.i64.begin(), a.i64.end()); }

std::unique_ptr<omni::Model> load_tiny_v() {
  omni::LoadOptions lo;
  lo.model_dir = golden::model_dir("tiny-v");
  lo.context_tokens = 512;
  return omni::Model::load(lo);
}

// The prompt ids turn k adds. The fixture's turn_K_ids start with the closing tokens of the previous answer
// (<|im_end|> when the answer did not end with it, and "\n"); the engine feeds those with the previous turn.
std::vector<int32_t> turn_ids(const std::string& dir, size_t k, const std::vector<int32_t>& previous_answer) {
  std::vector<int32_t> ids = ids_of(omni::read_npy(dir + "/turn_" + std::to_string(k) + "_ids.npy"));
  if (k > 0) {
    const size_t closing = (!previous_answer.empty() && previous_answer.back() == kImEnd) ? 1 : 2;
    ids.erase(ids.begin(), ids.begin() + long(closing));
  }
  return ids;
}

omni::UserTurn user_turn(const nlohmann::json& t) {
  omni::UserTurn turn;
  turn.text = t.at("text").get<std::string>();
  for (const auto& f : t.at("images")) turn.images.push_back({golden::fixtures() + "/" + f.get<std::string>(), {}, {}});
  if (t.contains("audio") && !t.at("audio").is_null())
    turn.audio_16k = omni::audio::load_wav_mono(golden::fixtures() + "/" + t.at("audio").get<std::string>());
  return turn;
}

void check_case(omni::Model& model, const std::string& dir) {
  SCOPED_TRACE(dir);
  const auto meta = read_json(dir + "/meta.json");
  const auto& turns = meta.at("turns");
  const int steps = meta.at("steps").get<int>();
  const omni::NpyArray greedy = omni::read_npy(dir + "/greedy.npy");
  const omni::NpyArray cols = omni::read_npy(dir + "/logit_cols.npy");
  const omni::NpyArray sub = omni::read_npy(dir + "/logits_sub.npy");
  const omni::NpyArray full0 = omni::read_npy(dir + "/logits_full0.npy");
  auto session = model.new_session();
  omni::GenerateOptions opt;
  opt.max_new_tokens = steps;
  std::vector<std::vector<float>> rows;
  std::vector<int32_t> previous_answer;
  omni::TurnResult r;
  for (size_t k = 0; k < turns.size(); ++k) {
    const std::vector<int32_t> expected = turn_ids(dir, k, previous_answer);
    const bool last = k + 1 == turns.size();
    omni::Callbacks cb;
    if (last) cb.on_logits = [&](const float* l, size_t n) { rows.emplace_back(l, l + n); };
    r = session->respond(user_turn(turns[k]), opt, cb);
    EXPECT_EQ(r.prompt_tokens, expected) << "turn " << k << " prompt ids";
    if (!last) {
      const auto want = meta.at("earlier_answers").at(k).get<std::vector<int32_t>>();
      EXPECT_EQ(r.tokens, want) << "answer of turn " << k;
      previous_answer = r.tokens;
    }
  }
  ASSERT_EQ(int(r.tokens.size()), steps) << "the engine stopped early";
  ASSERT_EQ(int(rows.size()), steps);
  for (int s = 0; s < steps; ++s) EXPECT_EQ(r.tokens[size_t(s)], int32_t(greedy.i64[size_t(s)])) << "step " << s;
  ASSERT_EQ(rows[0].size(), size_t(full0.numel()));
  const double e0 = golden::rel_err(rows[0].data(), full0.f32.data(), rows[0].size());
  double max_abs = 0, worst = e0;
  for (size_t i = 0; i < rows[0].size(); ++i) max_abs = std::max(max_abs, double(std::fabs(rows[0][i] - full0.f32[i])));
  EXPECT_LT(e0, 1e-4) << "logits row 0";
  const size_t K = size_t(cols.numel());
  for (int s = 0; s < steps; ++s) {
    std::vector<float> mine(K);
    for (size_t c = 0; c < K; ++c) mine[c] = rows[size_t(s)][size_t(cols.i64[c])];
    const float* ref = sub.f32.data() + size_t(s) * K;
    const double e = golden::rel_err(mine.data(), ref, K);
    for (size_t c = 0; c < K; ++c) max_abs = std::max(max_abs, double(std::fabs(mine[c] - ref[c])));
    worst = std::max(worst, e);
    EXPECT_LT(e, 1e-4) << "logits step " << s;
  }
  std::printf("image_chat %-16s %d steps: logits rel err max %.2e, max abs diff %.2e\n",
              dir.substr(dir.rfind('/') + 1).c_str(), steps, worst, max_abs);
}

}  // namespace

TEST(ImageChatGolden, LogitsAndGreedyTokensMatchTransformersForImagePrompts) {
  auto model = load_tiny_v();
  ASSERT_TRUE(model->has_vision());
  const auto cases = golden::subdirs(golden::fixtures() + "/golden/tiny-v/image_chat");
  ASSERT_GE(cases.size(), 4u);
  for (const std::string& dir : cases) check_case(*model, dir);
}

// Spoken answers with images in the conversation (golden/tiny-v/image_speech): the talker hears every user turn,
// the image placeholders through its hidden projection, at the image spans' 3-row positions, and continues at
// its slot + the prompt's delta (docs/model.md §3.7). Earlier turns answered in text as check_case does.
void check_speech_case(omni::Model& model, const std::string& dir) {
  SCOPED_TRACE(dir);
  const auto meta = read_json(dir + "/meta.json");
  const auto& turns = meta.at("turns");
  auto session = model.new_session();
  std::vector<int32_t> previous_answer;
  std::vector<float> audio;
  omni::TurnResult r;
  for (size_t k = 0; k < turns.size(); ++k) {
    const std::vector<int32_t> expected = turn_ids(dir, k, previous_answer);
    const bool last = k + 1 == turns.size();
    omni::Callbacks cb;
    omni::GenerateOptions opt;
    if (last) {
      opt = golden::spoken_turn_options(meta, cb, audio);
    } else {
      opt.max_new_tokens = meta.at("steps").get<int>();
    }
    r = session->respond(user_turn(turns[k]), opt, cb);
    EXPECT_EQ(r.prompt_tokens, expected) << "turn " << k << " prompt ids";
    if (!last) {
      EXPECT_EQ(r.tokens, meta.at("earlier_answers").at(k).get<std::vector<int32_t>>()) << "answer of turn " << k;
      previous_answer = r.tokens;
    }
  }
  ASSERT_EQ(r.tokens, ids_of(omni::read_npy(dir + "/thinker_tokens.npy")));
  ASSERT_EQ(audio.size(), r.speech_samples);
  golden::expect_speech_like(meta, r, audio, omni::read_npy(dir + "/waveform.npy"), dir.substr(dir.rfind('/') + 1));
}

TEST(ImageChatGolden, SpokenAnswersInConversationsWithImagesMatchTransformers) {
  auto model = load_tiny_v();
  ASSERT_TRUE(model->has_talker());
  const auto cases = golden::subdirs(golden::fixtures() + "/golden/tiny-v/image_speech");
  ASSERT_GE(cases.size(), 2u);
  for (const std::string& dir : cases) check_speech_case(*model, dir);
}

TEST(ImageChatGolden, RenderPromptExpandsTheImageToItsTokenCount) {
  auto model = load_tiny_v();
  const std::string dir = golden::fixtures() + "/golden/tiny-v/image_chat/street_resized";
  const auto meta = read_json(dir + "/meta.json");
  const std::vector<int32_t> want = ids_of(omni::read_npy(dir + "/turn_0_ids.npy"));
  EXPECT_EQ(model->render_prompt("", user_turn(meta.at("turns").at(0))), want);
}

TEST(ImageChatGolden, ABadImageIsRefusedNamingItAndTheConversationGoesOn) {
  auto model = load_tiny_v();
  auto session = model->new_session();
  omni::GenerateOptions opt;
  opt.max_new_tokens = 3;
  session->respond(omni::UserTurn{"Hello", {}, {}}, opt, {});
  const int used = session->context_used();
  const std::string missing = golden::fixtures() + "/images/no_such_picture.png";
  try {
    session->respond(omni::UserTurn{"What is this?", {}, {{missing, {}, {}}}}, opt, {});
    ADD_FAILURE() << "a missing image was accepted";
  } catch (const omni::ImageError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  try {
    session->respond(omni::UserTurn{"What is this?", {}, {{{}, {'n', 'o', 'p', 'e'}, {}}}}, opt, {});
    ADD_FAILURE() << "bytes that are no image were accepted";
  } catch (const omni::ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("images[0]"), std::string::npos) << e.what();
  }
  try {
    session->respond(omni::UserTurn{"What is this?", {}, {{{}, {0x89, 'P', 'N', 'G'}, "gif"}}}, opt, {});
    ADD_FAILURE() << "an unknown format was accepted";
  } catch (const omni::ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("gif"), std::string::npos) << e.what();
  }
  EXPECT_EQ(session->context_used(), used);
  const omni::TurnResult r = session->respond(omni::UserTurn{"Still there?", {}, {}}, opt, {});
  EXPECT_FALSE(r.tokens.empty());
}

TEST(ImageChatGolden, AModelWithoutAnImagePreprocessorRefusesImagesNamingTheFile) {
  // tiny-a has a vision tower but its preprocessor_config.json has no image keys: the class default patch 14
  // does not fit the tower's 16.
  omni::LoadOptions lo;
  lo.model_dir = golden::model_dir("tiny-a");
  lo.context_tokens = 256;
  lo.load_talker = false;
  auto model = omni::Model::load(lo);
  auto session = model->new_session();
  omni::GenerateOptions opt;
  opt.max_new_tokens = 2;
  try {
    session->respond(omni::UserTurn{"?", {}, {{golden::fixtures() + "/images/garden_224x160.png", {}, {}}}}, opt, {});
    ADD_FAILURE() << "tiny-a took an image";
  } catch (const omni::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("preprocessor_config.json"), std::string::npos) << e.what();
  }
  EXPECT_EQ(session->context_used(), 0);
}

TEST(ImageChatGolden, RollingBackAnImageTurnGivesTheAnswerOfAConversationWithoutIt) {
  auto model = load_tiny_v();
  omni::GenerateOptions opt;
  opt.max_new_tokens = 6;
  const omni::UserTurn first{"Hello", {}, {}};
  const omni::UserTurn text{"And what colour is it?", {}, {}};
  std::vector<std::vector<float>> want, got;
  auto fresh = model->new_session();
  fresh->respond(first, opt, {});
  omni::Callbacks keep_want;
  keep_want.on_logits = [&](const float* l, size_t n) { want.emplace_back(l, l + n); };
  const omni::TurnResult a = fresh->respond(text, opt, keep_want);

  auto s = model->new_session();
  s->respond(first, opt, {});
  const omni::SessionMark m = s->mark();
  s->respond(omni::UserTurn{"What is in this picture?", {}, {{golden::fixtures() + "/images/garden_224x160.png", {}, {}}}},
             opt, {});
  s->rollback(m);
  omni::Callbacks keep_got;
  keep_got.on_logits = [&](const float* l, size_t n) { got.emplace_back(l, l + n); };
  const omni::TurnResult b = s->respond(text, opt, keep_got);
  EXPECT_EQ(b.tokens, a.tokens);
  EXPECT_EQ(got, want);  // bit for bit: the same slots and positions as if the image turn never ran
}
