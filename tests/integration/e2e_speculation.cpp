// Speculative turns end to end (docs/config.md, audio.vad.speculate_after_ms): the real daemon hears a
// recording; a pause inside the utterance starts a speculation that speech resuming takes back without a
// trace; the endpoint commits the speculation, whose audio then plays at once.
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "audio/io/wav.h"
#include "e2e_harness.h"

using namespace e2e;

namespace {

struct Heard {
  std::vector<omni::ipc::Event> events;
  std::vector<uint64_t> turns;  // turn.start ids
  int64_t audio_ms = -1;        // turn.start's audio_ms of the first turn
  std::string text;             // response.done of the (first) turn
  std::vector<std::string> transcripts;  // user.transcript texts
  std::vector<char> wav;        // the speech output of the first turn, as written
  omni::ipc::Event first_audio;
  std::string log;
};

std::string vad_yaml(int speculate_after_ms) {
  return "  vad:\n    end_silence_ms: 700\n    speculate_after_ms: " + std::to_string(speculate_after_ms) + "\n";
}

// Plays `recording` to the daemon once and collects everything until the turn's speech ended and the
// recording is over.
Heard hear(DaemonOptions o, const std::string& recording, int speculate_after_ms) {
  o.input_pipeline = "filesrc location=" + data_file(recording) + " ! wavparse";
  o.extra_audio_yaml = vad_yaml(speculate_after_ms);
  auto d = start_ready(o);
  Heard r;
  EventLog events(d->events());
  EXPECT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
  auto end = events.wait_for("speech.end", 120s);
  EXPECT_TRUE(end) << d->log();
  if (!end) return r;
  // user.transcript (model.user_transcript, on by default) runs on the engine after the answer: it may come
  // before or after speech.end, so wait for it when it has not come yet.
  const auto& so_far = events.seen();
  if (std::none_of(so_far.begin(), so_far.end(), [](const omni::ipc::Event& e) { return e.name == "user.transcript"; })) {
    EXPECT_TRUE(events.wait_for("user.transcript", 60s)) << d->log();
  }
  events.pump(1500ms);  // the recording's tail: no second turn may come
  r.events = events.seen();
  for (const auto& e : r.events) {
    if (e.name == "turn.start") {
      if (r.turns.empty()) r.audio_ms = e.body["audio_ms"];
      r.turns.push_back(e.body["turn_id"]);
    }
    if (e.name == "response.done" && r.text.empty()) r.text = e.body["text"];
    if (e.name == "user.transcript") r.transcripts.push_back(e.body["text"]);
    if (e.name == "speech.first_audio" && r.first_audio.name.empty()) r.first_audio = e;
  }
  std::ifstream in(end->body["output"].get<std::string>(), std::ios::binary);
  r.wav.assign(std::istreambuf_iterator<char>(in), {});
  EXPECT_EQ(d->stop(SIGTERM, 10s), 0);
  r.log = d->log();
  return r;
}

// Names of the events from the first vad.start on, heartbeats, states and deltas left out (how many
// deltas come before speech.start depends on timing), and user.transcript too (it comes after the answer, before
// or after speech.end: Heard::transcripts holds it); and the deltas' text.
std::vector<std::string> dialog(const Heard& r) {
  std::vector<std::string> names;
  for (const auto& e : r.events)
    if (e.name != "heartbeat" && e.name != "state" && e.name != "response.delta" && e.name != "user.transcript" &&
        (!names.empty() || e.name == "vad.start"))
      names.push_back(e.name);
  return names;
}
std::string deltas(const Heard& r) {
  std::string text;
  for (const auto& e : r.events)
    if (e.name == "response.delta") text += e.body["text"].get<std::string>();
  return text;
}

bool have_tiny_model() {
  struct stat st {};
  return ::stat((std::string(OMNI_BUILD_DIR) + "/models/tiny-a/config.json").c_str(), &st) == 0;
}

DaemonOptions tiny_model() {
  DaemonOptions o = tiny_model_options();
  o.max_new_tokens = 12;
  return o;
}

}  // namespace

// paused_question.wav: "What is the capital" (1.0-2.1 s), a 0.5 s pause (longer than speculate_after_ms
// 300, shorter than end_silence_ms 700), "of France?" (2.6-3.4 s). The real model on the tiny checkpoint.
TEST(Speculation, PauseInsideAnUtteranceGivesOneTurnWithTheSameAnswerAsWithout) {
  if (!have_tiny_model()) GTEST_SKIP() << "no tiny model at " << OMNI_BUILD_DIR << "/models/tiny-a";
  const Heard on = hear(tiny_model(), "paused_question.wav", 300);
  const Heard off = hear(tiny_model(), "paused_question.wav", 0);

  // One turn covering both parts (the second part ends at 3.4 s; with the 300 ms pre-roll and the 200 ms
  // kept after speech the clip is > 2.5 s), in both runs.
  ASSERT_EQ(on.turns.size(), 1u) << on.log;
  ASSERT_EQ(off.turns.size(), 1u) << off.log;
  const std::vector<std::string> names = dialog(on);
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(std::count(names.begin(), names.end(), "vad.end"), 1);
  EXPECT_GT(on.audio_ms, 2500);
  EXPECT_EQ(on.audio_ms, off.audio_ms);  // the same utterance, so the same answer is expected

  // The pause did start a speculation, speech resuming dropped it, and the endpoint committed the next one.
  EXPECT_NE(on.log.find("speculative turn dropped (speech resumed)"), std::string::npos) << on.log;
  EXPECT_NE(on.log.find("committed from a speculation"), std::string::npos) << on.log;
  EXPECT_EQ(off.log.find("speculative"), std::string::npos) << off.log;

  // Nothing published before the endpoint: the first event after vad.start is vad.end, then the turn in
  // the usual order; the same order as without speculation.
  EXPECT_EQ(names[0], "vad.start");
  EXPECT_EQ(names[1], "vad.end");
  EXPECT_EQ(names[2], "turn.start");
  EXPECT_EQ(names, dialog(off));
  EXPECT_EQ(on.transcripts.size(), 1u);
  EXPECT_EQ(on.transcripts, off.transcripts);

  // The same answer: text and the speech, byte for byte (greedy, the same audio, the same conversation).
  EXPECT_FALSE(on.text.empty());
  EXPECT_EQ(on.text, off.text);
  EXPECT_EQ(deltas(on), on.text);
  EXPECT_GT(on.wav.size(), 44u);
  EXPECT_TRUE(on.wav == off.wav) << on.wav.size() << " vs " << off.wav.size() << " bytes";
  EXPECT_EQ(on.first_audio.body["speculative"], true);
  EXPECT_EQ(off.first_audio.body["speculative"], false);
}

// A clean end with a slow engine (scripted: the first audio comes 300 ms after the turn starts). With
// speculation after 200 ms of silence the answer is ready 200 ms before the endpoint (end_silence_ms 700):
// first audio within a few tens of ms of it; without, the endpoint plus the engine's 300 ms.
TEST(Speculation, CleanEndPlaysTheFirstAudioAtTheEndpoint) {
  const DaemonOptions o = scripted_options("step_ms=300,words=3");
  const Heard on = hear(o, "one_question.wav", 200);
  const Heard off = hear(o, "one_question.wav", 0);
  ASSERT_EQ(on.turns.size(), 1u) << on.log;
  ASSERT_EQ(off.turns.size(), 1u) << off.log;
  ASSERT_TRUE(on.first_audio.body.contains("since_speech_end_ms")) << on.first_audio.body.dump();
  ASSERT_TRUE(off.first_audio.body.contains("since_speech_end_ms")) << off.first_audio.body.dump();
  // since_speech_end_ms counts from the last voiced frame; the endpoint is end_silence_ms (700) later.
  const int64_t on_after_endpoint = on.first_audio.body["since_speech_end_ms"].get<int64_t>() - 700;
  const int64_t off_after_endpoint = off.first_audio.body["since_speech_end_ms"].get<int64_t>() - 700;
  EXPECT_LT(on_after_endpoint, 100) << on.first_audio.body.dump();
  EXPECT_GE(off_after_endpoint, 300) << off.first_audio.body.dump();
  EXPECT_EQ(on.first_audio.body["speculative"], true);
  // The answer is the answer to the whole utterance (the scripted engine echoes the clip's length).
  EXPECT_EQ(on.text, "(heard " + std::to_string(on.audio_ms) + " ms) word0 word1 word2");
  EXPECT_EQ(on.audio_ms, off.audio_ms);
  EXPECT_EQ(on.text, off.text);
  EXPECT_EQ(deltas(on), deltas(off));
  EXPECT_EQ(dialog(on), dialog(off));
  EXPECT_EQ(on.transcripts.size(), 1u);
  EXPECT_EQ(on.transcripts, off.transcripts);
}

// status reports recent end-of-speech -> first-audio percentiles for voice turns.
TEST(Speculation, StatusReportsFirstAudioPercentiles) {
  auto o = scripted_options("step_ms=20,words=3");
  o.input_pipeline = "filesrc location=" + data_file("one_question.wav") + " ! wavparse";
  auto d = start_ready(o);
  EventLog events(d->events());
  auto before = d->request({{"cmd", "status"}});
  EXPECT_EQ(before["first_audio"]["since_speech_end_ms"]["count"], 0) << before.dump();
  EXPECT_TRUE(before["first_audio"]["since_speech_end_ms"]["p50"].is_null());
  d->request({{"cmd", "listen"}, {"enabled", true}});
  auto first = events.wait_for("speech.first_audio", 30s);
  ASSERT_TRUE(first);
  events.wait_for("speech.end", 30s);
  auto after = d->request({{"cmd", "status"}});
  const auto& s = after["first_audio"]["since_speech_end_ms"];
  EXPECT_EQ(s["count"], 1) << after.dump();
  EXPECT_EQ(s["p50"], first->body["since_speech_end_ms"]);
  EXPECT_EQ(s["p99"], first->body["since_speech_end_ms"]);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}
