// The camera (docs/config.md "camera", docs/protocol.md "ask"), end to end: the real omnid on tiny-v with a
// GStreamer file pipeline as its camera (filesrc ! pngdec ! imagefreeze), a real ZeroMQ client. An ask with
// "camera": true gets omni-run's answer about the same picture; a camera that cannot start is reported lost
// (device.lost, "device": "camera"), asks for its frame are `unavailable` meanwhile, and it is reported restored
// once its file appears; camera.attach: always gives typed asks the frame by themselves; without a camera an ask
// for a frame is `unavailable`; a reload with a pipeline GStreamer cannot parse is refused and keeps the camera.
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "e2e_harness.h"

using namespace e2e;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kTinyV = std::string(OMNI_BUILD_DIR) + "/models/tiny-v";
const std::string kGarden = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/images/garden_224x160.png";
const std::string kSystem = "Describe pictures.";
const std::string kQuestion = "What is in this picture?";
constexpr int kMaxTokens = 10;

std::string file_camera(const std::string& png) { return "filesrc location=" + png + " ! pngdec ! imagefreeze"; }

// omni-run's greedy answer to kQuestion about `image`: its JSON.
json omni_run_answer(const std::string& image) {
  return omni_run_json("--model " + kTinyV + " --system '" + kSystem + "' --image " + image + " --prompt '" +
                       kQuestion + "' --greedy --max-new-tokens " + std::to_string(kMaxTokens));
}

class CameraE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    struct stat st {};
    if (::stat((kTinyV + "/config.json").c_str(), &st) != 0)
      GTEST_SKIP() << "no tiny vision model at " << kTinyV << " (the engine build assembles it)";
  }
  DaemonOptions options(const std::string& camera_yaml) {
    DaemonOptions o;
    o.binary = OMNID_BINARY;
    o.model_path = kTinyV;
    o.extra_model_yaml = "  system_prompt: \"" + kSystem + "\"\n";
    o.extra_yaml = camera_yaml;
    return o;
  }
};

json ask_done(DaemonProcess& d, EventLog& events, json request) {
  request["speak"] = false;
  request["max_new_tokens"] = kMaxTokens;
  request["sampling"] = {{"temperature", 0}};
  return ask_and_wait_done(d, events, request);
}

bool turn_had_images(const EventLog& events, uint64_t turn_id, int images) {
  for (const auto& e : events.seen())
    if (e.name == "turn.start" && e.body["turn_id"] == turn_id) return e.body.value("images", 0) == images;
  return false;
}

}  // namespace

TEST_F(CameraE2E, AnAskWithTheCameraGetsOmniRunsAnswerAboutTheSamePicture) {
  const json want = omni_run_answer(kGarden);
  ASSERT_EQ(want["tokens"].size(), size_t(kMaxTokens)) << want;
  auto d = start_ready(options("camera:\n  pipeline: \"" + file_camera(kGarden) + "\"\n  attach: never\n"));
  EventLog events(d->events());
  // The camera delivers its first frame shortly after omnid is ready.
  json cam;
  for (int i = 0; i < 100; ++i) {
    cam = d->request({{"cmd", "status"}}, 5s)["camera"];
    if (cam.value("state", "") == "running") break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(cam["state"], "running") << cam;
  EXPECT_EQ(cam["width"], 224);
  EXPECT_EQ(cam["height"], 160);
  const json done = ask_done(*d, events, {{"text", kQuestion}, {"camera", true}});
  EXPECT_EQ(done["text"], want["text"]) << done;
  EXPECT_EQ(done["tokens"], want["tokens"].size()) << done;
  EXPECT_TRUE(turn_had_images(events, done["turn_id"], 1));
  // attach: never: a typed ask without "camera" has no picture.
  const json plain = ask_done(*d, events, {{"text", "Hello"}});
  EXPECT_TRUE(turn_had_images(events, plain["turn_id"], 0));
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_F(CameraE2E, ACameraThatCannotStartIsReportedLostAndRestoredWhenItsSourceAppears) {
  const fs::path dir = fs::temp_directory_path() / ("omnid_camera_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string png = (dir / "camera.png").string();
  auto d = start_ready(options("camera:\n  pipeline: \"" + file_camera(png) + "\"\n  attach: never\n"));
  EventLog events(d->events());
  // The loss is reported at once, maybe before this client subscribed: read it from the daemon's event buffer.
  json lost;
  for (int i = 0; i < 100 && lost.is_null(); ++i) {
    const json r = d->request({{"cmd", "events"}, {"since", 0}, {"topics", {"device."}}}, 5s);
    for (const json& e : r["events"])
      if (e["event"] == "device.lost" && e["device"] == "camera") lost = e;
    if (lost.is_null()) std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(lost.is_null()) << "no device.lost for the camera";
  EXPECT_NE(lost["reason"].get<std::string>().find("camera cannot start"), std::string::npos) << lost;
  EXPECT_NE(lost["reason"].get<std::string>().find(png), std::string::npos) << lost;
  EXPECT_EQ(d->request({{"cmd", "status"}}, 5s)["camera"]["state"], "lost");
  const json r = d->request({{"cmd", "ask"}, {"text", kQuestion}, {"camera", true}}, 5s);
  ASSERT_EQ(r.value("ok", true), false) << r;
  EXPECT_EQ(r["error"]["code"], "unavailable");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("camera: the camera is lost"), std::string::npos) << r;
  // The daemon goes on answering meanwhile.
  EXPECT_TRUE(d->request({{"cmd", "ping"}}, 5s).value("ok", false));
  fs::copy_file(kGarden, png);
  auto restored = events.wait_for("device.restored", 40s, [](const auto& e) { return e.body["device"] == "camera"; });
  ASSERT_TRUE(restored) << "no device.restored for the camera";
  EXPECT_GE(restored->body["attempts"].get<int>(), 1);
  const json done = ask_done(*d, events, {{"text", kQuestion}, {"camera", true}});
  EXPECT_TRUE(turn_had_images(events, done["turn_id"], 1));
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
  fs::remove_all(dir);
}

TEST_F(CameraE2E, AttachAlwaysGivesTypedAsksTheFrameAndABadReloadKeepsTheCamera) {
  auto d = start_ready(options("camera:\n  pipeline: \"" + file_camera(kGarden) + "\"\n  attach: always\n"));
  EventLog events(d->events());
  for (int i = 0; i < 100 && d->request({{"cmd", "status"}}, 5s)["camera"]["state"] != "running"; ++i)
    std::this_thread::sleep_for(50ms);
  const json done = ask_done(*d, events, {{"text", kQuestion}});
  EXPECT_TRUE(turn_had_images(events, done["turn_id"], 1));
  // A pipeline GStreamer cannot parse: the reload is refused, naming it, and the camera runs on.
  const std::string base = d->default_config();
  d->write_config(base.substr(0, base.find("camera:\n")) + "camera:\n  pipeline: \"no_such_element_xyz\"\n");
  const json r = d->request({{"cmd", "reload"}}, 10s);
  ASSERT_EQ(r.value("ok", true), false) << r;
  EXPECT_NE(r["error"]["message"].get<std::string>().find("camera.pipeline 'no_such_element_xyz'"), std::string::npos)
      << r;
  const json cam = d->request({{"cmd", "status"}}, 5s)["camera"];
  EXPECT_EQ(cam["state"], "running") << cam;
  EXPECT_NE(cam["pipeline"].get<std::string>().find("garden_224x160.png"), std::string::npos) << cam;
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_F(CameraE2E, WithoutACameraAnAskForItsFrameIsUnavailable) {
  auto d = start_ready(options(""));
  EXPECT_EQ(d->request({{"cmd", "status"}}, 5s)["camera"]["state"], "off");
  const json r = d->request({{"cmd", "ask"}, {"text", kQuestion}, {"camera", true}}, 5s);
  ASSERT_EQ(r.value("ok", true), false) << r;
  EXPECT_EQ(r["error"]["code"], "unavailable");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("no camera is configured"), std::string::npos) << r;
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_F(CameraE2E, AClipGivesASpokenTurnTheLastSecondsOfFramesWithTheUtteranceAsTheirSoundtrack) {
  auto o = options("camera:\n  pipeline: \"" + file_camera(kGarden) + "\"\n  attach: voice\n  clip: 1\n");
  o.input_pipeline = "filesrc location=" + std::string(OMNI_SOURCE_DIR) +
                     "/tests/integration/data/one_question.wav ! wavparse";
  o.max_new_tokens = 6;
  auto d = start_ready(o);
  EventLog events(d->events());
  // Half a second of frames at least (two kept at 2 fps), then the microphone opens.
  std::this_thread::sleep_for(1200ms);
  ASSERT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
  auto start = events.wait_for("turn.start", 30s);
  ASSERT_TRUE(start);
  EXPECT_EQ(start->body["source"], "voice");
  EXPECT_EQ(start->body.value("videos", 0), 1) << start->body;  // the clip, with the utterance inside it
  EXPECT_GT(start->body.value("audio_ms", 0), 0) << start->body;
  const uint64_t id = start->body["turn_id"];
  auto done = events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(done) << "the spoken turn with a clip did not finish";
  EXPECT_NE(done->body["stop"], "error");
  EXPECT_TRUE(events.wait_for("speech.end", 60s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}
