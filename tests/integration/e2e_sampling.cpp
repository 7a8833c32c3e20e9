// Sampling settings end to end (omnid_scripted: the real omnid, the engine replaced by a script that reports the
// sampling each turn got): the checkpoint's generation_config defaults, model.sampling over them, `set` over that,
// null back to the checkpoint's value, a fresh seed per turn unless one is set, and reload back to the file's.
#include "e2e_harness.h"

using namespace e2e;

namespace {

std::string code(const nlohmann::json& r) { return r.value("/error/code"_json_pointer, std::string("(ok)")); }

// The answer's first word: the script's "[...]" report of the sampling the turn got.
std::string sampling_of_next_answer(DaemonProcess& d, EventLog& events) {
  const auto r = d.request({{"cmd", "ask"}, {"text", "hi"}, {"speak", false}});
  EXPECT_TRUE(r["ok"].get<bool>()) << r;
  auto done = events.wait_for("response.done", 10s, [&](const auto& e) { return e.body["turn_id"] == r["turn_id"]; });
  if (!done) return "(no answer)";
  const std::string text = done->body["text"];
  return text.substr(0, text.find(']') + 1);
}

}  // namespace

TEST(Sampling, WithoutAGenerationConfigAnswersAreGreedy) {
  auto d = start_ready(scripted_options("step_ms=5,words=2,show_sampling=1"), 30s);
  EventLog events(d->events());
  EXPECT_EQ(sampling_of_next_answer(*d, events), "[greedy r=1]");
  const auto st = d->request({{"cmd", "status"}});
  EXPECT_EQ(st["sampling"]["temperature"], 0.0) << st;
  EXPECT_TRUE(st["sampling"]["seed"].is_null()) << st;
}

TEST(Sampling, ConfigOverCheckpointSetOverConfigNullBackAndReloadRestores) {
  auto o = scripted_options("step_ms=5,words=2,sample=1,show_sampling=1");
  o.extra_model_yaml = "  sampling:\n    top_p: 0.5\n    seed: 7\n";
  auto d = start_ready(o, 30s);
  EventLog events(d->events());
  // The checkpoint samples at 0.6 / top-k 20 / penalty 1.1; the file sets top_p and the seed.
  EXPECT_EQ(sampling_of_next_answer(*d, events), "[t=0.6 k=20 p=0.5 r=1.1 seed=7]");
  const auto st = d->request({{"cmd", "status"}});
  EXPECT_NEAR(st["sampling"]["temperature"].get<double>(), 0.6, 1e-6) << st;
  EXPECT_EQ(st["sampling"]["top_k"], 20);
  EXPECT_EQ(st["sampling"]["seed"], 7);

  // temperature 0 is greedy; the penalty still applies.
  auto s = d->request({{"cmd", "set"}, {"sampling", {{"temperature", 0}}}});
  ASSERT_TRUE(s["ok"].get<bool>()) << s;
  EXPECT_EQ(s["sampling"]["temperature"], 0.0);
  EXPECT_EQ(sampling_of_next_answer(*d, events), "[greedy r=1.1]");

  // null: back to the checkpoint's value; without a seed each turn draws its own.
  s = d->request({{"cmd", "set"}, {"sampling", {{"temperature", nullptr}, {"seed", nullptr}, {"top_k", 5}}}});
  ASSERT_TRUE(s["ok"].get<bool>()) << s;
  EXPECT_TRUE(s["sampling"]["seed"].is_null());
  const std::string first = sampling_of_next_answer(*d, events), second = sampling_of_next_answer(*d, events);
  EXPECT_EQ(first.rfind("[t=0.6 k=5 p=0.5 r=1.1 seed=", 0), 0u) << first;
  EXPECT_EQ(second.rfind("[t=0.6 k=5 p=0.5 r=1.1 seed=", 0), 0u) << second;
  EXPECT_NE(first, second) << "two turns without a configured seed drew the same seed";

  // Bad values name the field and change nothing.
  const auto bad = d->request({{"cmd", "set"}, {"sampling", {{"top_p", 0}}}});
  EXPECT_EQ(code(bad), "bad_request");
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("sampling.top_p"), std::string::npos) << bad;
  EXPECT_EQ(code(d->request({{"cmd", "set"}, {"sampling", {{"top_k", 2.5}}}})), "bad_request");
  EXPECT_EQ(code(d->request({{"cmd", "set"}, {"sampling", {{"warmth", 1}}}})), "bad_request");
  EXPECT_EQ(code(d->request({{"cmd", "set"}, {"sampling", nlohmann::json::object()}})), "bad_request");
  EXPECT_EQ(d->request({{"cmd", "status"}})["sampling"]["top_k"], 5);

  // reload: the file's values again.
  ASSERT_TRUE(d->request({{"cmd", "reload"}})["ok"].get<bool>());
  EXPECT_EQ(sampling_of_next_answer(*d, events), "[t=0.6 k=20 p=0.5 r=1.1 seed=7]");
}
