// Protocol 2 against the real omnid (omnid_scripted: the daemon's code with a scripted engine, and the tiny
// model where the engine matters): nothing missed (instance and seq in every reply, `events since`, the slow
// joiner, turn ids across restarts, daemon.* events, deadline_ms, no request queued for an absent daemon), a
// cancelled answer's response.done, limits said up front (context_full), voices, monotonic timestamps, and a
// version-1 client from the old examples.
#include <fstream>
#include <iterator>
#include <set>

#include "e2e_harness.h"

using namespace e2e;
using nlohmann::json;

namespace {

std::string code(const json& r) { return r.value("/error/code"_json_pointer, std::string("(ok)")); }

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Waits for response.done of `turn_id` through `events since` polling (no subscription at all).
json wait_done_by_polling(DaemonProcess& d, uint64_t turn_id, uint64_t since) {
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    const auto r = d.request({{"cmd", "events"}, {"since", since}, {"topics", {"response.done"}}});
    for (const auto& e : r["events"])
      if (e["turn_id"] == turn_id) return e;
    std::this_thread::sleep_for(10ms);
  }
  return nullptr;
}

}  // namespace

TEST(Protocol2, EveryReplyCarriesTheInstanceAndTheLastSeq) {
  auto d = start_ready(scripted_options("step_ms=5,words=2"), 30s);
  const auto st = d->request({{"cmd", "status"}});
  const std::string instance = st["instance"];
  EXPECT_EQ(instance.size(), 16u) << st;
  EXPECT_EQ(st["protocol"], 2);
  EXPECT_EQ(st["protocols"], json::array({1, 2}));
  EXPECT_GE(st["seq"].get<uint64_t>(), 1u);  // daemon.loading / daemon.ready at least
  for (const json& req : {json{{"cmd", "ping"}}, json{{"cmd", "nope"}}, json{{"cmd", "cancel"}},
                          json{{"cmd", "set"}, {"volume", 5}}, json{{"cmd", "events"}, {"since", 0}}}) {
    const auto r = d->request(req);
    EXPECT_EQ(r["instance"], instance) << r;
    EXPECT_TRUE(r["seq"].is_number_unsigned()) << r;
  }
  EXPECT_EQ(d->request({{"cmd", "ping"}})["protocols"], json::array({1, 2}));
  EXPECT_EQ(code(d->request({{"cmd", "status"}, {"protocol", 3}})), "bad_request");
  EXPECT_EQ(d->request({{"cmd", "status"}, {"protocol", 1}})["state"], "idle");
}

TEST(Protocol2, EventsSinceReturnsExactlyWhatWasPublishedAfterASeq) {
  auto d = start_ready(scripted_options("step_ms=5,words=3"), 30s);
  EventLog live(d->events());
  const uint64_t before = d->request({{"cmd", "status"}})["seq"];
  const auto a = d->request({{"cmd", "ask"}, {"text", "hello"}, {"speak", false}});
  ASSERT_TRUE(a["ok"].get<bool>()) << a;
  ASSERT_TRUE(live.wait_for("response.done", 10s));
  const auto r = d->request({{"cmd", "events"}, {"since", before}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_TRUE(r["complete"].get<bool>());
  // The live subscriber reads on to the seq of that reply (events after response.done, e.g. the state change).
  const uint64_t upto = r["seq"];
  for (const auto until = Clock::now() + 5s; Clock::now() < until;) {
    if (!live.seen().empty() && live.seen().back().body["seq"].get<uint64_t>() >= upto) break;
    live.pump(20ms);
  }
  // The same events, in order, as the live subscriber got after `before` (heartbeats included).
  std::vector<uint64_t> live_seqs, since_seqs;
  for (const auto& e : live.seen())
    if (e.body["seq"].get<uint64_t>() > before && e.body["seq"] <= r["seq"]) live_seqs.push_back(e.body["seq"]);
  for (const auto& e : r["events"]) since_seqs.push_back(e["seq"]);
  EXPECT_EQ(since_seqs, live_seqs);
  EXPECT_EQ(r["events"][0]["event"], "turn.start");
  EXPECT_EQ(r["events"][0]["turn_id"], a["turn_id"]);
  // Monotonic time beside the wall clock in every event.
  for (const auto& e : r["events"]) {
    EXPECT_TRUE(e["mono_ms"].is_number_integer()) << e;
    EXPECT_TRUE(e["ts_ms"].is_number_integer()) << e;
  }
  // Topic filter; nothing after the last seq; bad requests name the field.
  const auto only = d->request({{"cmd", "events"}, {"since", before}, {"topics", {"response."}}});
  for (const auto& e : only["events"]) EXPECT_EQ(e["event"].get<std::string>().rfind("response.", 0), 0u) << e;
  EXPECT_GE(only["events"].size(), 2u);
  EXPECT_TRUE(d->request({{"cmd", "events"}, {"since", 1u << 30}})["events"].empty());
  const auto bad = d->request({{"cmd", "events"}, {"since", -1}});
  EXPECT_EQ(code(bad), "bad_request");
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("since"), std::string::npos);
}

TEST(Protocol2, SubscribeAndAskInTheSameMillisecondLosesNothingAfterEventsSince) {
  auto d = start_ready(scripted_options("step_ms=1,words=1"), 30s);
  for (int i = 0; i < 100; ++i) {
    // Any reply gives the seq to catch up from; then the slow joiner: a subscriber that has not finished
    // connecting when the ask goes out.
    const uint64_t before = d->request({{"cmd", "ping"}})["seq"];
    omni::ipc::EventSubscriber sub(d->events(), {});
    const auto a = d->request({{"cmd", "ask"}, {"text", "q" + std::to_string(i)}, {"speak", false}});
    ASSERT_TRUE(a["ok"].get<bool>()) << a;
    const uint64_t id = a["turn_id"];
    const json done = wait_done_by_polling(*d, id, before);
    ASSERT_FALSE(done.is_null()) << "turn " << id;
    std::map<uint64_t, std::string> live;
    while (auto e = sub.next(0ms)) live[e->body["seq"]] = e->name;
    const auto missed = d->request({{"cmd", "events"}, {"since", before}});
    ASSERT_TRUE(missed["complete"].get<bool>());
    // The buffer has every event after `before`, in order, none missing; the live ones agree with it.
    uint64_t expect = before + 1;
    std::set<std::string> names;
    for (const auto& e : missed["events"]) {
      EXPECT_EQ(e["seq"], expect++) << "iteration " << i;
      if (e.value("turn_id", uint64_t(0)) == id) names.insert(e["event"].get<std::string>());
      if (live.count(e["seq"])) {
        EXPECT_EQ(live[e["seq"]], e["event"].get<std::string>()) << "iteration " << i;
      }
    }
    EXPECT_TRUE(names.count("turn.start")) << "iteration " << i;
    EXPECT_TRUE(names.count("response.done")) << "iteration " << i;
  }
}

TEST(Protocol2, LifecycleEventsAndTurnIdsThatStayUniqueAcrossARestart) {
  auto o = scripted_options("step_ms=5,words=2,load_ms=400");
  auto d = start_ready(o, 30s);
  // The load happened before anyone could subscribe: `events since 0` still has it.
  const auto early = d->request({{"cmd", "events"}, {"since", 0}, {"topics", {"daemon."}}});
  std::vector<std::string> names;
  for (const auto& e : early["events"]) names.push_back(e["event"]);
  ASSERT_GE(names.size(), 2u) << early;
  EXPECT_EQ(names.front(), "daemon.loading");
  EXPECT_EQ(names.back(), "daemon.ready");
  EXPECT_EQ(early["events"].back()["instance"], early["instance"]);
  EXPECT_LE(early["events"].back()["load_ms"].get<double>(), 1000.0);

  EventLog live(d->events());
  const auto first = d->request({{"cmd", "ask"}, {"text", "a"}, {"speak", false}});
  ASSERT_TRUE(live.wait_for("response.done", 10s));
  const std::string instance1 = first["instance"];
  ASSERT_EQ(d->stop(SIGTERM, 10s), 0);
  auto stopping = live.wait_for("daemon.stopping", 2s);
  ASSERT_TRUE(stopping);
  EXPECT_EQ(stopping->body["instance"], instance1);

  const size_t notes = d->notify().count();
  d->start();
  ASSERT_TRUE(d->notify().wait_for("READY=1", 30s, notes)) << d->log();
  const auto second = d->request({{"cmd", "ask"}, {"text", "b"}, {"speak", false}});
  ASSERT_TRUE(second["ok"].get<bool>()) << second;
  EXPECT_NE(second["instance"], instance1);
  EXPECT_GT(second["turn_id"].get<uint64_t>(), first["turn_id"].get<uint64_t>());
  EXPECT_LT(second["turn_id"].get<uint64_t>(), uint64_t(1) << 53);
}

TEST(Protocol2, ARequestPastItsDeadlineIsNotRun) {
  auto d = start_ready(scripted_options("step_ms=5,words=2"), 30s);
  const auto late = d->request({{"cmd", "ask"}, {"text", "stale"}, {"deadline_ms", unix_ms() - 1000}});
  EXPECT_EQ(code(late), "expired") << late;
  EXPECT_TRUE(d->request({{"cmd", "events"}, {"since", 0}, {"topics", {"turn."}}})["events"].empty());
  const auto ok = d->request({{"cmd", "ask"}, {"text", "fresh"}, {"speak", false}, {"deadline_ms", unix_ms() + 5000}});
  EXPECT_TRUE(ok["ok"].get<bool>()) << ok;
  EXPECT_EQ(code(d->request({{"cmd", "status"}, {"deadline_ms", "soon"}})), "bad_request");
}

TEST(Protocol2, TheClientNeverQueuesARequestForADaemonThatIsNotThere) {
  auto d = start_ready(scripted_options("step_ms=5,words=2"), 30s);
  omni::ipc::ControlClient client(d->control());
  ASSERT_TRUE(client.request({{"cmd", "status"}}, std::nullopt, 2000ms)["ok"].get<bool>());
  ASSERT_EQ(d->stop(SIGTERM, 10s), 0);
  try {
    client.request({{"cmd", "ask"}, {"text", "while down"}, {"speak", false}}, std::nullopt, 300ms);
    ADD_FAILURE() << "a request to a stopped omnid did not fail";
  } catch (const omni::ipc::ClientError& e) {
    EXPECT_EQ(e.kind, omni::ipc::ClientError::Kind::not_running) << e.what();
  }
  const size_t notes = d->notify().count();
  d->start();
  ASSERT_TRUE(d->notify().wait_for("READY=1", 30s, notes)) << d->log();
  // The same client reconnects; the request it could not send was never queued for the new daemon.
  json st;
  for (int i = 0; i < 50 && !st.is_object(); ++i) {
    try {
      st = client.request({{"cmd", "status"}}, std::nullopt, 200ms);
    } catch (const omni::ipc::ClientError&) {
    }
  }
  ASSERT_TRUE(st.is_object());
  EXPECT_TRUE(d->request({{"cmd", "events"}, {"since", 0}, {"topics", {"turn."}}})["events"].empty());
}

TEST(Protocol2, StatusListsTheVoices) {
  auto d = start_ready(scripted_options("step_ms=5,words=2"), 30s);
  EXPECT_EQ(d->request({{"cmd", "status"}})["voices"], json::array({"Ethan", "Chelsie"}));
}

TEST(Limits, SetRefusesASystemPromptThatLeavesNoRoomForATurn) {
  auto o = scripted_options("step_ms=5,words=2");
  o.extra_model_yaml = "  context_tokens: 256\n";
  o.max_new_tokens = 64;
  auto d = start_ready(o, 30s);
  std::string words;
  for (int i = 0; i < 300; ++i) words += "word ";
  const auto r = d->request({{"cmd", "set"}, {"system_prompt", words}});
  EXPECT_EQ(code(r), "bad_request") << r;
  const std::string m = r["error"]["message"];
  EXPECT_NE(m.find("300 tokens"), std::string::npos) << m;
  EXPECT_NE(m.find("256"), std::string::npos) << m;
  EXPECT_NE(d->request({{"cmd", "status"}})["system_prompt"], words);
  EXPECT_TRUE(d->request({{"cmd", "set"}, {"system_prompt", "Short."}})["ok"].get<bool>());

  // reload: a file with that prompt is refused the same way, the running configuration stays.
  std::string cfg = d->default_config();
  const auto at = cfg.find("model:\n");
  ASSERT_NE(at, std::string::npos);
  cfg.insert(at + 7, "  system_prompt: \"" + words + "\"\n");
  d->write_config(cfg);
  const auto rr = d->request({{"cmd", "reload"}});
  EXPECT_EQ(code(rr), "bad_request") << rr;
  EXPECT_NE(rr["error"]["message"].get<std::string>().find("model.system_prompt"), std::string::npos) << rr;
}

TEST(Limits, ATurnThatCannotFitIsContextFullNotInternal) {
  auto o = scripted_options("step_ms=5,words=2");
  o.extra_model_yaml = "  context_tokens: 256\n";
  auto d = start_ready(o, 30s);
  std::string words;
  for (int i = 0; i < 400; ++i) words += "word ";
  const auto r = d->request({{"cmd", "ask"}, {"text", words}});
  EXPECT_EQ(code(r), "context_full") << r;
  EXPECT_NE(r["error"]["message"].get<std::string>().find("256"), std::string::npos) << r;
  EXPECT_TRUE(d->request({{"cmd", "ask"}, {"text", "short"}, {"speak", false}})["ok"].get<bool>());
}

TEST(Limits, TheEnginesContextFullIsReportedAsContextFull) {
  auto d = start_ready(scripted_options("step_ms=5,words=2,context_full=1"), 30s);
  EventLog events(d->events());
  const auto r = d->request({{"cmd", "ask"}, {"text", "hello"}, {"speak", false}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  auto err = events.wait_for("error", 5s);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->body["code"], "context_full") << err->body;
  EXPECT_EQ(err->body["turn_id"], r["turn_id"]);
  auto cancelled = events.wait_for("turn.cancelled", 5s);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "idle");
}

TEST(Limits, TheRealEngineSaysContextFullForAnOverlongQuestion) {
  DaemonOptions o = tiny_model_options();
  o.extra_model_yaml = "  context_tokens: 256\n";
  auto d = start_ready(o, 60s);
  std::string words;
  for (int i = 0; i < 600; ++i) words += "hello ";
  const auto r = d->request({{"cmd", "ask"}, {"text", words}, {"speak", false}});
  EXPECT_EQ(code(r), "context_full") << r;
}

TEST(Protocol2, AVersion1ClientFromTheOldExamplesStillWorks) {
  std::string python;
  for (const char* candidate : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(candidate) + " -c 'import zmq' >/dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  if (python.empty()) GTEST_SKIP() << "pyzmq is not installed (make deps installs python3-zmq)";
  auto d = start_ready(scripted_options("step_ms=5,words=2"), 30s);
  const std::string cmd = "OMNID_CONTROL='" + d->control() + "' OMNID_EVENTS='" + d->events() + "' " + python + " " +
                          data_file("v1_client.py") + " ";
  auto run = [&](const std::string& args) {
    FILE* pipe = ::popen((cmd + args + " 2>&1").c_str(), "r");
    std::string out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
    return std::make_pair(WEXITSTATUS(::pclose(pipe)), out);
  };
  auto [rc, out] = run("ask 'hello there'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "You said: hello there. word0 word1\n");
  std::tie(rc, out) = run("status");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(json::parse(out)["state"], "idle");
}

namespace {

// Runs `cmd` with the daemon's endpoints in the environment; (exit status, stdout + stderr).
std::pair<int, std::string> run_client(DaemonProcess& d, const std::string& cmd) {
  const std::string full = "OMNID_CONTROL='" + d.control() + "' OMNID_EVENTS='" + d.events() + "' " + cmd + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  return {WEXITSTATUS(::pclose(pipe)), out};
}

std::string python_with_zmq() {
  for (const char* candidate : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(candidate) + " -c 'import zmq' >/dev/null 2>&1").c_str()) == 0) return candidate;
  return "";
}

}  // namespace

// The shipped examples subscribe and ask without sleeping: the turn's first events, published before their
// subscription is connected, come from `events since`; the answer is printed whole every time.
TEST(Clients, TheExamplesAndThePythonModuleMissNothingWithoutSleeping) {
  const std::string python = python_with_zmq();
  if (python.empty()) GTEST_SKIP() << "pyzmq is not installed (make deps installs python3-zmq)";
  // step_ms=0: the whole answer is published within a millisecond or two of the ask.
  auto d = start_ready(scripted_options("step_ms=0,words=2"), 30s);
  for (int i = 0; i < 10; ++i) {
    auto [rc, out] = run_client(*d, python + " " + OMNI_SOURCE_DIR + "/tools/examples/client.py ask 'hello there'");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "You said: hello there. word0 word1\n") << "run " << i;
    std::tie(rc, out) = run_client(*d, std::string(OMNI_EXAMPLE_CLIENT_PATH) + " 'hello there'");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("\nYou said: hello there. word0 word1\n"), std::string::npos) << "run " << i << ": " << out;
  }
  // The module: a cancelled turn ends with response.done (stop cancelled, the partial text), then turn.cancelled.
  const std::string script = R"(
import sys
sys.path.insert(0, sys.argv[1])
import omnid_client
with omnid_client.Client() as omnid:
    events = omnid.events()
    turn = omnid.request("ask", text="long one", speak=False)["turn_id"]
    names = []
    for name, body in events.turn(turn):
        names.append(name)
        if name == "response.delta" and len(names) == 3:
            omnid.request("cancel", turn_id=turn)
        if name == "response.done":
            print(body["stop"], body["text"].startswith("You said: long one."))
    print(names[0], names[-2], names[-1])
    try:
        omnid.request("cancel", turn_id=turn)
    except omnid_client.OmnidError as e:
        print(e.code)
)";
  auto slow = start_ready(scripted_options("step_ms=30,words=100"), 30s);
  std::ofstream(slow->dir() + "/cancel.py") << script;
  auto [rc, out] = run_client(*slow, python + " " + slow->dir() + "/cancel.py " + OMNI_SOURCE_DIR + "/clients/python");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "cancelled True\nturn.start response.done turn.cancelled\nnot_found\n");
}

// ------------------------------------------------------------------------------------------- user.transcript

namespace {

// The microphone plays one recorded question once (it opens with `listen`, after the subscription).
DaemonOptions with_recorded_question(DaemonOptions o) {
  o.input_pipeline = "filesrc location=" + data_file("one_question.wav") + " ! wavparse";
  return o;
}

struct VoiceTurn {
  uint64_t turn_id = 0;
  int64_t audio_ms = 0;
  json done;                      // its response.done
  std::optional<json> transcript;  // its user.transcript, when one came
  int context_after = -1;          // status context_tokens_used once everything for the turn came
};

// Opens the microphone, follows the voice turn of the recorded question to its speech.end and (when
// `transcript`) its user.transcript, then reads the context used.
VoiceTurn run_voice_turn(DaemonProcess& d, bool transcript, std::chrono::milliseconds timeout) {
  VoiceTurn v;
  EventLog events(d.events());
  EXPECT_EQ(d.request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
  auto start = events.wait_for("turn.start", timeout);
  if (!start) return v;
  EXPECT_EQ(start->body["source"], "voice");
  v.turn_id = start->body["turn_id"];
  v.audio_ms = start->body["audio_ms"];
  const auto mine = [&](const omni::ipc::Event& e) { return e.body["turn_id"] == v.turn_id; };
  auto done = events.wait_for("response.done", timeout, mine);
  if (!done) return v;
  v.done = done->body;
  if (transcript) {
    auto t = events.wait_for("user.transcript", timeout, mine);
    if (t) {
      v.transcript = t->body;
      EXPECT_GT(t->body["seq"].get<uint64_t>(), done->body["seq"].get<uint64_t>()) << "after the answer";
    }
  }
  events.pump(transcript ? 300ms : 2s);
  if (!transcript) {
    for (const auto& e : events.seen()) EXPECT_NE(e.name, "user.transcript") << e.body;
  }
  // The engine runs one job at a time: a reset queued now runs after the transcript; status reads the
  // context the conversation kept once `listen off` answered (it does not wait), so poll until it settles.
  EXPECT_EQ(d.request({{"cmd", "listen"}, {"enabled", false}})["listening"], false);
  int last = -1;
  for (int i = 0; i < 50; ++i) {
    const int used = d.request({{"cmd", "status"}})["context_tokens_used"];
    if (used == last) break;
    last = used;
    std::this_thread::sleep_for(100ms);
  }
  v.context_after = last;
  return v;
}

}  // namespace

TEST(UserTranscript, AVoiceTurnGetsTheModelsGreedyTranscriptOfItsUtteranceAfterTheAnswer) {
  // sample=1: answers are sampled; show_sampling=1: every answer says how it was decoded, the transcript too.
  const auto script = "step_ms=5,words=2,sample=1,show_sampling=1";
  VoiceTurn on, off;
  {
    auto d = start_ready(with_recorded_question(scripted_options(script)), 30s);
    on = run_voice_turn(*d, true, 30s);
  }
  ASSERT_TRUE(on.transcript) << "no user.transcript";
  EXPECT_EQ((*on.transcript)["turn_id"], on.turn_id);
  // The scripted engine answers the transcription request as any turn: what it heard (the utterance: the
  // turn's audio length), the request's text, its filler words; greedy, without the answer's penalty.
  EXPECT_EQ((*on.transcript)["text"], "[greedy r=1] (heard " + std::to_string(on.audio_ms) +
                                          " ms) You said: Transcribe the audio exactly, in the language spoken. "
                                          "Reply with the transcription only.. word0 word1");
  EXPECT_EQ(on.done["text"].get<std::string>().rfind("[t=0.6 ", 0), 0u) << on.done;
  {
    auto o = with_recorded_question(scripted_options(script));
    o.extra_model_yaml = "  user_transcript: false\n";
    auto d = start_ready(o, 30s);
    off = run_voice_turn(*d, false, 30s);
  }
  ASSERT_GT(off.turn_id, 0u);
  // The conversation does not keep the transcription: the context after it is the context without it.
  EXPECT_EQ(on.context_after, off.context_after);
  EXPECT_GT(on.context_after, 0);
}

TEST(UserTranscript, TheTinyModelTranscribesAVoiceTurnAndTheConversationDoesNotKeepIt) {
  DaemonOptions o = tiny_model_options();
  VoiceTurn on, off;
  {
    auto d = start_ready(with_recorded_question(o), 60s);
    on = run_voice_turn(*d, true, 90s);
  }
  ASSERT_TRUE(on.transcript) << "no user.transcript";
  EXPECT_EQ((*on.transcript)["turn_id"], on.turn_id);
  EXPECT_TRUE((*on.transcript)["text"].is_string());
  {
    auto o2 = with_recorded_question(o);
    o2.extra_model_yaml = "  user_transcript: false\n";
    auto d = start_ready(o2, 60s);
    off = run_voice_turn(*d, false, 90s);
  }
  ASSERT_GT(off.turn_id, 0u);
  EXPECT_EQ(on.context_after, off.context_after);
  EXPECT_GT(on.context_after, 0);
}

// ------------------------------------------------------------------------------- ask: this turn's settings

TEST(AskOverrides, MaxNewTokensSamplingAndSpeakerApplyToThatTurnOnly) {
  auto d = start_ready(scripted_options("step_ms=2,words=6,sample=1,show_sampling=1"), 30s);
  EventLog events(d->events());
  const json status_before = d->request({{"cmd", "status"}});
  auto ask = [&](json req) -> json {
    req["cmd"] = "ask";
    req["speak"] = false;
    const auto r = d->request(req);
    EXPECT_TRUE(r["ok"].get<bool>()) << r;
    if (!r["ok"].get<bool>()) return json::object();
    auto done = events.wait_for("response.done", 10s, [&](const auto& e) { return e.body["turn_id"] == r["turn_id"]; });
    return done ? done->body : json::object();
  };
  auto starts = [](const json& done, const std::string& prefix) {
    return done.value("text", std::string()).rfind(prefix, 0) == 0;
  };
  EXPECT_PRED2(starts, ask({{"text", "a"}, {"sampling", {{"temperature", 0}}}}), "[greedy r=1.1] You said: a.");
  EXPECT_PRED2(starts, ask({{"text", "b"}}), "[t=0.6 k=20 p=0.95 r=1.1 seed=");
  EXPECT_PRED2(starts, ask({{"text", "c"}, {"sampling", {{"seed", 7}, {"top_k", 3}, {"repetition_penalty", nullptr}}}}),
               "[t=0.6 k=3 p=0.95 r=1.1 seed=7] You said: c.");
  const json cut = ask({{"text", "d"}, {"max_new_tokens", 2}});
  EXPECT_EQ(cut["tokens"], 2) << cut;
  EXPECT_EQ(cut["stop"], "max_tokens") << cut;
  const json full = ask({{"text", "e"}, {"speaker", "CHELSIE"}});
  EXPECT_EQ(full["stop"], "end_of_turn") << full;
  EXPECT_EQ(full["tokens"], 8) << full;
  // The daemon's own settings did not move.
  const json status_after = d->request({{"cmd", "status"}});
  EXPECT_EQ(status_after["sampling"], status_before["sampling"]);
  EXPECT_EQ(status_after["speaker"], status_before["speaker"]);

  // Bad values are refused before anything runs, naming the field.
  auto refused = [&](const json& fields, const std::string& code_, const std::string& names) {
    json req = fields;
    req["cmd"] = "ask";
    req["text"] = "x";
    const auto r = d->request(req);
    EXPECT_EQ(code(r), code_) << req << " -> " << r;
    EXPECT_NE(r.value("/error/message"_json_pointer, std::string()).find(names), std::string::npos) << r;
  };
  const uint64_t seq = d->request({{"cmd", "ping"}})["seq"];
  refused({{"max_new_tokens", 0}}, "bad_request", "'max_new_tokens'");
  refused({{"max_new_tokens", 40000}}, "bad_request", "'max_new_tokens'");
  refused({{"max_new_tokens", -5}}, "bad_request", "'max_new_tokens'");
  refused({{"max_new_tokens", 2.5}}, "bad_request", "'max_new_tokens'");
  refused({{"max_new_tokens", "many"}}, "bad_request", "'max_new_tokens'");
  refused({{"max_new_tokens", 1e300}}, "bad_request", "'max_new_tokens'");
  refused({{"sampling", {{"top_p", 2}}}}, "bad_request", "'sampling.top_p'");
  refused({{"sampling", {{"nope", 1}}}}, "bad_request", "'sampling.nope'");
  refused({{"sampling", json::array()}}, "bad_request", "'sampling'");
  refused({{"speaker", ""}}, "bad_request", "'speaker'");
  refused({{"speaker", 3}}, "bad_request", "'speaker'");
  refused({{"speaker", "nobody"}}, "not_found", "Ethan, Chelsie");
  EXPECT_TRUE(d->request({{"cmd", "events"}, {"since", seq}, {"topics", {"turn."}}})["events"].empty());
}

// The voice is the talker's: on the tiny model a per-ask speaker changes the speech, the next ask without one speaks
// with the daemon's voice again, byte for byte as before (greedy; reset between asks so each starts the same).
TEST(AskOverrides, APerAskSpeakerChangesTheVoiceOfThatAnswerOnlyOnTheTinyModel) {
  DaemonOptions o = tiny_model_options();
  o.max_new_tokens = 4;
  auto d = start_ready(o, 60s);
  EventLog events(d->events());
  const std::string daemon_voice = d->request({{"cmd", "status"}})["speaker"];
  auto speech_of = [&](json req) -> std::vector<char> {
    EXPECT_TRUE(d->request({{"cmd", "reset"}})["ok"].get<bool>());
    req["cmd"] = "ask";
    req["text"] = "Say something.";
    req["sampling"] = {{"temperature", 0}};
    const auto r = d->request(req);
    EXPECT_TRUE(r["ok"].get<bool>()) << r;
    if (!r["ok"].get<bool>()) return {};
    auto end = events.wait_for("speech.end", 90s, [&](const auto& e) { return e.body["turn_id"] == r["turn_id"]; });
    EXPECT_TRUE(end) << d->log();
    if (!end) return {};
    std::ifstream in(end->body["output"].get<std::string>(), std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  };
  // On tiny-a's random weights 'ethan' and 'chelsie' happen to give the same greedy codes (omni-run --speaker shows
  // the same); 'aiden' speaks differently from both.
  const std::string other = daemon_voice == "aiden" ? "ethan" : "aiden";
  const std::vector<char> daemons = speech_of({});
  const std::vector<char> overridden = speech_of({{"speaker", other}});
  const std::vector<char> again = speech_of({});
  const std::vector<char> named = speech_of({{"speaker", daemon_voice}});
  ASSERT_GT(daemons.size(), 44u);
  ASSERT_GT(overridden.size(), 44u);
  EXPECT_FALSE(daemons == overridden) << "the speaker '" << other << "' did not change the speech";
  EXPECT_TRUE(daemons == again) << "the next ask did not go back to the daemon's voice";
  EXPECT_TRUE(daemons == named) << "naming the daemon's own voice changed the speech";
  EXPECT_EQ(d->request({{"cmd", "status"}})["speaker"], daemon_voice);
}

// ------------------------------------------------------------------------------------ ask: queue and preempt

TEST(AskQueue, QueuedAsksWaitTheirTurnInOrderAndPreemptCancelsTheRunningOne) {
  auto d = start_ready(scripted_options("step_ms=20,words=100"), 30s);
  EventLog events(d->events());
  auto ask = [&](const std::string& text, json extra = json::object()) {
    json req = {{"cmd", "ask"}, {"text", text}, {"speak", false}};
    req.update(extra);
    return d->request(req);
  };
  // `a` takes 25 tokens (0.5 s or more), b and c 5, `long` 100 (2 s or more).
  const json brief = {{"max_new_tokens", 25}};
  const auto a = ask("a", brief);
  ASSERT_TRUE(a["ok"].get<bool>()) << a;
  EXPECT_EQ(code(ask("plain")), "busy");  // without queue: as in v1
  const auto b = ask("b", {{"queue", true}, {"max_new_tokens", 5}});
  const auto c = ask("c", {{"queue", true}, {"max_new_tokens", 5}});
  ASSERT_TRUE(b["ok"].get<bool>()) << b;
  EXPECT_EQ(b["queued"], true);
  EXPECT_EQ(b["position"], 1);
  EXPECT_EQ(c["position"], 2);
  EXPECT_GT(c["turn_id"].get<uint64_t>(), b["turn_id"].get<uint64_t>());
  EXPECT_EQ(d->request({{"cmd", "status"}})["queued"], json::array({b["turn_id"], c["turn_id"]}));
  // c leaves the queue; b runs after a, then nothing more.
  EXPECT_EQ(d->request({{"cmd", "cancel"}, {"turn_id", c["turn_id"]}})["turn_id"], c["turn_id"]);
  auto done_b = events.wait_for("response.done", 10s, [&](const auto& e) { return e.body["turn_id"] == b["turn_id"]; });
  ASSERT_TRUE(done_b);
  EXPECT_EQ(done_b->body["text"].get<std::string>().rfind("You said: b.", 0), 0u) << done_b->body;
  events.pump(300ms);
  std::vector<std::string> order;
  for (const auto& e : events.seen())
    if (e.name == "turn.start" || e.name == "turn.queued" || e.name == "turn.cancelled" ||
        (e.name == "response.done"))
      order.push_back(e.name + " " + e.body["turn_id"].dump());
  const std::string A = a["turn_id"].dump(), B = b["turn_id"].dump(), C = c["turn_id"].dump();
  EXPECT_EQ(order, (std::vector<std::string>{"turn.start " + A, "turn.queued " + B, "turn.queued " + C, "turn.cancelled " + C,
                                             "response.done " + A, "turn.start " + B, "response.done " + B}));
  EXPECT_TRUE(d->request({{"cmd", "status"}})["queued"].empty());

  // The queue is bounded: the ninth waiting ask is busy, and says why.
  const auto running = ask("long");
  ASSERT_TRUE(running["ok"].get<bool>()) << running;
  std::vector<uint64_t> waiting;
  for (int i = 0; i < 8; ++i) {
    const auto q = ask("q" + std::to_string(i), {{"queue", true}});
    ASSERT_TRUE(q["ok"].get<bool>()) << q;
    waiting.push_back(q["turn_id"]);
  }
  const auto full = ask("one too many", {{"queue", true}});
  EXPECT_EQ(code(full), "busy") << full;
  EXPECT_NE(full["error"]["message"].get<std::string>().find("queue is full"), std::string::npos) << full;
  for (uint64_t id : waiting) EXPECT_EQ(d->request({{"cmd", "cancel"}, {"turn_id", id}})["turn_id"], id);

  // preempt: the running answer ends as a cancel ends it (reason preempt) and the new one starts at once.
  const auto p = ask("now", {{"preempt", true}, {"max_new_tokens", 5}});
  ASSERT_TRUE(p["ok"].get<bool>()) << p;
  EXPECT_FALSE(p.contains("queued"));
  auto cancelled = events.wait_for("turn.cancelled", 5s, [&](const auto& e) { return e.body["turn_id"] == running["turn_id"]; });
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->body["reason"], "preempt");
  auto done_p = events.wait_for("response.done", 10s, [&](const auto& e) { return e.body["turn_id"] == p["turn_id"]; });
  ASSERT_TRUE(done_p);
  EXPECT_EQ(done_p->body["stop"], "max_tokens");
  for (const auto& e : events.seen())
    if (e.name == "response.done" && e.body["turn_id"] == running["turn_id"]) {
      EXPECT_EQ(e.body["stop"], "cancelled");
    }

  // Bad values name the field.
  const auto both = ask("x", {{"queue", true}, {"preempt", true}});
  EXPECT_EQ(code(both), "bad_request");
  EXPECT_NE(both["error"]["message"].get<std::string>().find("'queue' and 'preempt'"), std::string::npos) << both;
  const auto bad = ask("x", {{"queue", "yes"}});
  EXPECT_EQ(code(bad), "bad_request");
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("'queue'"), std::string::npos) << bad;
}
