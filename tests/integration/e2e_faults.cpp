// Faults survived (docs/reliability.md): the real omnid code (scripted engine where exact timing matters, the
// tiny model where the engine itself must fail) with broken devices, a GPU error, broken model directories
// and a full disk. Each test checks what an operator sees: events, STATUS on the notify socket, the log,
// the exit status.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "e2e_harness.h"

using namespace e2e;
namespace fs = std::filesystem;

namespace {

DaemonOptions scripted(const std::string& script = "step_ms=20,words=12") { return scripted_options(script); }
std::unique_ptr<DaemonProcess> start(const DaemonOptions& o) { return start_ready(o); }

bool notified(DaemonProcess& d, const std::string& needle) {
  for (const auto& n : d.notify().all())
    if (n.text.find(needle) != std::string::npos) return true;
  return false;
}

// A scratch directory of the test's own (the daemon's directory is removed with its DaemonProcess).
std::string scratch_dir() {
  char tmpl[] = "/tmp/omnid_faults_XXXXXX";
  return ::mkdtemp(tmpl);
}

std::string tiny_model() { return std::string(OMNI_BUILD_DIR) + "/models/tiny-a"; }
bool have_tiny_model() {
  struct stat st {};
  return ::stat((tiny_model() + "/config.json").c_str(), &st) == 0;
}

}  // namespace

TEST(Faults, FailingAudioInputIsRebuiltWithGrowingBackoff) {
  // identity error-after=N: the source fails after N buffers of 10 ms, as an unplugged device would; every
  // rebuilt pipeline fails the same way, so the losses repeat with a doubling retry delay.
  auto o = scripted();
  o.input_pipeline = "audiotestsrc is-live=true wave=silence samplesperbuffer=160 ! identity error-after=60";
  o.listen = true;
  o.watchdog_usec = 600'000;
  auto d = start(o);
  EventLog events(d->events());
  auto lost = events.wait_for("device.lost", 5s);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->body["device"], "input");
  EXPECT_NE(lost->body["reason"].get<std::string>().find("audio input failed"), std::string::npos) << lost->body;
  EXPECT_EQ(lost->body["retry_in_ms"], 500);
  EXPECT_TRUE(d->notify().wait_for("STATUS=audio input lost (audio input failed", 2s));
  auto restored = events.wait_for("device.restored", 5s);
  ASSERT_TRUE(restored);
  EXPECT_EQ(restored->body["device"], "input");
  EXPECT_EQ(restored->body["attempts"], 1);
  auto again = events.wait_for("device.lost", 5s);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body["retry_in_ms"], 1000) << "the second loss within 10 s doubles the delay";
  EXPECT_TRUE(events.wait_for("device.restored", 5s));
  // The daemon itself stays healthy: it answers, and the watchdog keeps being fed (a restart of omnid
  // would not bring the device back sooner).
  EXPECT_TRUE(d->request({{"cmd", "ping"}})["ok"].get<bool>());
  const auto pings = [&] {
    int n = 0;
    for (const auto& m : d->notify().all()) n += m.text == "WATCHDOG=1";
    return n;
  };
  const int before = pings();
  std::this_thread::sleep_for(1500ms);
  EXPECT_GT(pings(), before);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0) << d->log();
}

TEST(Faults, AudioInputThatEndsIsRebuilt) {
  auto o = scripted();
  o.input_pipeline = "audiotestsrc num-buffers=200 wave=silence samplesperbuffer=160";  // 2 s, then the end
  o.listen = true;
  o.restart_input_on_end = true;
  auto d = start(o);
  EventLog events(d->events());
  auto lost = events.wait_for("device.lost", 5s);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->body["reason"], "audio input ended");
  ASSERT_TRUE(events.wait_for("device.restored", 5s));
  EXPECT_TRUE(d->notify().wait_for("audio input restored", 2s));
  EXPECT_NE(d->log().find("audio input restored after"), std::string::npos) << d->log();
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST(Faults, SpeechOutputThatFailsIsReopenedForTheNextTurn) {
  // The wav-file output's directory does not exist: opening the file fails like an unplugged sound card.
  auto o = scripted();
  const std::string out_dir = scratch_dir() + "/speech";
  o.output_yaml = "    backend: wav-file\n    path: \"" + out_dir + "/answer-{turn}.wav\"\n";
  auto d = start(o);
  EventLog events(d->events());
  const auto first = d->request({{"cmd", "say"}, {"text", "nobody hears this"}});
  ASSERT_TRUE(first["ok"].get<bool>()) << first;
  auto err = events.wait_for("error", 5s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->body["message"].get<std::string>().find("speech output failed"), std::string::npos) << err->body;
  auto lost = events.wait_for("device.lost", 2s);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->body["device"], "output");
  auto cancelled = events.wait_for("turn.cancelled", 5s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->body["reason"], "error");
  EXPECT_EQ(cancelled->body["turn_id"], first["turn_id"]);

  fs::create_directories(out_dir);  // the device is back
  std::this_thread::sleep_for(300ms);
  const auto second = d->request({{"cmd", "say"}, {"text", "now you hear me"}});
  ASSERT_TRUE(second["ok"].get<bool>()) << second;
  auto restored = events.wait_for("device.restored", 5s);
  ASSERT_TRUE(restored);
  EXPECT_EQ(restored->body["device"], "output");
  auto end = events.wait_for("speech.end", 10s, [&](const auto& e) { return e.body["turn_id"] == second["turn_id"]; });
  ASSERT_TRUE(end);
  EXPECT_TRUE(fs::exists(out_dir + "/answer-" + second["turn_id"].dump() + ".wav"));
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST(Faults, FullDiskWhileWritingSpeechIsAnErrorNotACrash) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "/dev/full is not available";
  auto o = scripted();
  o.output_yaml = "    backend: wav-file\n    path: /dev/full\n";
  auto d = start(o);
  EventLog events(d->events());
  const auto r = d->request({{"cmd", "say"}, {"text", "this does not fit on the disk"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  auto err = events.wait_for("error", 10s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->body["message"].get<std::string>().find("speech output failed"), std::string::npos) << err->body;
  EXPECT_NE(err->body["message"].get<std::string>().find("/dev/full"), std::string::npos) << err->body;
  // The turn ends (its speech cannot be played), and the daemon goes on serving.
  auto cancelled = events.wait_for("turn.cancelled", 5s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->body["reason"], "error");
  EXPECT_TRUE(d->request({{"cmd", "status"}})["turn_id"].is_null());
  EXPECT_TRUE(d->request({{"cmd", "ask"}, {"text", "still there?"}, {"speak", false}})["ok"].get<bool>());
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0) << d->log();
}

// A CUDA error can poison the context; CI has no GPU, so the engine worker's test hook throws the same
// omni::DeviceError the CUDA backend throws (OMNID_FAULT_DEVICE_ERROR_AT_TURN, engine_worker.h).
TEST(Faults, DeviceErrorPublishesAnErrorAndExitsNonZero) {
  if (!have_tiny_model()) GTEST_SKIP() << "no tiny model at " << tiny_model();
  DaemonOptions o;
  o.binary = OMNID_BINARY;
  o.model_path = tiny_model();
  o.env = {{"OMNID_FAULT_DEVICE_ERROR_AT_TURN", "2"}};
  auto d = start(o);
  EventLog events(d->events());
  const auto first = d->request({{"cmd", "ask"}, {"text", "Hello"}, {"speak", false}}, 10000ms);
  ASSERT_TRUE(first["ok"].get<bool>()) << first;
  ASSERT_TRUE(events.wait_for("response.done", 60s));  // the first turn is fine
  const auto second = d->request({{"cmd", "ask"}, {"text", "Hello again"}, {"speak", false}}, 10000ms);
  ASSERT_TRUE(second["ok"].get<bool>()) << second;
  auto err = events.wait_for("error", 30s);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->body["code"], "internal");
  EXPECT_NE(err->body["message"].get<std::string>().find("lost its device"), std::string::npos) << err->body;
  EXPECT_EQ(err->body["turn_id"], second["turn_id"]);
  EXPECT_NE(err->body["message"].get<std::string>().find("CUDA error"), std::string::npos) << err->body;
  EXPECT_EQ(d->wait_exit(15s), 1) << "a poisoned device must end the process (systemd restarts it)\n" << d->log();
  EXPECT_TRUE(d->notify().wait_for("STATUS=failed: engine device error", 2s));
  EXPECT_NE(d->log().find("engine device error: CUDA error"), std::string::npos) << d->log();
}

TEST(Faults, MissingModelDirectoryNeverSendsReady) {
  DaemonOptions o;
  o.binary = OMNID_BINARY;
  o.model_path = "/nonexistent/omnid-model";
  DaemonProcess d(o);
  d.start();
  EXPECT_EQ(d.wait_exit(30s), 1) << d.log();
  EXPECT_TRUE(d.notify().wait_for("STATUS=failed: cannot load the model", 2s)) << d.log();
  EXPECT_FALSE(notified(d, "READY=1"));  // checked once the failure arrived: everything before it was read
  EXPECT_TRUE(d.notify().wait_for("/nonexistent/omnid-model", 2s));
  EXPECT_NE(d.log().find("/nonexistent/omnid-model"), std::string::npos) << d.log();
}

TEST(Faults, CorruptModelDirectoryNeverSendsReadyAndNamesTheFile) {
  const std::string tiny_b = std::string(OMNI_BUILD_DIR) + "/models/tiny-b";
  struct stat st {};
  if (::stat((tiny_b + "/model.safetensors").c_str(), &st) != 0) GTEST_SKIP() << "no tiny model at " << tiny_b;
  DaemonOptions o;
  o.binary = OMNID_BINARY;
  const std::string model = scratch_dir() + "/corrupt-model";
  fs::create_directories(model);
  for (const auto& f : fs::directory_iterator(tiny_b))
    if (f.path().filename() != "model.safetensors") fs::copy(fs::canonical(f.path()), fs::path(model) / f.path().filename());
  {
    // The weights cut in half, as an interrupted download leaves them.
    std::ifstream in(fs::canonical(tiny_b + "/model.safetensors"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(model + "/model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  o.model_path = model;
  DaemonProcess d(o);
  d.start();
  EXPECT_EQ(d.wait_exit(30s), 1) << d.log();
  EXPECT_TRUE(d.notify().wait_for("STATUS=failed: cannot load the model", 2s)) << d.log();
  EXPECT_FALSE(notified(d, "READY=1"));  // checked once the failure arrived: everything before it was read
  EXPECT_NE(d.log().find(model + "/model.safetensors"), std::string::npos) << d.log();
  EXPECT_NE(d.log().find("truncated"), std::string::npos) << d.log();
}
