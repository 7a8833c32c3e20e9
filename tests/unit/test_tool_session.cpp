// Tool calls through a real Session on the tiny random model (build/models/tiny-a): a forced call
// always parses and validates, whatever the random weights pick; tool_choice none never calls;
// results continue the conversation; structured answers are valid JSON.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "chat.h"
#include "grammar/tool_calls.h"
#include "omni/engine.h"
#include "schema_gen.h"
#include "tokenizer_fixtures.h"

using namespace omni;

namespace {

const std::string kTinyA = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";
constexpr int32_t kToolCall = 151657, kToolCallEnd = 151658, kToolResponse = 151665;

Model& model() {
  static const std::unique_ptr<Model> m = [] {
    LoadOptions lo;
    lo.model_dir = kTinyA;
    lo.context_tokens = 4096;
    lo.load_talker = false;
    return Model::load(lo);
  }();
  return *m;
}

UserTurn text_turn(const std::string& text) {
  UserTurn t;
  t.text = text;
  return t;
}

GenerateOptions sampled(uint64_t seed, const std::string& choice) {
  GenerateOptions o;
  o.max_new_tokens = 3000;
  o.sampling.greedy = false;
  o.sampling.temperature = 1.0f;
  o.sampling.seed = seed;
  o.tool_choice = choice;
  return o;
}

const ojson kRobotTools = ojson::parse(R"([
  {"type": "function", "function": {"name": "move_arm", "description": "Move the tool point (metres).",
   "parameters": {"type": "object", "properties": {
     "x": {"type": "number", "minimum": -1, "maximum": 1}, "y": {"type": "number", "minimum": -1, "maximum": 1},
     "z": {"type": "number", "minimum": 0, "maximum": 1.5}, "speed": {"type": "string", "enum": ["slow", "fast"]}},
   "required": ["x", "y", "z"]}}},
  {"type": "function", "function": {"name": "set_gripper", "description": "Open or close the gripper.",
   "parameters": {"type": "object", "properties": {"closed": {"type": "boolean"}}, "required": ["closed"]}}}])");

}  // namespace

TEST(ToolSession, ForcedCallsOfTheRandomModelAlwaysParseAndValidate) {
  std::mt19937_64 rng(31);
  int calls = 0;
  for (int k = 0; k < 16; ++k) {
    const ojson tools = testing_schemas::random_tools(rng, 1 + int(rng() % 3));
    const auto compiled = compile_tools(tools);
    auto session = model().new_session({.system_prompt = "", .tools = tools.dump()});
    const std::string choice = k % 2 ? "required" : compiled[rng() % compiled.size()].name;
    const TurnResult r = session->respond(text_turn("Do it."), sampled(rng(), choice), {});
    ASSERT_EQ(r.stop, StopReason::EndOfTurn) << tools.dump();
    ASSERT_GE(r.tool_calls.size(), 1u);
    EXPECT_EQ(r.tokens.front(), kToolCall);
    EXPECT_EQ(r.text, "");  // call markup is not answer text
    for (const ToolCall& c : r.tool_calls) {
      if (k % 2 == 0) {
        EXPECT_EQ(c.name, choice);
      }
      const auto it = std::find_if(compiled.begin(), compiled.end(), [&](const auto& t) { return t.name == c.name; });
      ASSERT_NE(it, compiled.end());
      std::string why;
      EXPECT_TRUE(it->parameters.validate(ojson::parse(c.arguments), &why)) << why << ": " << c.arguments;
      ++calls;
    }
    EXPECT_GT(r.timings.masked_steps, 0);
  }
  EXPECT_GE(calls, 16);
}

TEST(ToolSession, ToolChoiceNoneNeverCalls) {
  auto session = model().new_session({.system_prompt = "Robot.", .tools = kRobotTools.dump()});
  for (uint64_t seed = 0; seed < 4; ++seed) {
    GenerateOptions o = sampled(seed, "none");
    o.max_new_tokens = 40;
    const TurnResult r = session->respond(text_turn("Close your hand."), o, {});
    EXPECT_EQ(std::count(r.tokens.begin(), r.tokens.end(), kToolCall), 0);
    EXPECT_TRUE(r.tool_calls.empty());
    session->reset();
  }
}

TEST(ToolSession, SystemTurnListsTheToolsAndResultsContinueTheTurn) {
  const Tokenizer& tok = omni::testing_fixtures::real_tokenizer();
  auto session = model().new_session({.system_prompt = "Robot.", .tools = kRobotTools.dump()});
  const TurnResult r = session->respond(text_turn("Pick it up."), sampled(3, "set_gripper"), {});
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "set_gripper");
  const std::vector<ChatMessage> head = {{"system", {{ChatPart::Kind::Text, "Robot.", 0}}, {}},
                                         {"user", {{ChatPart::Kind::Text, "Pick it up.", 0}}, {}}};
  EXPECT_EQ(r.prompt_tokens, render_conversation(tok, TokenIds{}, head, tool_lines(kRobotTools)));
  EXPECT_EQ(r.tokens[r.tokens.size() - 2], kToolCallEnd);
  EXPECT_EQ(r.tokens.back(), 151645);

  GenerateOptions o = sampled(4, "none");
  o.max_new_tokens = 12;
  const TurnResult r2 = session->respond_tool_results({{"{\"ok\": true}"}}, o, {});
  const std::vector<ChatMessage> result = {{"tool", {{ChatPart::Kind::Text, "{\"ok\": true}", 0}}, {}}};
  EXPECT_EQ(r2.prompt_tokens, render_conversation(tok, TokenIds{}, result, {}));
  EXPECT_EQ(std::count(r2.prompt_tokens.begin(), r2.prompt_tokens.end(), kToolResponse), 1);
  EXPECT_GT(r2.tokens.size(), 0u);
}

TEST(ToolSession, StructuredAnswersAreValidJson) {
  std::mt19937_64 rng(77);
  auto session = model().new_session();
  for (int k = 0; k < 12; ++k) {
    const ojson schema = testing_schemas::random_schema(rng, 0);
    GenerateOptions o = sampled(rng(), "auto");
    o.response_schema = schema.dump();
    const TurnResult r = session->respond(text_turn("Give me data."), o, {});
    ASSERT_EQ(r.stop, StopReason::EndOfTurn) << schema.dump();
    const ojson v = ojson::parse(r.text, nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << r.text;
    std::string why;
    EXPECT_TRUE(Schema::compile(schema).validate(v, &why)) << why << ": " << r.text;
    session->reset();
  }
}

TEST(ToolSession, BadToolsAreRefusedNamingTheFieldAndKeepTheOldSet) {
  auto session = model().new_session({.system_prompt = "", .tools = kRobotTools.dump()});
  try {
    session->set_tools(R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
        "properties": {"p": {"type": "string", "pattern": "x"}}}}}])");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tools[0].function.parameters.properties.p.pattern"), std::string::npos)
        << e.what();
  }
  const TurnResult r = session->respond(text_turn("x"), sampled(1, "move_arm"), {});
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "move_arm");
  EXPECT_THROW(session->respond(text_turn("x"), sampled(1, "fly"), {}), Error);
  auto plain = model().new_session();
  EXPECT_THROW(plain->respond(text_turn("x"), sampled(1, "required"), {}), Error);
}
