// Tool calls through the real omnid (docs/protocol.md "Tools"): apps register tools, the model's calls
// reach them as tool.call events with arguments valid under the registered schema, tool_result continues
// the answer, and bad or missing results never stall the daemon. Most tests use omnid_scripted (exact
// calls and timing); ToolsTinyModel runs the real engine with the tiny random model, whose forced calls
// are valid only because decoding is constrained.
#include <sys/stat.h>

#include "e2e_harness.h"
#include "grammar/json_schema.h"

using namespace e2e;

namespace {

const char* kRobotTools = R"([
  {"type": "function", "function": {"name": "move_arm", "description": "Move the tool point (metres).",
   "parameters": {"type": "object", "properties": {
     "x": {"type": "number", "minimum": -1, "maximum": 1}, "y": {"type": "number", "minimum": -1, "maximum": 1},
     "z": {"type": "number", "minimum": 0, "maximum": 1.5}, "speed": {"type": "string", "enum": ["slow", "fast"]}},
   "required": ["x", "y", "z", "speed"]}}},
  {"type": "function", "function": {"name": "set_gripper", "description": "Öffnet oder schließt den Greifer.",
   "parameters": {"type": "object", "properties": {"closed": {"type": "boolean"},
     "force": {"type": "integer", "minimum": 1, "maximum": 40}}, "required": ["closed", "force"]}}}])";

nlohmann::json tools_json(const char* text = kRobotTools) { return nlohmann::json::parse(text); }

// A tool's definition by name, from `tools` (an array).
nlohmann::json tool_named(const nlohmann::json& tools, const std::string& name) {
  for (const auto& t : tools)
    if (t["function"]["name"] == name) return t;
  return nullptr;
}

// Whether `arguments` are valid under the parameters of `name` in kRobotTools (the engine's validator,
// independent of what the daemon checked).
::testing::AssertionResult valid_arguments(const std::string& name, const nlohmann::json& arguments) {
  const auto tool = tool_named(tools_json(), name);
  if (tool.is_null()) return ::testing::AssertionFailure() << "no tool " << name;
  const auto schema =
      omni::Schema::compile(omni::ojson::parse(tool["function"]["parameters"].dump()), "parameters");
  std::string why;
  if (!schema.validate(omni::ojson::parse(arguments.dump()), &why))
    return ::testing::AssertionFailure() << name << " " << arguments.dump() << ": " << why;
  return ::testing::AssertionSuccess();
}

std::string code(const nlohmann::json& r) { return r.value("/error/code"_json_pointer, std::string("(ok)")); }
std::string message(const nlohmann::json& r) { return r.value("/error/message"_json_pointer, std::string()); }

// A second (third, ...) app: its own connection, so its own routing id and its own tools.
struct App {
  explicit App(const DaemonProcess& d) : client(d.control()) {}
  nlohmann::json request(nlohmann::json req) { return client.request(std::move(req), std::nullopt, 5000ms); }
  omni::ipc::ControlClient client;
};

DaemonOptions scripted_tools(const std::string& script = "step_ms=10,words=4", const std::string& tools_yaml = "") {
  DaemonOptions o = scripted_options(script);
  o.extra_ipc_yaml = tools_yaml;  // the last lines of the file: a top-level tools: section fits here
  return o;
}

uint64_t turn_of(const nlohmann::json& reply) {
  EXPECT_TRUE(reply["ok"].get<bool>()) << reply;
  return reply.value("turn_id", uint64_t(0));
}

auto for_turn(uint64_t id) {
  return [id](const omni::ipc::Event& e) { return e.body.value("turn_id", uint64_t(0)) == id; };
}

size_t count_named(const std::vector<omni::ipc::Event>& events, const std::string& name, uint64_t turn_id) {
  size_t n = 0;
  for (const auto& e : events) n += e.name == name && e.body.value("turn_id", uint64_t(0)) == turn_id;
  return n;
}

}  // namespace

TEST(Tools, RegisteredToolIsCalledWithValidArgumentsAndTheResultContinuesTheAnswer) {
  auto d = start_ready(scripted_tools(), 30s);
  EventLog events(d->events());
  App arm(*d);
  const auto reg = arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}});
  ASSERT_TRUE(reg["ok"].get<bool>()) << reg;
  EXPECT_EQ(reg["tools"], (nlohmann::json{"move_arm", "set_gripper"}));
  const auto status = d->request({{"cmd", "status"}});
  ASSERT_EQ(status["tools"].size(), 2u) << status;
  EXPECT_EQ(status["tools"][0]["name"], "move_arm");
  EXPECT_EQ(status["tools"][0]["owner"], reg["owner"]);
  EXPECT_NE(reg["owner"].get<std::string>(), "");

  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "Lift the cup."}, {"tool_choice", {{"name", "move_arm"}}}}));
  const auto call = events.wait_for("tool.call", 5s, for_turn(id));
  ASSERT_TRUE(call);
  EXPECT_EQ(call->body["name"], "move_arm");
  EXPECT_TRUE(valid_arguments("move_arm", call->body["arguments"]));
  const std::string call_id = call->body["call_id"];
  EXPECT_FALSE(call_id.empty());
  // The turn waits for the result: still running, a second ask is busy.
  EXPECT_EQ(d->request({{"cmd", "status"}})["turn_id"], id);
  EXPECT_EQ(code(d->request({{"cmd", "ask"}, {"text", "again"}})), "busy");
  const auto res = arm.request({{"cmd", "tool_result"}, {"call_id", call_id}, {"content", "{\"reached\": true}"}});
  ASSERT_TRUE(res["ok"].get<bool>()) << res;
  EXPECT_EQ(res["turn_id"], id);
  EXPECT_EQ(res["waiting"], 0);
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  const std::string text = done->body["text"];
  EXPECT_EQ(text.rfind("Calling.", 0), 0u) << text;  // the text before the call is part of the answer
  EXPECT_NE(text.find("Result: {\"reached\": true}."), std::string::npos) << text;
  EXPECT_EQ(text.find("tool_call"), std::string::npos) << text;  // markup never shows
  ASSERT_TRUE(events.wait_for("speech.end", 10s, for_turn(id)));  // spoken before and after the call
  const auto names = names_for_turn(events.seen(), id);
  const auto at_call = std::find(names.begin(), names.end(), "tool.call");
  const auto at_done = std::find(names.begin(), names.end(), "response.done");
  EXPECT_LT(at_call, at_done);
  EXPECT_EQ(std::count(names.begin(), names.end(), "response.done"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "speech.end"), 1);
  EXPECT_EQ(names.back(), "speech.end");
  // The call is answered: a second result for it is not_found.
  EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", call_id}, {"content", "late"}})), "not_found");
  expect_gap_free(events.seen());
}

TEST(Tools, MissingResultTimesOutWithAToolTimeoutEventAndTheTurnGoesOn) {
  auto d = start_ready(scripted_tools("step_ms=10,words=4", "tools:\n  call_timeout_ms: 300\n"), 30s);
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  const auto asked_at = Clock::now();
  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "Grip."}, {"tool_choice", "required"}, {"speak", false}}));
  const auto call = events.wait_for("tool.call", 5s, for_turn(id));
  ASSERT_TRUE(call);
  EXPECT_EQ(call->body["name"], "move_arm");  // "required" in the scripted engine: the first tool
  const auto timeout = events.wait_for("tool.timeout", 5s, for_turn(id));
  ASSERT_TRUE(timeout);
  EXPECT_GE(Clock::now() - asked_at, 300ms);
  EXPECT_EQ(timeout->body["call_id"], call->body["call_id"]);
  EXPECT_EQ(timeout->body["name"], "move_arm");
  EXPECT_EQ(timeout->body["timeout_ms"], 300);
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_NE(done->body["text"].get<std::string>().find("Result: error: no result from the tool within 300 ms."),
            std::string::npos)
      << done->body;
  // The expired call is gone; the daemon serves the next turn.
  EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", call->body["call_id"]}, {"content", "late"}})),
            "not_found");
  const uint64_t next = turn_of(d->request({{"cmd", "ask"}, {"text", "hello"}, {"speak", false}}));
  ASSERT_TRUE(events.wait_for("response.done", 10s, for_turn(next)));
}

TEST(Tools, SchemaOutsideTheSubsetIsABadRequestNamingTheKeyword) {
  auto d = start_ready(scripted_tools(), 30s);
  App app(*d);
  ASSERT_TRUE(app.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  auto bad = tools_json();
  bad[1]["function"]["parameters"]["properties"]["name"] = {{"type", "string"}, {"pattern", "^[a-z]+$"}};
  auto r = app.request({{"cmd", "register_tools"}, {"tools", bad}});
  EXPECT_EQ(code(r), "bad_request") << r;
  EXPECT_NE(message(r).find("tools[1].function.parameters.properties.name.pattern"), std::string::npos) << r;
  r = app.request({{"cmd", "register_tools"}, {"tools", {{{"type", "function"}, {"function", {{"name", "bad name!"}}}}}}});
  EXPECT_EQ(code(r), "bad_request") << r;
  EXPECT_NE(message(r).find("tools[0].function.name"), std::string::npos) << r;
  r = app.request({{"cmd", "register_tools"}, {"tools", "move_arm"}});
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("'tools' must be an array"), std::string::npos) << r;
  r = app.request({{"cmd", "register_tools"}});
  EXPECT_EQ(code(r), "bad_request");
  r = app.request({{"cmd", "tool_result"}, {"call_id", "x"}});
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("'content'"), std::string::npos) << r;
  // Nothing changed: the earlier set stays.
  const auto status = d->request({{"cmd", "status"}});
  ASSERT_EQ(status["tools"].size(), 2u) << status;
  // A response_format outside the subset is refused the same way.
  r = d->request({{"cmd", "ask"}, {"text", "x"},
                  {"response_format", {{"type", "json_schema"}, {"schema", {{"type", "object"}, {"oneOf", nlohmann::json::array()}}}}}});
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("response_format.schema.oneOf"), std::string::npos) << r;
  r = d->request({{"cmd", "ask"}, {"text", "x"}, {"tool_choice", {{"name", "fly"}}}});
  EXPECT_EQ(code(r), "not_found");
  EXPECT_NE(message(r).find("no tool 'fly'"), std::string::npos) << r;
  // Unregistering empties the set; "required" then has nothing to call.
  EXPECT_EQ(app.request({{"cmd", "unregister_tools"}})["removed"], 2);
  EXPECT_EQ(d->request({{"cmd", "status"}})["tools"].size(), 0u);
  EXPECT_EQ(code(d->request({{"cmd", "ask"}, {"text", "x"}, {"tool_choice", "required"}})), "not_found");
}

TEST(Tools, BadToolResultsAreRefusedWithoutHarmingOtherClients) {
  auto d = start_ready(scripted_tools(), 30s);
  EventLog events(d->events());
  App arm(*d), gripper(*d), watcher(*d);
  auto tools = tools_json();
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", {tools[0]}}})["ok"].get<bool>());
  ASSERT_TRUE(gripper.request({{"cmd", "register_tools"}, {"tools", {tools[1]}}})["ok"].get<bool>());
  // A name another client holds is refused, naming it.
  auto r = gripper.request({{"cmd", "register_tools"}, {"tools", tools}});
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("'move_arm' is registered by another client"), std::string::npos) << r;

  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "call move_arm set_gripper"}, {"speak", false}}));
  const auto first = events.wait_for("tool.call", 5s, for_turn(id));
  const auto second = events.wait_for("tool.call", 5s, for_turn(id));
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->body["name"], "move_arm");
  EXPECT_EQ(second->body["name"], "set_gripper");
  EXPECT_TRUE(valid_arguments("move_arm", first->body["arguments"]));
  EXPECT_TRUE(valid_arguments("set_gripper", second->body["arguments"]));
  // Another client's call, an unknown id, a wrong type: refused, and nothing of the turn changes.
  r = gripper.request({{"cmd", "tool_result"}, {"call_id", first->body["call_id"]}, {"content", "hijack"}});
  EXPECT_EQ(code(r), "bad_request");
  EXPECT_NE(message(r).find("another client"), std::string::npos) << r;
  EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", "call-999-1"}, {"content", "x"}})), "not_found");
  EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", first->body["call_id"]}, {"content", 5}})),
            "bad_request");
  EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", first->body["call_id"]}, {"content", "x"},
                              {"turn", 1}})),
            "bad_request");
  EXPECT_TRUE(watcher.request({{"cmd", "status"}})["ok"].get<bool>());  // the daemon serves everyone meanwhile
  r = arm.request({{"cmd", "tool_result"}, {"call_id", first->body["call_id"]}, {"content", "arm at target"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_EQ(r["waiting"], 1);
  EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", first->body["call_id"]}, {"content", "twice"}})),
            "not_found");
  r = gripper.request({{"cmd", "tool_result"}, {"call_id", second->body["call_id"]}, {"content", "jammed"},
                       {"is_error", true}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  EXPECT_EQ(r["waiting"], 0);
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_NE(done->body["text"].get<std::string>().find("Result: arm at target. Result: error: jammed."),
            std::string::npos)
      << done->body;
  EXPECT_EQ(done->body["stop"], "end_of_turn");
  // A call id of a finished turn does not reach the next one.
  const uint64_t next = turn_of(d->request({{"cmd", "ask"}, {"text", "call set_gripper"}, {"speak", false}}));
  const auto third = events.wait_for("tool.call", 5s, for_turn(next));
  ASSERT_TRUE(third);
  EXPECT_EQ(code(gripper.request({{"cmd", "tool_result"}, {"call_id", second->body["call_id"]}, {"content", "old"}})),
            "not_found");
  ASSERT_TRUE(gripper.request({{"cmd", "tool_result"}, {"call_id", third->body["call_id"]}, {"content", "ok"}})["ok"]
                  .get<bool>());
  ASSERT_TRUE(events.wait_for("response.done", 10s, for_turn(next)));
  expect_gap_free(events.seen());
}

TEST(Tools, CancelAndResetCancelPendingCallsWithToolCancelled) {
  auto d = start_ready(scripted_tools(), 30s);
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  for (const std::string how : {"request", "reset"}) {
    const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "call move_arm set_gripper"}}));
    ASSERT_TRUE(events.wait_for("tool.call", 5s, for_turn(id)));
    ASSERT_TRUE(events.wait_for("tool.call", 5s, for_turn(id)));
    // Tools change between turns only.
    EXPECT_EQ(code(arm.request({{"cmd", "unregister_tools"}})), "busy");
    const auto r = d->request({{"cmd", how == "request" ? "cancel" : "reset"}});
    ASSERT_TRUE(r["ok"].get<bool>()) << r;
    const auto c1 = events.wait_for("tool.cancelled", 5s, for_turn(id));
    const auto c2 = events.wait_for("tool.cancelled", 5s, for_turn(id));
    ASSERT_TRUE(c1 && c2);
    EXPECT_EQ(c1->body["reason"], how);
    EXPECT_EQ(c2->body["name"], "set_gripper");
    const auto cancelled = events.wait_for("turn.cancelled", 5s, for_turn(id));
    ASSERT_TRUE(cancelled);
    EXPECT_EQ(cancelled->body["reason"], how);
    EXPECT_EQ(code(arm.request({{"cmd", "tool_result"}, {"call_id", c1->body["call_id"]}, {"content", "late"}})),
              "not_found");
    events.pump(300ms);
    // The answer did not finish: a response.done, if any, says it was cancelled (protocol 2).
    for (const auto& e : events.seen())
      if (e.name == "response.done" && e.body.value("turn_id", uint64_t(0)) == id) {
        EXPECT_EQ(e.body["stop"], "cancelled");
      }
    EXPECT_EQ(d->request({{"cmd", "status"}})["state"], "idle");
  }
}

TEST(Tools, ANewSystemPromptWaitsUntilTheTurnWithCallsHasFinished) {
  auto d = start_ready(scripted_tools(), 30s);
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "call set_gripper"}, {"speak", false}}));
  const auto call = events.wait_for("tool.call", 5s, for_turn(id));
  ASSERT_TRUE(call);
  // As for any running answer: the prompt applies (a new conversation) once the whole answer has finished,
  // not between the call and its result.
  ASSERT_TRUE(d->request({{"cmd", "set"}, {"system_prompt", "Be terse."}})["ok"].get<bool>());
  events.pump(200ms);
  ASSERT_TRUE(arm.request({{"cmd", "tool_result"}, {"call_id", call->body["call_id"]}, {"content", "closed"}})["ok"]
                  .get<bool>());
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_NE(done->body["text"].get<std::string>().find("Result: closed."), std::string::npos) << done->body;
  EXPECT_EQ(count_named(events.seen(), "error", id), 0u);
  int used = -1;
  for (int i = 0; i < 50 && used != 0; ++i, std::this_thread::sleep_for(20ms))
    used = d->request({{"cmd", "status"}})["context_tokens_used"];
  EXPECT_EQ(used, 0);  // the new prompt started a new conversation after the turn
}

TEST(Tools, VoiceTurnsCallToolsAndBargeInCancelsTheWaitingCall) {
  // two_questions.wav: question A at 2.0-3.8 s, question B at 6.3-8.5 s. A's answer calls a tool that is
  // never answered (the timeout, 10 s, is later than B), so B barges in while the call waits.
  auto o = scripted_tools("step_ms=20,words=4,call_on_audio=1");
  o.input_pipeline = "filesrc location=" + data_file("two_questions.wav") + " ! wavparse";
  o.barge_in = true;
  auto d = start_ready(o, 30s);
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  d->request({{"cmd", "listen"}, {"enabled", true}});
  const auto first = events.wait_for("turn.start", 10s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body["source"], "voice");
  const uint64_t a = first->body["turn_id"];
  const auto call = events.wait_for("tool.call", 5s, for_turn(a));
  ASSERT_TRUE(call);
  EXPECT_EQ(call->body["name"], "move_arm");
  EXPECT_TRUE(valid_arguments("move_arm", call->body["arguments"]));
  const auto cancelled = events.wait_for("tool.cancelled", 10s, for_turn(a));
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->body["call_id"], call->body["call_id"]);
  EXPECT_EQ(cancelled->body["reason"], "barge_in");
  const auto turn_cancelled = events.wait_for("turn.cancelled", 5s, for_turn(a));
  ASSERT_TRUE(turn_cancelled);
  EXPECT_EQ(turn_cancelled->body["reason"], "barge_in");
  const auto second = events.wait_for("turn.start", 10s);
  ASSERT_TRUE(second);
  EXPECT_GT(second->body["turn_id"].get<uint64_t>(), a);
  EXPECT_EQ(count_named(events.seen(), "tool.timeout", a), 0u);
}

TEST(Tools, MaxRoundsEndsTheTurnInText) {
  auto d = start_ready(scripted_tools("step_ms=10,words=2,repeat_calls=1", "tools:\n  max_rounds: 2\n"), 30s);
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "call set_gripper"}, {"speak", false}}));
  for (int round = 1; round <= 2; ++round) {
    const auto call = events.wait_for("tool.call", 5s, for_turn(id));
    ASSERT_TRUE(call) << "round " << round;
    const auto r = arm.request({{"cmd", "tool_result"}, {"call_id", call->body["call_id"]},
                                {"content", "round " + std::to_string(round)}});
    ASSERT_TRUE(r["ok"].get<bool>()) << r;
  }
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_EQ(count_named(events.seen(), "tool.call", id), 2u);
  EXPECT_NE(done->body["text"].get<std::string>().find("Result: round 2."), std::string::npos) << done->body;
}

TEST(Tools, NoneNeverCallsAndUnregisteredOrInvalidCallsNeverReachAnApp) {
  auto d = start_ready(scripted_tools(), 30s);
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "call move_arm"}, {"tool_choice", "none"}, {"speak", false}}));
  auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->body["text"].get<std::string>().rfind("You said: call move_arm.", 0), 0u) << done->body;
  EXPECT_EQ(count_named(events.seen(), "tool.call", id), 0u);
  // A call of a tool nobody registered: the model reads a refusal, no app sees it.
  id = turn_of(d->request({{"cmd", "ask"}, {"text", "call launch_rocket"}, {"speak", false}}));
  const auto err = events.wait_for("error", 5s, for_turn(id));
  ASSERT_TRUE(err);
  EXPECT_NE(err->body["message"].get<std::string>().find("no tool 'launch_rocket' is registered"), std::string::npos);
  done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_NE(done->body["text"].get<std::string>().find("Result: error: no tool 'launch_rocket' is registered."),
            std::string::npos)
      << done->body;
  EXPECT_EQ(count_named(events.seen(), "tool.call", id), 0u);
}

TEST(Tools, ArgumentsTheSchemaRefusesNeverReachAnApp) {
  auto d = start_ready(scripted_tools("step_ms=10,words=2,bad_args=1"), 30s);  // the engine sends "{}"
  EventLog events(d->events());
  App arm(*d);
  ASSERT_TRUE(arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}})["ok"].get<bool>());
  const uint64_t id =
      turn_of(d->request({{"cmd", "ask"}, {"text", "x"}, {"tool_choice", {{"name", "set_gripper"}}}, {"speak", false}}));
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  EXPECT_EQ(count_named(events.seen(), "tool.call", id), 0u);
  EXPECT_EQ(count_named(events.seen(), "error", id), 1u);
  EXPECT_NE(done->body["text"].get<std::string>().find("Result: error: the arguments do not match"), std::string::npos)
      << done->body;
}

TEST(Tools, StructuredAnswerIsJsonValidUnderTheSchemaAndNotSpoken) {
  auto d = start_ready(scripted_tools(), 30s);
  EventLog events(d->events());
  const nlohmann::json schema = nlohmann::json::parse(
      R"({"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]},
          "count": {"type": "integer", "minimum": 2, "maximum": 9}}, "required": ["colour", "count"]})");
  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "What do you see?"},
                                          {"response_format", {{"type", "json_schema"}, {"schema", schema}}}}));
  const auto done = events.wait_for("response.done", 10s, for_turn(id));
  ASSERT_TRUE(done);
  const auto value = omni::ojson::parse(done->body["text"].get<std::string>(), nullptr, false);
  ASSERT_FALSE(value.is_discarded()) << done->body;
  std::string why;
  EXPECT_TRUE(omni::Schema::compile(omni::ojson::parse(schema.dump())).validate(value, &why)) << why;
  events.pump(200ms);
  EXPECT_EQ(count_named(events.seen(), "speech.start", id), 0u);
}

TEST(Examples, RobotToolsAppRegistersAnswersCallsAndShowsTheAnswer) {
  std::string python;
  for (const char* candidate : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(candidate) + " -c 'import zmq' >/dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  if (python.empty()) GTEST_SKIP() << "pyzmq is not installed (make deps installs python3-zmq)";
  auto d = start_ready(scripted_tools(), 30s);
  const std::string cmd = "OMNID_CONTROL='" + d->control() + "' OMNID_EVENTS='" + d->events() + "' " + python + " " +
                          OMNI_SOURCE_DIR + "/tools/examples/robot_tools.py --ask 'call move_arm set_gripper' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("registered: move_arm, set_gripper"), std::string::npos) << out;
  EXPECT_NE(out.find("call move_arm {"), std::string::npos) << out;
  EXPECT_NE(out.find("call set_gripper {"), std::string::npos) << out;
  EXPECT_NE(out.find("answer: Calling. Result: {\"ok\": true, \"position\": ["), std::string::npos) << out;
  EXPECT_NE(out.find("spoken:"), std::string::npos) << out;
  EXPECT_EQ(d->request({{"cmd", "status"}})["tools"].size(), 0u);  // the app unregistered on its way out
}

// The real engine on the tiny random model: its calls are valid only because decoding is constrained.
TEST(ToolsTinyModel, ForcedCallReachesTheAppWithValidArgumentsAndTheTurnFinishes) {
  struct stat st {};
  if (::stat((std::string(OMNI_BUILD_DIR) + "/models/tiny-a/config.json").c_str(), &st) != 0)
    GTEST_SKIP() << "no tiny model at " << OMNI_BUILD_DIR << "/models/tiny-a (the engine build assembles it)";
  DaemonOptions o;
  o.binary = OMNID_BINARY;
  o.model_path = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";
  o.max_new_tokens = 400;
  o.extra_model_yaml = "  sampling:\n    temperature: 1.0\n    seed: 7\n";
  // One round: the answer after the result is text (a random model might otherwise call again).
  o.extra_ipc_yaml = "tools:\n  max_rounds: 1\n";
  auto d = start_ready(o, 120s);
  EventLog events(d->events());
  App arm(*d);
  const auto reg = arm.request({{"cmd", "register_tools"}, {"tools", tools_json()}});
  ASSERT_TRUE(reg["ok"].get<bool>()) << reg;
  for (const std::string name : {"move_arm", "set_gripper"}) {
    const uint64_t id = turn_of(
        d->request({{"cmd", "ask"}, {"text", "Do it."}, {"tool_choice", {{"name", name}}}, {"speak", false}}));
    const auto call = events.wait_for("tool.call", 60s, for_turn(id));
    ASSERT_TRUE(call) << d->log();
    EXPECT_EQ(call->body["name"], name);
    EXPECT_TRUE(valid_arguments(name, call->body["arguments"]));
    const auto r = arm.request({{"cmd", "tool_result"}, {"call_id", call->body["call_id"]}, {"content", "done"}});
    ASSERT_TRUE(r["ok"].get<bool>()) << r;
    ASSERT_TRUE(events.wait_for("response.done", 120s, for_turn(id))) << d->log();
  }
  // "none": the random model's answer never holds a call.
  const uint64_t id = turn_of(d->request({{"cmd", "ask"}, {"text", "Do it."}, {"tool_choice", "none"}, {"speak", false}}));
  ASSERT_TRUE(events.wait_for("response.done", 120s, for_turn(id)));
  EXPECT_EQ(count_named(events.seen(), "tool.call", id), 0u);
  EXPECT_TRUE(d->request({{"cmd", "status"}})["ok"].get<bool>());
}
