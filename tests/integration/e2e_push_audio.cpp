// The microphone over the control socket (audio.input.source: ipc, `push_audio`; docs/protocol.md) against the
// real daemon (omnid_scripted): a recording pushed in chunks makes the same voice turn as the same recording
// played by the GStreamer file source, and bad requests are refused naming what is wrong.
#include <fstream>
#include <iterator>
#include <thread>

#include "e2e_harness.h"

using namespace e2e;
using nlohmann::json;

namespace {

std::string code(const json& r) { return r.value("/error/code"_json_pointer, std::string("(ok)")); }
std::string message(const json& r) { return r.value("/error/message"_json_pointer, std::string()); }

// The voice turn's events in order, each as its name and the fields that do not depend on timing: what the VAD
// decided (stream positions), the turn's input, its answer and speech. user.transcript comes last whatever its
// place (it may come before or after speech.end, docs/protocol.md).
std::vector<std::string> voice_turn(EventLog& events) {
  auto start = events.wait_for("turn.start", 60s);
  if (!start) return {};
  const uint64_t id = start->body["turn_id"];
  EXPECT_TRUE(events.wait_for("speech.end", 60s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  EXPECT_TRUE(events.wait_for("user.transcript", 60s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  events.pump(300ms);
  std::vector<std::string> out;
  std::string transcript = "(no user.transcript)";
  for (const auto& e : events.seen()) {
    const json& b = e.body;
    const bool mine = b.contains("turn_id") && b["turn_id"] == id;
    if (e.name == "vad.start") out.push_back("vad.start " + b["stream_ms"].dump());
    else if (e.name == "vad.end")
      out.push_back("vad.end " + b["stream_ms"].dump() + " " + b["duration_ms"].dump() + " " + b["truncated"].dump());
    else if (mine && e.name == "turn.start") out.push_back("turn.start " + b["source"].dump() + " " + b["audio_ms"].dump());
    else if (mine && e.name == "response.done") out.push_back("response.done " + b["text"].dump() + " " + b["stop"].dump());
    else if (mine && e.name == "user.transcript") transcript = "user.transcript " + b["text"].dump();
    else if (mine && e.name == "speech.end") out.push_back("speech.end " + b["duration_ms"].dump());
    else if (mine && e.name != "response.delta") out.push_back(e.name);
  }
  out.push_back(transcript);
  return out;
}

// one_question.wav through the GStreamer file source and pushed in 100 ms chunks at a microphone's pace to a
// daemon started from `base` (audio.input.source ipc): the two voice turns, as voice_turn() sees them.
void expect_pushed_turn_equals_file_turn(const DaemonOptions& base) {
  const std::string recording = data_file("one_question.wav");
  std::vector<std::string> from_file, from_push;
  {
    auto o = base;
    o.input_pipeline = "filesrc location=" + recording + " ! wavparse";
    auto d = start_ready(o, 60s);
    EventLog events(d->events());
    ASSERT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
    from_file = voice_turn(events);
  }
  {
    auto o = base;
    o.input_source = "ipc";
    auto d = start_ready(o, 60s);
    EventLog events(d->events());
    ASSERT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
    EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "listening");
    const std::string pcm = wav_data(recording);  // 16-bit mono: s16le
    const size_t chunk = 3200;
    auto next = Clock::now();
    for (size_t at = 0; at < pcm.size(); at += chunk) {
      const auto r = d->request({{"cmd", "push_audio"}, {"sample_rate", 16000}, {"format", "s16le"}},
                                5000ms, pcm.substr(at, chunk));
      ASSERT_TRUE(r["ok"].get<bool>()) << r;
      EXPECT_EQ(r["listening"], true);
      next += 100ms;
      std::this_thread::sleep_until(next);
    }
    from_push = voice_turn(events);
  }
  ASSERT_FALSE(from_file.empty());
  EXPECT_EQ(from_push, from_file);
  EXPECT_EQ(from_file.front().rfind("vad.start", 0), 0u) << from_file.front();
}

}  // namespace

TEST(PushAudio, ARecordingPushedInChunksGivesTheSameVoiceTurnAsTheGStreamerFileSource) {
  expect_pushed_turn_equals_file_turn(scripted_options("step_ms=5,words=6"));
}

// The same with the real engine (greedy, so both turns answer alike): the tiny model hears the pushed audio as
// it hears the file source's.
TEST(PushAudio, TheTinyModelAnswersARecordingPushedInChunksAsItAnswersTheFileSource) {
  DaemonOptions o = tiny_model_options();
  o.max_new_tokens = 8;
  o.extra_model_yaml = "  sampling:\n    temperature: 0\n";
  expect_pushed_turn_equals_file_turn(o);
}

TEST(PushAudio, BadRequestsAreRefusedNamingWhatIsWrongAndTheDaemonGoesOn) {
  auto o = scripted_options("step_ms=5,words=2");
  o.input_source = "ipc";
  o.max_message_bytes = 4 << 20;  // room for a PCM frame over push_audio's own limit
  auto d = start_ready(o, 30s);
  const std::string pcm(3200, '\0');
  auto push = [&](json fields, const std::optional<std::string>& binary) {
    fields["cmd"] = "push_audio";
    return d->request(fields, 5000ms, binary);
  };
  json r = push({{"sample_rate", 16000}, {"format", "s16le"}}, std::nullopt);
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("needs a binary frame"), std::string::npos) << r;
  r = push({{"format", "s16le"}}, pcm);
  EXPECT_NE(message(r).find("'sample_rate'"), std::string::npos) << r;
  r = push({{"sample_rate", 4000}, {"format", "s16le"}}, pcm);
  EXPECT_NE(message(r).find("field 'sample_rate' must be an integer in 8000..48000, not 4000"), std::string::npos) << r;
  r = push({{"sample_rate", 96000}, {"format", "s16le"}}, pcm);
  EXPECT_EQ(code(r), "bad_request") << r;
  r = push({{"sample_rate", 16000}, {"format", "u8"}}, pcm);
  EXPECT_NE(message(r).find("field 'format' must be \"s16le\" or \"f32le\""), std::string::npos) << r;
  r = push({{"sample_rate", 16000}, {"format", "s16le"}}, std::string(3, '\0'));
  EXPECT_NE(message(r).find("whole s16le samples"), std::string::npos) << r;
  r = push({{"sample_rate", 16000}, {"format", "f32le"}}, std::string(6, '\0'));
  EXPECT_NE(message(r).find("whole f32le samples"), std::string::npos) << r;
  r = push({{"sample_rate", 16000}, {"format", "s16le"}}, std::string());
  EXPECT_EQ(code(r), "bad_request") << r;
  // One byte over the limit (the request itself stays under ipc.max_message_bytes).
  r = push({{"sample_rate", 16000}, {"format", "s16le"}}, std::string((1u << 20) + 2, '\0'));
  EXPECT_NE(message(r).find("must be 1..1048576 bytes"), std::string::npos) << r;
  r = push({{"sample_rate", 16000}, {"format", "s16le"}, {"channels", 2}}, pcm);
  EXPECT_EQ(code(r), "bad_request") << r;
  // Good ones, at another rate and in floats, go through the resampler.
  const std::vector<float> tone(4410, 0.25f);
  r = push({{"sample_rate", 44100}, {"format", "f32le"}},
           std::string(reinterpret_cast<const char*>(tone.data()), tone.size() * 4));
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_EQ(r["listening"], false);  // listen: false in the test config: dropped, as by a closed microphone
  ASSERT_TRUE(d->request({{"cmd", "listen"}, {"enabled", true}})["ok"].get<bool>());
  r = push({{"sample_rate", 44100}, {"format", "f32le"}},
           std::string(reinterpret_cast<const char*>(tone.data()), tone.size() * 4));
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_EQ(r["listening"], true);
  // 100 ms at 16 kHz, less what the filter still holds.
  EXPECT_GT(r["samples_16k"].get<int>(), 0) << r;
  EXPECT_LE(r["samples_16k"].get<int>(), 1600) << r;
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "listening");
}

TEST(PushAudio, WithTheGStreamerSourcePushAudioIsRefusedNamingTheKey) {
  auto d = start_ready(scripted_options("step_ms=5,words=2"), 30s);
  const auto r = d->request({{"cmd", "push_audio"}, {"sample_rate", 16000}, {"format", "s16le"}}, 5000ms,
                            std::string(320, '\0'));
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("audio.input.source: ipc"), std::string::npos) << r;
}
