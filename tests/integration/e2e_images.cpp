// Images in `ask` (docs/protocol.md "ask"), end to end: the real omnid on tiny-v (a vision tower; skipped, with
// the reason, when ${BUILD}/models/tiny-v is absent), a real ZeroMQ client. An image sent as a path and as base64
// gets omni-run's answer; bad images are refused in the ask's reply with the documented code, naming the image,
// and the daemon answers the next question; a model without a usable vision tower refuses images; decoding
// them does not hold up another client.
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "e2e_harness.h"
#include "ipc/protocol.h"

using namespace e2e;
using nlohmann::json;

namespace {

const std::string kTinyV = std::string(OMNI_BUILD_DIR) + "/models/tiny-v";
const std::string kImages = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/images";
const std::string kSystem = "Describe pictures.";
const std::string kQuestion = "What is in this picture?";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string base64_of(const std::string& bytes) {
  return omni::ipc::encode_base64(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

// A PNG of `width` x `height` gray RGB pixels (stored deflate blocks: no compression library needed).
std::string png_of_size(uint32_t width, uint32_t height) {
  auto crc32 = [](const std::string& s) {
    uint32_t c = 0xffffffffu;
    for (unsigned char b : s) {
      c ^= b;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
  };
  auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    return be32(uint32_t(data.size())) + type + data + be32(crc32(type + data));
  };
  std::string raw;
  for (uint32_t y = 0; y < height; ++y) raw += '\0' + std::string(size_t(width) * 3, char(128));
  std::string z = "\x78\x01";
  for (size_t at = 0; at < raw.size() || at == 0; at += 65535) {
    const size_t n = std::min<size_t>(65535, raw.size() - at);
    const bool last = at + n >= raw.size();
    z += char(last ? 1 : 0);
    z += char(n & 0xff);
    z += char(n >> 8);
    z += char(~n & 0xff);
    z += char((~n >> 8) & 0xff);
    z += raw.substr(at, n);
    if (last) break;
  }
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  z += be32(b << 16 | a);
  const std::string ihdr = be32(width) + be32(height) + std::string{8, 2, 0, 0, 0};
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", z) + chunk("IEND", "");
}

struct OmniRunAnswer {
  std::string text;
  size_t tokens = 0;
};

// omni-run's greedy answer to the question about `image` (its --json output).
OmniRunAnswer omni_run_answer(const std::string& image, int max_new_tokens) {
  const json j = omni_run_json("--model " + kTinyV + " --system '" + kSystem + "' --image " + image + " --prompt '" +
                               kQuestion + "' --greedy --max-new-tokens " + std::to_string(max_new_tokens));
  if (j.is_null()) return {};
  return {j["text"].get<std::string>(), j["tokens"].size()};
}

class ImagesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    struct stat st {};
    if (::stat((kTinyV + "/config.json").c_str(), &st) != 0)
      GTEST_SKIP() << "no tiny vision model at " << kTinyV << " (the engine build assembles it)";
  }
  DaemonOptions options(int context_tokens = 8192) {
    DaemonOptions o;
    o.binary = OMNID_BINARY;
    o.model_path = kTinyV;
    o.max_message_bytes = 16 << 20;
    o.extra_model_yaml = "  system_prompt: \"" + kSystem + "\"\n  context_tokens: " + std::to_string(context_tokens) +
                         "\n";
    return o;
  }
};

json answer(DaemonProcess& d, EventLog& events, json request) { return ask_and_wait_done(d, events, request); }

void expect_refused(DaemonProcess& d, const json& images, const std::string& code, const std::string& needle) {
  const json r = d.request({{"cmd", "ask"}, {"text", kQuestion}, {"images", images}}, 30s);
  ASSERT_EQ(r.value("ok", true), false) << images.dump().substr(0, 300) << " was accepted: " << r;
  EXPECT_EQ(r["error"]["code"], code) << r;
  EXPECT_NE(r["error"]["message"].get<std::string>().find(needle), std::string::npos)
      << "message: " << r["error"]["message"] << "\nexpected to contain: " << needle;
}


}  // namespace

TEST_F(ImagesE2E, AnImageSentAsAPathAndAsBase64GetsOmniRunsAnswer) {
  constexpr int kMaxTokens = 12;
  const std::string image = kImages + "/street_250x190.jpg";
  const OmniRunAnswer want = omni_run_answer(image, kMaxTokens);
  ASSERT_EQ(want.tokens, size_t(kMaxTokens));

  auto d = start_ready(options());
  EventLog events(d->events());
  const json sampling = {{"temperature", 0}};
  const json by_path = answer(*d, events, {{"text", kQuestion}, {"images", {{{"path", image}}}}, {"speak", false},
                                           {"max_new_tokens", kMaxTokens}, {"sampling", sampling}});
  ASSERT_TRUE(d->request({{"cmd", "reset"}}, 10s).value("ok", false));
  const json by_bytes =
      answer(*d, events, {{"text", kQuestion}, {"images", {{{"base64", base64_of(read_file(image))}, {"format", "jpeg"}}}},
                          {"speak", false}, {"max_new_tokens", kMaxTokens}, {"sampling", sampling}});
  EXPECT_EQ(by_path["text"], want.text) << by_path;
  EXPECT_EQ(by_path["tokens"], want.tokens) << by_path;
  EXPECT_EQ(by_bytes["text"], by_path["text"]) << by_bytes;
  EXPECT_EQ(by_bytes["tokens"], by_path["tokens"]) << by_bytes;
  EXPECT_EQ(by_path["stop"], "max_tokens");
  // The turn said how many images it took, and the answer was not spoken (speak: false).
  bool started_with_image = false, spoken = false;
  for (const auto& e : events.seen()) {
    started_with_image = started_with_image || (e.name == "turn.start" && e.body.value("images", 0) == 1);
    spoken = spoken || e.name.rfind("speech.", 0) == 0;
  }
  EXPECT_TRUE(started_with_image);
  EXPECT_FALSE(spoken);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_F(ImagesE2E, BadImagesAreRefusedNamingTheImageAndTheDaemonAnswersTheNextQuestion) {
  // 256 tokens of context: a 640x480 picture (300 image tokens on tiny-v) cannot fit, a 256x192 one (48) can.
  auto d = start_ready(options(256));
  EventLog events(d->events());
  const std::string good = kImages + "/street_250x190.jpg";
  const std::string not_image = std::string(OMNI_SOURCE_DIR) + "/docs/protocol.md";
  const json good_path = {{"path", good}};
  // Refused by the protocol layer, before anything is read.
  expect_refused(*d, {{{"path", "street_250x190.jpg"}}}, "bad_request", "images[0].path 'street_250x190.jpg' is not absolute");
  expect_refused(*d, {good_path, {{"base64", "not base64!"}, {"format", "png"}}}, "bad_request",
                 "images[1].base64 is not valid base64");
  expect_refused(*d, {{{"base64", base64_of(read_file(good))}, {"format", "gif"}}}, "bad_request",
                 "images[0].format must be \"png\" or \"jpeg\", not 'gif'");
  expect_refused(*d, json::array({good_path, good_path, good_path, good_path, good_path, good_path, good_path,
                                  good_path, good_path}),
                 "bad_request", "field 'images' has 9 images; an ask takes at most 8");
  // Refused once the daemon has tried to read and decode them.
  expect_refused(*d, {good_path, {{"path", kImages + "/no_such_picture.png"}}}, "bad_request",
                 "images[1]: " + kImages + "/no_such_picture.png: no such image file");
  expect_refused(*d, {{{"path", kImages}}}, "bad_request", "images[0]: " + kImages + ": not a regular file");
  expect_refused(*d, {{{"path", not_image}}}, "bad_request", "images[0]: " + not_image + ": not a PNG or JPEG image");
  expect_refused(*d, {good_path, {{"base64", base64_of("just some text")}, {"format", "png"}}}, "bad_request",
                 "images[1]: not a PNG or JPEG image");
  expect_refused(*d, {{{"base64", base64_of(read_file(good))}, {"format", "png"}}}, "bad_request",
                 "images[0]: said to be png but the data is jpeg");
  expect_refused(*d, {{{"base64", base64_of(read_file(good).substr(0, 600))}, {"format", "jpeg"}}}, "bad_request",
                 "images[0]: undecodable JPEG");
  expect_refused(*d, {{{"base64", base64_of(png_of_size(202, 1))}, {"format", "png"}}}, "bad_request",
                 "images[0]: image 202x1: aspect ratio");
  expect_refused(*d, {{{"path", kImages + "/room_640x480.jpg"}}}, "context_full",
                 "images[0]: " + kImages + "/room_640x480.jpg: 640x480 needs 300 image tokens; the context holds 256");
  expect_refused(*d, json::array({good_path, good_path, good_path, good_path, good_path, good_path}), "context_full",
                 "with its 6 image(s) is");
  // Nothing of them reached the conversation, and the daemon answers.
  EXPECT_EQ(d->request({{"cmd", "status"}})["context_tokens_used"], 0);
  const json done = answer(*d, events, {{"text", kQuestion}, {"images", {good_path}}, {"max_new_tokens", 4}});
  EXPECT_GE(done.value("tokens", 0), 1) << done;
  const json text_done = answer(*d, events, {{"text", "And now?"}, {"speak", false}, {"max_new_tokens", 4}});
  EXPECT_GE(text_done.value("tokens", 0), 1) << text_done;
  for (const auto& e : events.seen()) EXPECT_NE(e.name, "error") << e.body;
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_F(ImagesE2E, AModelWithoutAUsableVisionTowerRefusesImagesAndStillAnswers) {
  // The scripted engine has no vision tower; tiny-a has one whose preprocessor_config.json does not fit it.
  for (const bool scripted : {true, false}) {
    SCOPED_TRACE(scripted ? "scripted engine" : "tiny-a");
    DaemonOptions o = scripted ? scripted_options() : DaemonOptions{};
    if (!scripted) {
      o.binary = OMNID_BINARY;
      o.model_path = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";
    }
    auto d = start_ready(o);
    EventLog events(d->events());
    expect_refused(*d, {{{"path", kImages + "/street_250x190.jpg"}}}, "bad_request",
                   scripted ? "has no vision tower: it cannot take images" : "preprocessor_config.json");
    const json done = answer(*d, events, {{"text", "Hello?"}, {"speak", false}, {"max_new_tokens", 3}});
    EXPECT_TRUE(done.contains("text")) << done;
    EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
  }
}

TEST_F(ImagesE2E, DecodingImagesDoesNotHoldUpAnotherClient) {
  auto d = start_ready(options());
  EventLog events(d->events());
  Pinger pinger(d->control());
  std::this_thread::sleep_for(100ms);
  const json room = {{"base64", base64_of(read_file(kImages + "/room_640x480.jpg"))}, {"format", "jpeg"}};
  const json eight = json::array({room, room, room, room, room, room, room, room});
  // The reply comes once the images are decoded and counted; the turn then decodes them again on the engine.
  const auto t0 = Clock::now();
  const json r = d->request({{"cmd", "ask"}, {"text", kQuestion}, {"images", eight}, {"max_new_tokens", 2}}, 30s);
  const double reply_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_EQ(r.value("ok", false), true) << r;
  const uint64_t id = r["turn_id"];
  EXPECT_TRUE(events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  pinger.stop();
  std::printf("8 images: reply after %.0f ms, answer after %.0f ms; %d pings, the slowest %.1f ms\n", reply_ms, ms,
              pinger.pings(), pinger.worst_ms());
  EXPECT_GT(pinger.pings(), 3);
  EXPECT_EQ(pinger.failures(), 0);
  EXPECT_LT(pinger.worst_ms(), 300.0) << "a ping waited while 8 images were decoded";

  // Slower still: four 2000x1500 files (2961 tokens each) are read, decoded and resized before the check finds
  // they do not fit in 8192 tokens together; the pings meanwhile wait far less than the reply.
  const std::string big = d->dir() + "/big.png";
  std::ofstream(big, std::ios::binary) << png_of_size(2000, 1500);
  Pinger pinger2(d->control());
  std::this_thread::sleep_for(100ms);
  const auto t1 = Clock::now();
  const json big_path = {{"path", big}};
  const json refused = d->request({{"cmd", "ask"}, {"text", kQuestion}, {"images", {big_path, big_path, big_path, big_path}}}, 60s);
  const double refused_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  std::this_thread::sleep_for(100ms);
  pinger2.stop();
  EXPECT_EQ(refused["error"]["code"], "context_full") << refused;
  std::printf("4 images of 2000x1500: refused after %.0f ms; %d pings, the slowest %.1f ms\n", refused_ms,
              pinger2.pings(), pinger2.worst_ms());
  EXPECT_EQ(pinger2.failures(), 0);
  EXPECT_LT(pinger2.worst_ms(), refused_ms / 2) << "a ping waited for the images' decoding";
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

// Speech about images: an ask with an image is answered aloud, and so is the next turn while the image turn stays
// in the conversation (the talker hears it at the image span's 3-row positions; goldens against transformers:
// ImageChatGolden.SpokenAnswersInConversationsWithImagesMatchTransformers).
TEST_F(ImagesE2E, AnAskWithAnImageIsAnsweredAloudAndSoIsTheNextTurn) {
  DaemonOptions o = options();
  o.extra_model_yaml += "  max_speech_frames: 8\n";  // a short spoken answer: this machine's speed does not matter
  auto d = start_ready(o);
  EventLog events(d->events());
  for (const json& ask : {json{{"cmd", "ask"}, {"text", kQuestion}, {"images", {{{"path", kImages + "/street_250x190.jpg"}}}},
                               {"max_new_tokens", 2}},
                          json{{"cmd", "ask"}, {"text", "Say it."}, {"max_new_tokens", 2}}}) {
    const json r = d->request(ask, 30s);
    ASSERT_EQ(r.value("ok", false), true) << r;
    const uint64_t id = r["turn_id"];
    const auto end = events.wait_for("speech.end", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
    ASSERT_TRUE(end) << "no speech.end for " << ask.dump();
    EXPECT_GT(end->body.value("duration_ms", 0), 0) << end->body;
    for (const auto& e : events.seen()) {
      if (e.name == "error" && e.body.value("turn_id", 0ull) == id) ADD_FAILURE() << e.body;
    }
    struct stat st {};
    EXPECT_EQ(::stat((d->dir() + "/answer-" + std::to_string(id) + ".wav").c_str(), &st), 0) << "turn " << id;
  }
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

// While a turn runs (a spoken one, seconds long on tiny-v): an ask with images is busy at once, before anything is
// decoded; with `queue` it is decoded, then waits in the queue and is answered after the running turn.
TEST_F(ImagesE2E, WhileATurnRunsAnImageAskIsBusyAtOnceOrWaitsInTheQueue) {
  auto d = start_ready(options());
  EventLog events(d->events());
  const auto t0 = Clock::now();
  const json running = d->request({{"cmd", "ask"}, {"text", "Tell me a long story."}, {"max_new_tokens", 64}});
  ASSERT_EQ(running.value("ok", false), true) << running;
  const json image = {{"path", kImages + "/street_250x190.jpg"}};
  const json busy = d->request({{"cmd", "ask"}, {"text", kQuestion}, {"images", {image}}});
  EXPECT_EQ(busy["error"]["code"], "busy") << busy;
  const json queued = d->request({{"cmd", "ask"}, {"text", kQuestion}, {"images", {image}}, {"queue", true}}, 30s);
  const double queued_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_EQ(queued.value("ok", false), true) << queued;
  EXPECT_EQ(queued["queued"], true) << queued << " (the running turn ended " << queued_ms << " ms after it began?)";
  const uint64_t id = queued["turn_id"];
  // In this order: the running turn ends (cancelled, so that no machine's speed decides), then the queued turn
  // starts and is answered.
  EXPECT_EQ(d->request({{"cmd", "cancel"}})["turn_id"], running["turn_id"]);
  EXPECT_TRUE(
      events.wait_for("turn.cancelled", 30s, [&](const auto& e) { return e.body["turn_id"] == running["turn_id"]; }));
  EXPECT_TRUE(events.wait_for("turn.start", 30s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  const auto done = events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(done);
  EXPECT_GE(done->body.value("tokens", 0), 1) << done->body;
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}
