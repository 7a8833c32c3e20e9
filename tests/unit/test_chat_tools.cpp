// Conversations with tools against transformers: tests/fixtures/tools/chat_cases.json holds conversations
// rendered by apply_chat_template and encoded by the real tokenizer (tools/gen_tool_fixtures.py); the
// C++ renderer must give the same text and exactly the same ids.
#include <gtest/gtest.h>

#include <fstream>

#include "chat.h"
#include "grammar/json_text.h"
#include "omni/errors.h"
#include "tokenizer_fixtures.h"

using namespace omni;
using omni::testing_fixtures::escaped;
using omni::testing_fixtures::real_tokenizer;

namespace {

const ojson& tool_cases() {
  static const ojson cases = [] {
    const std::string path = std::string(OMNI_FIXTURES) + "/tools/chat_cases.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return ojson::parse(in);
  }();
  return cases;
}

TEST(ChatTools, ConversationsMatchTransformersRenderingIdForId) {
  const Tokenizer& tok = real_tokenizer();
  const TokenIds ids;
  const ojson& cases = tool_cases().at("cases");
  ASSERT_GE(cases.size(), 40u);
  for (const ojson& c : cases) {
    const std::vector<int> audio = c.at("audio_tokens").get<std::vector<int>>();
    const auto msgs = parse_chat_messages(c.at("messages"), [&](size_t i, const ojson&) { return audio.at(i); });
    const auto tools = tool_lines(c.at("tools"));
    const std::string name = c.at("name").get<std::string>();
    EXPECT_EQ(render_conversation_text(msgs, tools), c.at("rendered").get<std::string>()) << name;
    EXPECT_EQ(render_conversation(tok, ids, msgs, tools), c.at("ids").get<std::vector<int32_t>>())
        << name << ": " << escaped(c.at("rendered").get<std::string>());
  }
}

TEST(ChatTools, FixtureCoversTheListedConversations) {
  std::vector<std::string> names;
  for (const ojson& c : tool_cases().at("cases")) names.push_back(c.at("name").get<std::string>());
  for (const char* want : {"one tool, no system message", "one tool with a system message",
                           "several tools, nested parameters, non-ASCII description",
                           "a call with arguments as an object, then its result",
                           "a call with arguments as a JSON string, then its result",
                           "two calls with two results followed by text", "a spoken user turn with tools"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

TEST(ChatTools, BadMessagesAreErrorsNamingTheField) {
  auto expect_error = [](const char* json, const std::string& needle) {
    try {
      const auto msgs = parse_chat_messages(ojson::parse(json));
      render_conversation_text(msgs, {});
      ADD_FAILURE() << "no error for " << json;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(R"([{"content": "x"}])", "messages[0].role");
  expect_error(R"([{"role": "robot", "content": "x"}])", "unknown role 'robot'");
  expect_error(R"([{"role": "user", "content": 3}])", "messages[0].content");
  expect_error(R"([{"role": "user", "content": [{"type": "image"}]}])", "messages[0].content[0].type");
  expect_error(R"([{"role": "user", "content": [{"type": "audio"}]}])", "audio items are not accepted");
  expect_error(R"([{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}])",
               "messages[0].tool_calls[0].function.arguments");
  expect_error(R"([{"role": "user", "tool_calls": [{"name": "f", "arguments": {}}]}])", "only an assistant");
  expect_error(R"({"role": "user"})", "expected an array");
}

TEST(JsonText, WritesLikePythonJsonDumps) {
  EXPECT_EQ(json_dumps_py(ojson::parse(R"({"b": [1, 2.5, true, null], "a": {}, "c": []})")),
            R"({"b": [1, 2.5, true, null], "a": {}, "c": []})");
  EXPECT_EQ(json_quote_py("a\"b\\c\n\t\x01\x7f é 😀"), "\"a\\\"b\\\\c\\n\\t\\u0001\x7f é 😀\"");
  EXPECT_EQ(py_float_repr(1.0), "1.0");
  EXPECT_EQ(py_float_repr(-0.0), "-0.0");
  EXPECT_EQ(py_float_repr(0.1), "0.1");
  EXPECT_EQ(py_float_repr(1e-5), "1e-05");
  EXPECT_EQ(py_float_repr(0.0001), "0.0001");
  EXPECT_EQ(py_float_repr(1e16), "1e+16");
  EXPECT_EQ(py_float_repr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(py_float_repr(1.5e300), "1.5e+300");
  EXPECT_EQ(py_float_repr(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(py_float_repr(2e-310), "2e-310");
}

}  // namespace
