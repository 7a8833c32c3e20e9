// End-to-end dialog behaviour that needs exact engine timing: the daemon with its scripted engine
// (omnid_scripted: the real omnid code, the engine replaced by a script). Busy, cancel mid-answer,
// say, reset, set, reload, barge-in, the watchdog and start-up failures.
#include "e2e_harness.h"
#include "audio/io/wav.h"

using namespace e2e;

namespace {

DaemonOptions scripted(const std::string& script = "step_ms=20,words=12") { return scripted_options(script); }
std::unique_ptr<DaemonProcess> start(const DaemonOptions& o) { return start_ready(o, 30s); }

void replace(std::string& s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
}

std::string code(const nlohmann::json& r) { return r.value("/error/code"_json_pointer, std::string("(ok)")); }

}  // namespace

TEST(Dialog, AskWhileBusyCancelMidAnswerThenAskAgain) {
  auto o = scripted("step_ms=50,words=60");  // 3 s per answer
  o.max_new_tokens = 1000;
  auto d = start(o);
  EventLog events(d->events());
  const auto a = d->request({{"cmd", "ask"}, {"text", "long one"}});
  const uint64_t id = a["turn_id"];
  ASSERT_TRUE(events.wait_for("speech.first_audio", 5s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "speaking");
  EXPECT_EQ(code(d->request({{"cmd", "ask"}, {"text", "second"}})), "busy");
  EXPECT_EQ(code(d->request({{"cmd", "say"}, {"text", "second"}})), "busy");
  EXPECT_EQ(code(d->request({{"cmd", "cancel"}, {"turn_id", id + 5}})), "not_found");
  const auto c = d->request({{"cmd", "cancel"}, {"turn_id", id}});
  ASSERT_TRUE(c["ok"].get<bool>()) << c;
  EXPECT_EQ(c["turn_id"], id);
  auto cancelled = events.wait_for("turn.cancelled", 2s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->body["turn_id"], id);
  EXPECT_EQ(cancelled->body["reason"], "request");
  events.pump(500ms);
  // The cancelled answer ends with response.done (stop "cancelled", the text so far), then turn.cancelled;
  // nothing after it (no speech.end).
  const auto names = names_for_turn(events.seen(), id);
  ASSERT_GE(names.size(), 2u);
  EXPECT_EQ(names.back(), "turn.cancelled");
  EXPECT_EQ(names[names.size() - 2], "response.done");
  EXPECT_EQ(std::count(names.begin(), names.end(), "response.done"), 1);
  std::string deltas;
  for (const auto& e : events.seen())
    if (e.name == "response.delta" && e.body["turn_id"] == id) deltas += e.body["text"].get<std::string>();
  for (const auto& e : events.seen())
    if (e.name == "response.done" && e.body["turn_id"] == id) {
      EXPECT_EQ(e.body["stop"], "cancelled");
      EXPECT_EQ(e.body["text"], deltas);
      EXPECT_EQ(e.body["text"].get<std::string>().rfind("You said: long one.", 0), 0u) << e.body;
      EXPECT_GE(e.body["tokens"].get<int>(), 1);
    }
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "idle");
  EXPECT_TRUE(d->request({{"cmd", "cancel"}})["turn_id"].is_null());
  // The next question runs normally.
  const auto b = d->request({{"cmd", "ask"}, {"text", "short"}, {"speak", false}});
  ASSERT_TRUE(b["ok"].get<bool>()) << b;
  auto done = events.wait_for("response.done", 20s, [&](const auto& e) { return e.body["turn_id"] == b["turn_id"]; });
  ASSERT_TRUE(done);
  EXPECT_EQ(done->body["text"].get<std::string>().rfind("You said: short.", 0), 0u) << done->body;
  expect_gap_free(events.seen());
}

TEST(Dialog, SaySpeaksWithoutResponseEvents) {
  auto d = start(scripted());
  EventLog events(d->events());
  const auto r = d->request({{"cmd", "say"}, {"text", "one two three"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  const uint64_t id = r["turn_id"];
  auto end = events.wait_for("speech.end", 10s, [&](const auto& e) { return e.body["turn_id"] == id; });
  ASSERT_TRUE(end);
  EXPECT_EQ(end->body["duration_ms"], 240);  // three 80 ms chunks from the script
  EXPECT_EQ(names_for_turn(events.seen(), id),
            (std::vector<std::string>{"turn.start", "speech.start", "speech.first_audio", "speech.end"}));
}

TEST(Dialog, ResetAndSet) {
  auto d = start(scripted());
  EventLog events(d->events());
  const auto a = d->request({{"cmd", "ask"}, {"text", "hello"}, {"speak", false}});
  ASSERT_TRUE(events.wait_for("response.done", 10s));
  EXPECT_GT(d->request({{"cmd", "status"}})["context_tokens_used"].get<int>(), 0);
  EXPECT_TRUE(d->request({{"cmd", "reset"}})["ok"].get<bool>());
  EXPECT_EQ(d->request({{"cmd", "status"}})["context_tokens_used"], 0);

  EXPECT_EQ(code(d->request({{"cmd", "set"}, {"speaker", "nobody"}})), "not_found");
  const auto s = d->request({{"cmd", "set"}, {"speaker", "chelsie"}, {"volume", 0.25}, {"system_prompt", "Be terse."}});
  ASSERT_TRUE(s["ok"].get<bool>()) << s;
  EXPECT_EQ(s["speaker"], "Chelsie");
  EXPECT_EQ(s["volume"], 0.25);
  EXPECT_EQ(s["system_prompt"], "Be terse.");
  const auto st = d->request({{"cmd", "status"}});
  EXPECT_EQ(st["speaker"], "Chelsie");
  EXPECT_EQ(st["volume"], 0.25);
  // The volume applies to what is written: the script's tone has amplitude 0.3.
  const auto r = d->request({{"cmd", "say"}, {"text", "loud"}});
  auto end = events.wait_for("speech.end", 10s, [&](const auto& e) { return e.body["turn_id"] == r["turn_id"]; });
  ASSERT_TRUE(end);
  const auto wav = omni::audio::read_wav_file(end->body["output"].get<std::string>());
  float peak = 0;
  for (float v : wav.interleaved) peak = std::max(peak, std::abs(v));
  EXPECT_NEAR(peak, 0.3f * 0.25f, 0.002f);
}

TEST(Dialog, ResetThatFailsIsAnErrorAndTheDaemonKeepsServing) {
  auto d = start(scripted("step_ms=20,words=3,reset_fails=1"));
  EventLog events(d->events());
  d->request({{"cmd", "ask"}, {"text", "hello"}, {"speak", false}});
  ASSERT_TRUE(events.wait_for("response.done", 10s));
  const int used = d->request({{"cmd", "status"}})["context_tokens_used"].get<int>();
  ASSERT_GT(used, 0);
  const auto r = d->request({{"cmd", "reset"}});
  EXPECT_EQ(code(r), "internal") << r;
  EXPECT_NE(r.dump().find("reset failed: scripted reset failure"), std::string::npos) << r;
  auto err = events.wait_for("error", 2s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->body["message"].get<std::string>().find("reset failed"), std::string::npos) << err->body;
  // Nothing was forgotten.
  EXPECT_EQ(d->request({{"cmd", "status"}})["context_tokens_used"], used);

  // A new system prompt starts a new conversation, which fails the same way. `set` has replied by then (it
  // does not wait for a running answer); an error event follows and the old prompt stays in effect.
  const auto prompt_before = d->request({{"cmd", "set"}, {"volume", 0.5}})["system_prompt"];
  const auto s = d->request({{"cmd", "set"}, {"system_prompt", "Be terse."}});
  ASSERT_TRUE(s["ok"].get<bool>()) << s;
  auto set_err = events.wait_for("error", 2s, [](const auto& e) {
    return e.body["message"].template get<std::string>().find("set system_prompt failed") != std::string::npos;
  });
  ASSERT_TRUE(set_err);
  EXPECT_EQ(d->request({{"cmd", "set"}, {"volume", 0.5}})["system_prompt"], prompt_before);
  EXPECT_EQ(d->request({{"cmd", "status"}})["context_tokens_used"], used);

  // And the next question is answered.
  const auto b = d->request({{"cmd", "ask"}, {"text", "again"}, {"speak", false}});
  ASSERT_TRUE(b["ok"].get<bool>()) << b;
  EXPECT_TRUE(events.wait_for("response.done", 10s, [&](const auto& e) { return e.body["turn_id"] == b["turn_id"]; }));
}

TEST(Dialog, ReloadPutsTheFilesSystemPromptBackIntoTheEngine) {
  auto d = start(scripted("step_ms=20,words=3"));
  EventLog events(d->events());
  const std::string file_prompt = d->request({{"cmd", "set"}, {"volume", 1.0}})["system_prompt"];
  ASSERT_TRUE(d->request({{"cmd", "set"}, {"system_prompt", "Be terse."}})["ok"].get<bool>());
  d->request({{"cmd", "ask"}, {"text", "hello"}, {"speak", false}});
  ASSERT_TRUE(events.wait_for("response.done", 10s));
  ASSERT_GT(d->request({{"cmd", "status"}})["context_tokens_used"].get<int>(), 0);
  // The file did not change, but the prompt in effect did: the file's comes back, with a new conversation.
  ASSERT_TRUE(d->request({{"cmd", "reload"}})["ok"].get<bool>());
  EXPECT_EQ(d->request({{"cmd", "set"}, {"volume", 1.0}})["system_prompt"], file_prompt);
  int used = -1;
  for (int i = 0; i < 100 && used != 0; ++i, std::this_thread::sleep_for(20ms))
    used = d->request({{"cmd", "status"}})["context_tokens_used"].get<int>();
  EXPECT_EQ(used, 0) << "the engine still holds the conversation of the other prompt";
}

TEST(Dialog, ReloadAppliesAGoodFileAndKeepsTheRunningOneOnABadFile) {
  auto d = start(scripted());
  EventLog events(d->events());
  // Good file: a new speaker and volume take effect; a changed model.path needs a restart.
  std::string yaml = d->default_config();
  replace(yaml, "  max_new_tokens: 64\n", "  max_new_tokens: 64\n  speaker: chelsie\n");
  replace(yaml, "    backend: wav-file\n", "    backend: wav-file\n    volume: 0.5\n");
  d->write_config(yaml);
  size_t mark = d->notify().count();
  const auto ok = d->request({{"cmd", "reload"}});
  ASSERT_TRUE(ok["ok"].get<bool>()) << ok;
  EXPECT_TRUE(ok["restart_required"].empty()) << ok;
  EXPECT_TRUE(d->notify().wait_for("RELOADING=1", 1s, mark));
  EXPECT_TRUE(d->notify().wait_for("READY=1", 1s, mark));
  auto st = d->request({{"cmd", "status"}});
  EXPECT_EQ(st["speaker"], "chelsie");
  EXPECT_EQ(st["volume"], 0.5);

  // Bad file: `unavailable` naming key and line, an error event, the old settings stay.
  d->write_config(yaml + "bogus_section: 1\n");
  const auto bad = d->request({{"cmd", "reload"}});
  EXPECT_EQ(code(bad), "unavailable");
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("bogus_section: unknown key"), std::string::npos) << bad;
  auto err = events.wait_for("error", 2s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->body["message"].get<std::string>().find("omnid.yaml:"), std::string::npos);
  EXPECT_EQ(d->request({{"cmd", "status"}})["volume"], 0.5);

  // SIGHUP reloads the same way (here: the bad file again -> another error event, still serving).
  mark = d->notify().count();
  d->signal(SIGHUP);
  EXPECT_TRUE(d->notify().wait_for("RELOADING=1", 2s, mark));
  EXPECT_TRUE(events.wait_for("error", 2s));
  EXPECT_TRUE(d->request({{"cmd", "ping"}})["ok"].get<bool>());

  // A key that needs a restart is reported and not applied.
  std::string moved = yaml;
  replace(moved, "scripted:", "scripted:load_ms=0,");
  d->write_config(moved);
  const auto r = d->request({{"cmd", "reload"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_EQ(r["restart_required"], nlohmann::json::array({"model.path"}));
}

TEST(Dialog, BargeInCancelsTheAnswerAndTheNewUtteranceIsTheNextTurn) {
  // two_questions.wav: question A at 2.0-3.8 s, question B at 6.3-8.5 s. The answer to A lasts
  // 200 x 40 ms = 8 s, so B is spoken over it.
  auto o = scripted("step_ms=40,words=200");
  o.input_pipeline = "filesrc location=" + data_file("two_questions.wav") + " ! wavparse";
  o.barge_in = true;
  o.max_new_tokens = 1000;
  auto d = start(o);
  EventLog events(d->events());
  d->request({{"cmd", "listen"}, {"enabled", true}});
  auto first = events.wait_for("turn.start", 10s);
  ASSERT_TRUE(first);
  const uint64_t a = first->body["turn_id"];
  auto cancelled = events.wait_for("turn.cancelled", 10s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->body["turn_id"], a);
  EXPECT_EQ(cancelled->body["reason"], "barge_in");
  auto second = events.wait_for("turn.start", 10s);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body["source"], "voice");
  EXPECT_GT(second->body["turn_id"].get<uint64_t>(), a);
  // The barge-in came from a vad.start while the first turn ran; the unfinished answer ended with its
  // response.done (stop cancelled) right before turn.cancelled.
  std::vector<std::string> names;
  for (const auto& e : events.seen())
    if (e.name != "heartbeat" && e.name != "state") names.push_back(e.name);
  auto it = std::find(names.begin(), names.end(), "turn.cancelled");
  ASSERT_GE(it - names.begin(), 2);
  EXPECT_EQ(*(it - 1), "response.done");
  EXPECT_EQ(*(it - 2), "vad.start");
  for (const auto& e : events.seen())
    if (e.name == "response.done" && e.body["turn_id"] == a) {
      EXPECT_EQ(e.body["stop"], "cancelled") << e.body;
    }
}

TEST(Dialog, WithoutBargeInTheMicrophoneIsIgnoredDuringATurn) {
  auto o = scripted("step_ms=40,words=200");
  o.input_pipeline = "filesrc location=" + data_file("two_questions.wav") + " ! wavparse";
  o.barge_in = false;
  o.max_new_tokens = 1000;
  auto d = start(o);
  EventLog events(d->events());
  d->request({{"cmd", "listen"}, {"enabled", true}});
  ASSERT_TRUE(events.wait_for("turn.start", 10s));
  events.pump(6s);  // B is spoken during this answer
  for (const auto& e : events.seen()) EXPECT_NE(e.name, "turn.cancelled");
  EXPECT_EQ(std::count_if(events.seen().begin(), events.seen().end(), [](const auto& e) { return e.name == "vad.start"; }), 1);
}

TEST(Dialog, WatchdogPingsWhileHealthyAndStopsWhenTheEngineHangs) {
  auto o = scripted("step_ms=20,words=50,hang_at=3");
  o.watchdog_usec = 1'000'000;
  auto d = start(o);
  std::this_thread::sleep_for(1500ms);
  auto pings = [&] {
    int n = 0;
    for (const auto& m : d->notify().all()) n += m.text == "WATCHDOG=1";
    return n;
  };
  EXPECT_GE(pings(), 3);  // at a third of WatchdogSec
  d->request({{"cmd", "ask"}, {"text", "hang"}});
  std::this_thread::sleep_for(1500ms);  // the engine hangs at its 4th word: no progress after ~80 ms
  const int at_hang = pings();
  std::this_thread::sleep_for(2000ms);
  EXPECT_EQ(pings(), at_hang) << "pings went on with a stuck engine";
  // SIGTERM with a stuck engine still ends the process (not cleanly: exit 1 after 3 s).
  std::chrono::milliseconds took{};
  EXPECT_EQ(d->stop(SIGTERM, 5s, &took), 1);
}

TEST(Dialog, ExtendsTheStartTimeoutWhileLoading) {
  auto d = std::make_unique<DaemonProcess>(scripted("load_ms=1500"));
  d->start();
  EXPECT_TRUE(d->notify().wait_for("EXTEND_TIMEOUT_USEC=", 1s));
  const auto st = d->request({{"cmd", "status"}});
  EXPECT_EQ(st["state"], "loading");
  EXPECT_EQ(code(d->request({{"cmd", "ask"}, {"text", "too early"}})), "unavailable");
  EXPECT_TRUE(d->wait_ready(10s));
}

TEST(Dialog, LoadFailureExitsNonZeroWithoutReady) {
  auto d = std::make_unique<DaemonProcess>(scripted("fail=1"));
  d->start();
  EXPECT_EQ(d->wait_exit(10s), 1);
  EXPECT_FALSE(d->notify().wait_for("READY=1", 10ms));
  EXPECT_NE(d->log().find("cannot load the model"), std::string::npos) << d->log();
}

TEST(Dialog, BadConfigDoesNotStartAndNamesKeyAndLine) {
  auto d = std::make_unique<DaemonProcess>(scripted());
  d->write_config(d->default_config() + "extra: 1\n");
  d->start();
  EXPECT_EQ(d->wait_exit(5s), 1);
  EXPECT_NE(d->log().find("extra: unknown key"), std::string::npos) << d->log();
  EXPECT_NE(d->log().find("omnid.yaml:"), std::string::npos) << d->log();
}

TEST(Dialog, SpeaksThroughPortAudioToANamedAlsaDevice) {
  // An ALSA null sink that PortAudio lists by name, from a ~/.asoundrc in the daemon's own HOME.
  char tmpl[] = "/tmp/omnid_alsa_XXXXXX";
  const std::string home = ::mkdtemp(tmpl);
  std::ofstream(home + "/.asoundrc") << "pcm.omnid_test_sink {\n  type null\n  hint { show on description \"t\" }\n}\n";
  auto o = scripted();
  o.output_yaml = "    backend: portaudio\n    device: omnid_test_sink\n";
  o.env = {{"HOME", home}};
  auto d = start(o);
  EventLog events(d->events());
  const auto r = d->request({{"cmd", "say"}, {"text", "through the sound card"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  auto end = events.wait_for("speech.end", 10s, [&](const auto& e) { return e.body["turn_id"] == r["turn_id"]; });
  ASSERT_TRUE(end);
  EXPECT_EQ(end->body["output"], "omnid_test_sink");
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
  std::system(("rm -rf " + home).c_str());
}

TEST(Dialog, UnknownPortAudioDeviceStopsTheStartWithTheDeviceList) {
  auto o = scripted();
  o.output_yaml = "    backend: portaudio\n    device: no such card\n";
  auto d = std::make_unique<DaemonProcess>(o);
  d->start();
  EXPECT_EQ(d->wait_exit(10s), 1);
  EXPECT_NE(d->log().find("audio.output.device 'no such card'"), std::string::npos) << d->log();
}

// A dead audio input is not fatal: it is rebuilt with backoff while the watchdog keeps being fed;
// tests/integration/e2e_faults.cpp covers it (Faults.FailingAudioInputIsRebuiltWithGrowingBackoff).

TEST(Dialog, DeviceErrorInTheEngineExitsForARestart) {
  auto d = start(scripted("step_ms=20,words=20,device_error_at=3"));
  EventLog events(d->events());
  d->request({{"cmd", "ask"}, {"text", "crash"}});
  auto err = events.wait_for("error", 5s);
  ASSERT_TRUE(err);
  EXPECT_NE(err->body["message"].get<std::string>().find("illegal memory access"), std::string::npos) << err->body;
  EXPECT_EQ(d->wait_exit(5s), 1);  // systemd's Restart=on-failure brings it back with a fresh context
}
