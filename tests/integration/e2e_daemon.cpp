// End-to-end: the daemon process, a recording as its microphone, a WAV file as its speaker, a real
// ZeroMQ client. Each test runs twice: with the real omnid on the tiny model (skipped, with the
// reason, when ${BUILD}/models/tiny-a is absent) and with omnid_scripted (same daemon, scripted engine).
#include <sys/stat.h>

#include "e2e_harness.h"
#include "audio/io/wav.h"

using namespace e2e;

namespace {

struct Engine {
  std::string name;
  bool scripted;
};
void PrintTo(const Engine& e, std::ostream* os) { *os << e.name; }

class DaemonE2E : public ::testing::TestWithParam<Engine> {
 protected:
  DaemonOptions options(const std::string& script = "step_ms=20,words=12") {
    DaemonOptions o;
    if (GetParam().scripted) {
      o = scripted_options(script);
    } else {
      o.binary = OMNID_BINARY;
      o.model_path = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";
    }
    return o;
  }
  void SetUp() override {
    struct stat st {};
    if (!GetParam().scripted && ::stat((std::string(OMNI_BUILD_DIR) + "/models/tiny-a/config.json").c_str(), &st) != 0)
      GTEST_SKIP() << "no tiny model at " << OMNI_BUILD_DIR << "/models/tiny-a (the engine build assembles it)";
  }
  // Starts the daemon and waits for READY=1.
  std::unique_ptr<DaemonProcess> start(const DaemonOptions& o) { return start_ready(o); }
};

std::string engine_name(const ::testing::TestParamInfo<Engine>& info) { return info.param.name; }

}  // namespace

INSTANTIATE_TEST_SUITE_P(Engines, DaemonE2E, ::testing::Values(Engine{"tiny_model", false}, Engine{"scripted", true}),
                         engine_name);

TEST_P(DaemonE2E, ReadyOnNotifySocketThenStatus) {
  auto d = start(options());
  bool status_line = false;
  for (const auto& n : d->notify().all()) status_line = status_line || n.text.find("STATUS=") != std::string::npos;
  EXPECT_TRUE(status_line);
  const auto r = d->request({{"cmd", "status"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_EQ(r["state"], "idle");  // listen: false in the test config
  EXPECT_EQ(r["model"]["loaded"], true);
  EXPECT_EQ(r["protocol"], 2);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_P(DaemonE2E, SpokenTurnEventsInOrderWithGapFreeSeq) {
  auto o = options();
  o.input_pipeline = "filesrc location=" + data_file("one_question.wav") + " ! wavparse";
  auto d = start(o);
  EventLog events(d->events());
  // The microphone opens now, so the recording starts playing after the subscription.
  ASSERT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
  auto start_ev = events.wait_for("turn.start", 20s);
  ASSERT_TRUE(start_ev);
  EXPECT_EQ(start_ev->body["source"], "voice");
  const uint64_t id = start_ev->body["turn_id"];
  auto done = events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(done);
  auto end = events.wait_for("speech.end", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(end);
  events.pump(300ms);
  const auto& seen = events.seen();
  expect_gap_free(seen);

  // Order: vad.start < vad.end < turn.start < response.delta... < response.done, and
  // speech.start < speech.first_audio < speech.end, with speech.end last (playback drains after the text).
  // user.transcript runs on the engine after the answer and may come before or after speech.end: it is checked
  // apart (after response.done).
  std::vector<std::string> order;
  uint64_t done_seq = 0, transcript_seq = 0;
  for (const auto& e : seen) {
    const bool mine = e.body.contains("turn_id") && e.body["turn_id"] == id;
    if (mine && e.name == "response.done") done_seq = e.body["seq"];
    if (mine && e.name == "user.transcript") transcript_seq = e.body["seq"];
    if (e.name == "vad.start" || e.name == "vad.end" || (mine && e.name != "user.transcript")) order.push_back(e.name);
  }
  if (transcript_seq) {
    EXPECT_GT(transcript_seq, done_seq);
  }
  auto pos = [&](const std::string& n) { return std::find(order.begin(), order.end(), n) - order.begin(); };
  ASSERT_LT(pos("vad.start"), pos("vad.end"));
  ASSERT_LT(pos("vad.end"), pos("turn.start"));
  // Stream positions map to both clocks: a file source plays in real time, so the time between the mapped
  // moments equals the stream time between them; each mapped moment precedes its event.
  const auto& vs = *std::find_if(seen.begin(), seen.end(), [](const auto& e) { return e.name == "vad.start"; });
  const auto& ve = *std::find_if(seen.begin(), seen.end(), [](const auto& e) { return e.name == "vad.end"; });
  const int64_t stream_span = ve.body["stream_ms"].get<int64_t>() - vs.body["stream_ms"].get<int64_t>();
  EXPECT_NEAR(ve.body["at_mono_ms"].get<int64_t>() - vs.body["at_mono_ms"].get<int64_t>(), stream_span, 250);
  EXPECT_NEAR(ve.body["at_ts_ms"].get<int64_t>() - vs.body["at_ts_ms"].get<int64_t>(), stream_span, 250);
  EXPECT_LE(vs.body["at_mono_ms"].get<int64_t>(), vs.body["mono_ms"].get<int64_t>());
  EXPECT_LE(ve.body["at_mono_ms"].get<int64_t>(), ve.body["mono_ms"].get<int64_t>());
  EXPECT_GT(vs.body["at_mono_ms"].get<int64_t>(), vs.body["mono_ms"].get<int64_t>() - 2000);
  ASSERT_LT(pos("turn.start"), pos("response.delta"));
  ASSERT_LT(pos("response.delta"), pos("response.done"));
  ASSERT_LT(pos("speech.start"), pos("speech.first_audio"));
  ASSERT_LT(pos("turn.start"), pos("speech.start"));
  EXPECT_EQ(order.back(), "speech.end");
  size_t last_delta = 0;
  for (size_t i = 0; i < order.size(); ++i)
    if (order[i] == "response.delta") last_delta = i;
  EXPECT_LT(last_delta, static_cast<size_t>(pos("response.done")));

  // The deltas add up to the final text; the speech went to the WAV file named in speech.end.
  std::string text;
  for (const auto& e : seen)
    if (e.name == "response.delta" && e.body["turn_id"] == id) text += e.body["text"].get<std::string>();
  EXPECT_EQ(text, done->body["text"].get<std::string>());
  const std::string wav_path = end->body["output"];
  const auto wav = omni::audio::read_wav_file(wav_path);
  EXPECT_EQ(wav.sample_rate, 24000);
  EXPECT_GT(wav.frames(), 0u);
  EXPECT_NEAR(end->body["duration_ms"].get<double>(), wav.frames() / 24.0, 1.0);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_P(DaemonE2E, AskTextAnswersWithEvents) {
  auto d = start(options());
  EventLog events(d->events());
  const auto r = d->request({{"cmd", "ask"}, {"text", "What is the capital of France?"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  const uint64_t id = r["turn_id"];
  auto done = events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(done);
  EXPECT_GT(done->body["tokens"].get<int>(), 0);
  events.wait_for("speech.end", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  const auto names = names_for_turn(events.seen(), id);
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "turn.start");
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "idle");
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_P(DaemonE2E, AskWithWavFrame) {
  auto d = start(options());
  EventLog events(d->events());
  std::ifstream in(data_file("one_question.wav"), std::ios::binary);
  const std::string wav((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto r = d->request({{"cmd", "ask"}, {"speak", false}}, 5s, wav);
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  const uint64_t id = r["turn_id"];
  auto start_ev = events.wait_for("turn.start", 10s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(start_ev);
  EXPECT_NEAR(start_ev->body["audio_ms"].get<double>(), 4265, 20);  // the recording: 1 s + 1.765 s + 1.5 s
  ASSERT_TRUE(events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  events.pump(200ms);
  for (const auto& n : names_for_turn(events.seen(), id)) EXPECT_EQ(n.rfind("speech.", 0), std::string::npos) << n;
  // A frame that is not a WAV file is refused with the reason.
  const auto bad = d->request({{"cmd", "ask"}}, 5s, std::string("RIFF\x04\x00\x00\x00WAVX", 12));
  EXPECT_EQ(bad["error"]["code"], "bad_request") << bad;
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_P(DaemonE2E, MalformedRequestsGetErrorsAndTheDaemonKeepsServing) {
  auto d = start(options());
  auto& c = d->client();
  auto code = [](const nlohmann::json& r) { return r["error"]["code"].get<std::string>(); };
  EXPECT_EQ(code(c.request_raw({"this is not json"}, 3s)), "bad_request");
  EXPECT_EQ(code(c.request_raw({R"({"id": 1, "cmd": "fly"})"}, 3s)), "unknown_command");
  EXPECT_EQ(code(c.request_raw({R"({"id": 2, "cmd": "ask", "text": 5})"}, 3s)), "bad_request");
  EXPECT_EQ(code(c.request_raw({R"({"id": 3, "cmd": "listen", "enabled": "yes"})"}, 3s)), "bad_request");
  EXPECT_EQ(code(c.request_raw({R"({"id": 4, "cmd": "set", "volume": 7})"}, 3s)), "bad_request");
  EXPECT_EQ(code(c.request_raw({R"([1, 2, 3])"}, 3s)), "bad_request");
  const std::string big = R"({"id": 5, "cmd": "ask", "text": ")" + std::string(300000, 'a') + "\"}";
  EXPECT_EQ(code(c.request_raw({big}, 3s)), "too_large");
  const auto ping = d->request({{"cmd", "ping"}});
  EXPECT_TRUE(ping["ok"].get<bool>()) << ping;
  EXPECT_EQ(d->request({{"cmd", "status"}})["ok"], true);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST_P(DaemonE2E, SigtermMidAnswerExitsZeroWithinFiveSeconds) {
  auto o = options("step_ms=100,words=400");
  o.max_new_tokens = 1000;
  auto d = start(o);
  EventLog events(d->events());
  const auto r = d->request({{"cmd", "ask"}, {"text", "Tell me a long story."}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  const uint64_t id = r["turn_id"];
  if (GetParam().scripted) {
    // The scripted engine answers for as long as it is told: the turn is surely mid-answer.
    ASSERT_TRUE(events.wait_for("response.delta", 30s, [&](const auto& e) { return e.body["turn_id"] == id; }));
    ASSERT_EQ(d->request({{"cmd", "status"}})["turn_id"], id) << "the answer ended before SIGTERM";
  }
  // The tiny model (random weights, boosted end-of-turn rows) may finish its answer within a few
  // tens of milliseconds, so it gets SIGTERM right after `ask` is accepted, while the turn starts.
  const size_t before = d->notify().count();
  std::chrono::milliseconds took{};
  EXPECT_EQ(d->stop(SIGTERM, 5s, &took), 0) << d->log();
  EXPECT_LT(took.count(), 5000);
  EXPECT_TRUE(d->notify().wait_for("STOPPING=1", 100ms, before));
}

TEST_P(DaemonE2E, CancelMidAnswerSayResetSetListen) {
  auto o = options("step_ms=50,words=100");
  o.max_new_tokens = 1000;
  auto d = start(o);
  EventLog events(d->events());
  auto code = [](const nlohmann::json& r) { return r.value("/error/code"_json_pointer, std::string("(ok)")); };

  // cancel mid-answer: the turn is still running when cancelled; nothing of it follows turn.cancelled.
  const auto a = d->request({{"cmd", "ask"}, {"text", "Tell me everything."}});
  ASSERT_TRUE(a["ok"].get<bool>()) << a;
  const uint64_t id = a["turn_id"];
  ASSERT_TRUE(events.wait_for("response.delta", 30s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  EXPECT_EQ(code(d->request({{"cmd", "ask"}, {"text", "again"}})), "busy");
  const auto c = d->request({{"cmd", "cancel"}});
  ASSERT_EQ(c["turn_id"], id) << c;
  ASSERT_TRUE(events.wait_for("turn.cancelled", 2s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  events.pump(500ms);
  EXPECT_EQ(names_for_turn(events.seen(), id).back(), "turn.cancelled");

  // say: speech only.
  const auto s = d->request({{"cmd", "say"}, {"text", "Hello from omnid."}});
  ASSERT_TRUE(s["ok"].get<bool>()) << s;
  auto end = events.wait_for("speech.end", 60s, [&](const auto& e) { return e.body["turn_id"] == s["turn_id"]; });
  ASSERT_TRUE(end);
  for (const auto& n : names_for_turn(events.seen(), s["turn_id"])) EXPECT_EQ(n.rfind("response.", 0), std::string::npos);

  // set and reset.
  EXPECT_EQ(code(d->request({{"cmd", "set"}, {"speaker", "nobody"}})), "not_found");
  const auto set = d->request({{"cmd", "set"}, {"speaker", "CHELSIE"}, {"volume", 0.5}});
  ASSERT_TRUE(set["ok"].get<bool>()) << set;
  EXPECT_EQ(set["speaker"].get<std::string>().size(), 7u);
  EXPECT_TRUE(d->request({{"cmd", "reset"}})["ok"].get<bool>());  // replied once the engine thread has reset
  EXPECT_EQ(d->request({{"cmd", "status"}})["context_tokens_used"], 0);

  // listen toggles the microphone and the state.
  EXPECT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "listening");
  EXPECT_EQ(d->request({{"cmd", "listen"}, {"enabled", false}})["listening"], false);
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "idle");
  expect_gap_free(events.seen());
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}
