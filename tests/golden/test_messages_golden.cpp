// Whole conversations in the Hugging Face chat form (omni-run --messages, Session::respond_messages) against
// transformers (golden/tiny-v/messages from tools/make_vision_fixtures.py): each case's messages.json is read with
// parse_messages, as omni-run reads it (paths relative to the file), and answered in one call. The fixture is the
// chat template's rendering with every placeholder expanded, answered by transformers' thinker.generate with the
// images' pixels and the clip's features. Cases: two images with text between them, an image turn whose answer is
// given as an assistant message, an image before a clip in one turn, a tool call with its result after an
// image, a video (4 frames at 2 fps) before text, and an image and a video at 1 fps with text between them.
// Prompt ids equal, logits within 1e-4 relative per step, identical greedy tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "audio/io/wav.h"
#include "golden_util.h"
#include "omni/engine.h"
#include "omni/npy.h"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int32_t> ids_of(const omni::NpyArray& a) { return std::vector<int32_t>(a.i64.begin(), a.i64.end()); }

std::unique_ptr<omni::Model> load_tiny_v() {
  omni::LoadOptions lo;
  lo.model_dir = golden::model_dir("tiny-v");
  lo.context_tokens = 512;
  lo.load_talker = false;
  return omni::Model::load(lo);
}

std::vector<omni::Message> read_case(const std::string& dir) {
  std::vector<omni::Message> msgs = omni::parse_messages(read_file(dir + "/messages.json"), dir);
  for (omni::Message& m : msgs)
    for (omni::MessageItem& item : m.content) {
      if (item.kind == omni::MessageItem::Kind::Audio) item.audio_16k = omni::audio::load_wav_mono(item.audio_path);
      if (!item.video.audio_path.empty()) item.video.audio_16k = omni::audio::load_wav_mono(item.video.audio_path);
    }
  return msgs;
}

void check_case(omni::Model& model, const std::string& dir) {
  SCOPED_TRACE(dir);
  const int steps = 12;
  const omni::NpyArray greedy = omni::read_npy(dir + "/greedy.npy");
  const omni::NpyArray cols = omni::read_npy(dir + "/logit_cols.npy");
  const omni::NpyArray sub = omni::read_npy(dir + "/logits_sub.npy");
  ASSERT_EQ(greedy.numel(), steps);
  const std::string tools_path = dir + "/tools.json";
  const std::string tools = std::ifstream(tools_path).good() ? read_file(tools_path) : std::string();
  auto session = model.new_session({.system_prompt = {}, .tools = tools});
  omni::GenerateOptions opt;
  opt.max_new_tokens = steps;
  std::vector<std::vector<float>> rows;
  omni::Callbacks cb;
  cb.on_logits = [&](const float* l, size_t n) { rows.emplace_back(l, l + n); };
  const omni::TurnResult r = session->respond_messages(read_case(dir), opt, cb);
  EXPECT_EQ(r.prompt_tokens, ids_of(omni::read_npy(dir + "/prompt_ids.npy"))) << "prompt ids";
  ASSERT_EQ(int(r.tokens.size()), steps) << "the engine stopped early";
  for (int s = 0; s < steps; ++s) EXPECT_EQ(r.tokens[size_t(s)], int32_t(greedy.i64[size_t(s)])) << "step " << s;
  const size_t K = size_t(cols.numel());
  double worst = 0, max_abs = 0;
  for (int s = 0; s < steps; ++s) {
    std::vector<float> mine(K);
    for (size_t c = 0; c < K; ++c) mine[c] = rows[size_t(s)][size_t(cols.i64[c])];
    const float* ref = sub.f32.data() + size_t(s) * K;
    const double e = golden::rel_err(mine.data(), ref, K);
    for (size_t c = 0; c < K; ++c) max_abs = std::max(max_abs, double(std::fabs(mine[c] - ref[c])));
    worst = std::max(worst, e);
    EXPECT_LT(e, 1e-4) << "logits step " << s;
  }
  std::printf("messages %-24s prompt %zu ids, %d steps: logits rel err max %.2e, max abs diff %.2e\n",
              dir.substr(dir.rfind('/') + 1).c_str(), r.prompt_tokens.size(), steps, worst, max_abs);
}

}  // namespace

TEST(MessagesGolden, WholeConversationsMatchTransformersIdsLogitsAndGreedyTokens) {
  auto model = load_tiny_v();
  const auto cases = golden::subdirs(golden::fixtures() + "/golden/tiny-v/messages");
  ASSERT_GE(cases.size(), 6u);
  for (const std::string& dir : cases) check_case(*model, dir);
}

// A conversation given whole continues like any other: one user turn (an image, then text) given as messages and
// then a text turn answer exactly as the same two turns given with respond() (whose prompt layout the image_chat
// goldens check against transformers), the second turn's positions included.
TEST(MessagesGolden, ALaterTurnContinuesAConversationGivenAsMessages) {
  auto model = load_tiny_v();
  const std::string garden = golden::fixtures() + "/images/garden_224x160.png";
  omni::GenerateOptions opt;
  opt.max_new_tokens = 6;
  auto a = model->new_session();
  const auto msgs = omni::parse_messages(R"([{"role": "user", "content": [{"type": "image", "image": ")" + garden +
                                             R"("}, {"type": "text", "text": "What is in this picture?"}]}])",
                                         "");
  const omni::TurnResult a1 = a->respond_messages(msgs, opt, {});
  const omni::TurnResult a2 = a->respond(omni::UserTurn{"And what colour is it?", {}, {}}, opt, {});
  auto b = model->new_session();
  const omni::TurnResult b1 = b->respond(omni::UserTurn{"What is in this picture?", {}, {{garden, {}, {}}}}, opt, {});
  const omni::TurnResult b2 = b->respond(omni::UserTurn{"And what colour is it?", {}, {}}, opt, {});
  EXPECT_EQ(a1.prompt_tokens, b1.prompt_tokens);
  EXPECT_EQ(a1.tokens, b1.tokens);
  EXPECT_EQ(a2.prompt_tokens, b2.prompt_tokens);
  EXPECT_EQ(a2.tokens, b2.tokens);
  EXPECT_EQ(a->context_used(), b->context_used());
}

TEST(MessagesGolden, ABadItemIsRefusedNamingItAndTheSessionKeepsItsConversation) {
  auto model = load_tiny_v();
  auto session = model->new_session();
  omni::GenerateOptions opt;
  opt.max_new_tokens = 3;
  session->respond(omni::UserTurn{"Hello", {}, {}}, opt, {});
  const int used = session->context_used();
  auto refused = [&](const std::string& json, const std::string& needle) {
    try {
      std::vector<omni::Message> msgs = omni::parse_messages(json, golden::fixtures() + "/images");
      session->respond_messages(msgs, opt, {});
      ADD_FAILURE() << "accepted: " << json;
    } catch (const omni::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(session->context_used(), used) << json;
  };
  refused(R"([{"role": "user", "content": [{"type": "image", "image": "no_such.png"}]}])", "no_such.png");
  refused(R"([{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}])",
          "messages[0].content[0]: the clip has no samples");
  refused(R"([{"role": "assistant", "content": [{"type": "image", "image": "garden_224x160.png"}]}])",
          "messages[0].content[0]: only user messages hold images and audio");
  refused(R"([{"role": "robot", "content": "hi"}])", "messages[0].role: 'robot'");
  refused(R"([{"role": "user", "content": "hi"}, {"role": "user", "content": 3}])",
          "messages[1].content: expected a string");
  refused(R"([{"role": "user", "content": "hi", "tool_calls": []}])",
          "messages[0].tool_calls: only an assistant message calls tools");
  refused(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]}])",
          "messages[0].tool_calls[0].function.arguments: expected an object or a JSON string");
  refused(R"({"role": "user"})", "messages: expected a list");
  refused(R"([{"role": "user", "content": [{"type": "video", "video": "clip"}]}])",
          "/images/clip: no such video");
  refused(R"([{"role": "user", "content": [{"type": "video", "video": "x", "fps": 0}]}])",
          "messages[0].content[0].fps: 0 is not in (0, 60]");
  // The images folder as a video: its pictures differ in size.
  refused(R"([{"role": "user", "content": [{"type": "video", "video": "."}]}])", ", but the video's first frame is");
  // The conversation is the one it had: the next turn follows "Hello".
  const omni::TurnResult r = session->respond(omni::UserTurn{"Still there?", {}, {}}, opt, {});
  EXPECT_FALSE(r.tokens.empty());
  EXPECT_GT(session->context_used(), used);
}

// A spoken answer about a video (golden/tiny-v/messages_speech from tools/make_vision_fixtures.py): transformers'
// generate(return_audio=True) over the same conversation. The talker hears the video's rows at the span's 3-row
// positions (time row t · 2/fps · 13). (A video with its soundtrack has no reference: transformers 5.17 fails in
// the talker's positions for use_audio_in_video; docs/model.md §3.7.)
TEST(MessagesGolden, SpokenAnswersAboutAVideoMatchTransformers) {
  omni::LoadOptions lo;
  lo.model_dir = golden::model_dir("tiny-v");
  lo.context_tokens = 512;
  auto model = omni::Model::load(lo);
  const auto cases = golden::subdirs(golden::fixtures() + "/golden/tiny-v/messages_speech");
  ASSERT_GE(cases.size(), 1u);
  for (const std::string& dir : cases) {
    SCOPED_TRACE(dir);
    const auto meta = nlohmann::json::parse(read_file(dir + "/meta.json"));
    std::vector<float> audio;
    omni::Callbacks cb;
    const omni::GenerateOptions opt = golden::spoken_turn_options(meta, cb, audio);
    auto session = model->new_session();
    const omni::TurnResult r = session->respond_messages(read_case(dir), opt, cb);
    EXPECT_EQ(r.prompt_tokens, ids_of(omni::read_npy(dir + "/prompt_ids.npy")));
    ASSERT_EQ(r.tokens, ids_of(omni::read_npy(dir + "/thinker_tokens.npy")));
    ASSERT_EQ(audio.size(), r.speech_samples);
    golden::expect_speech_like(meta, r, audio, omni::read_npy(dir + "/waveform.npy"), dir.substr(dir.rfind('/') + 1));
  }
}
