// Request validation of the tool commands (docs/protocol.md "Tools"): register_tools, unregister_tools,
// tool_result, and ask's tool_choice / response_format. The schemas inside are the daemon's to check
// (tests/integration/e2e_tools.cpp); here: shapes, bounds, and that definitions keep their key order.
#include <gtest/gtest.h>

#include "ipc/protocol.h"
#include "protocol_expect.h"

using namespace omni::ipc;
using namespace omni::ipc::test_util;
using nlohmann::json;

namespace {

ParseResult parse_text(const std::string& text) { return parse_request(text); }
ParseResult parse(const json& j) { return parse_request(j.dump()); }

}  // namespace

TEST(ProtocolTools, RegisterToolsKeepsTheDefinitionsKeyOrder) {
  // "z" before "a": the order properties are generated in, which a sorted parse would lose.
  const std::string text =
      R"({"id": 1, "cmd": "register_tools", "tools": [{"type": "function", "function": {"name": "f",
         "parameters": {"type": "object", "properties": {"z": {"type": "boolean"}, "a": {"type": "null"}}}}}]})";
  const auto r = command_of<RegisterToolsRequest>(parse_text(text));
  EXPECT_LT(r.tools_json.find("\"z\""), r.tools_json.find("\"a\"")) << r.tools_json;
  EXPECT_EQ(command_name(parse_text(text).request->command), "register_tools");
  EXPECT_EQ(command_of<RegisterToolsRequest>(parse({{"id", 1}, {"cmd", "register_tools"}, {"tools", json::array()}}))
                .tools_json,
            "[]");
}

TEST(ProtocolTools, RegisterToolsShapeAndBounds) {
  expect_error(parse({{"id", 1}, {"cmd", "register_tools"}}), ErrorCode::bad_request, "missing field 'tools'");
  expect_error(parse({{"id", 1}, {"cmd", "register_tools"}, {"tools", {{"a", 1}}}}), ErrorCode::bad_request,
               "field 'tools' must be an array, not an object");
  expect_error(parse({{"id", 1}, {"cmd", "register_tools"}, {"tools", {1}}}), ErrorCode::bad_request,
               "tools[0] must be an object, not an integer");
  expect_error(parse({{"id", 1}, {"cmd", "register_tools"}, {"tools", json::array()}, {"owner", "x"}}),
               ErrorCode::bad_request, "unknown field 'owner' for command 'register_tools' (allowed: tools)");
  json many = json::array();
  for (size_t i = 0; i <= kMaxToolsPerRequest; ++i) many.push_back(json::object());
  expect_error(parse({{"id", 1}, {"cmd", "register_tools"}, {"tools", many}}), ErrorCode::bad_request,
               "has 65 tools; at most 64");
  EXPECT_EQ(command_name(parse({{"id", 1}, {"cmd", "unregister_tools"}}).request->command), "unregister_tools");
  expect_error(parse({{"id", 1}, {"cmd", "unregister_tools"}, {"tools", json::array()}}), ErrorCode::bad_request,
               "it takes no fields");
}

TEST(ProtocolTools, ToolResultFieldsAndBounds) {
  const auto r = command_of<ToolResultRequest>(
      parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", "call-3-1"}, {"content", ""}}));
  EXPECT_EQ(r.call_id, "call-3-1");
  EXPECT_EQ(r.content, "");
  EXPECT_FALSE(r.is_error);
  EXPECT_TRUE(command_of<ToolResultRequest>(parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", "c"},
                                                   {"content", "jammed"}, {"is_error", true}}))
                  .is_error);
  expect_error(parse({{"id", 1}, {"cmd", "tool_result"}, {"content", "x"}}), ErrorCode::bad_request,
               "missing field 'call_id'");
  expect_error(parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", ""}, {"content", "x"}}), ErrorCode::bad_request,
               "'call_id' must not be empty");
  expect_error(parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", std::string(65, 'c')}, {"content", "x"}}),
               ErrorCode::bad_request, "call ids are at most 64");
  expect_error(parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", "c"}, {"content", json{{"a", 1}}}}),
               ErrorCode::bad_request, "field 'content' must be a string");
  expect_error(parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", "c"},
                      {"content", std::string(kMaxToolResultBytes + 1, 'x')}}),
               ErrorCode::bad_request, "field 'content' is 65537 bytes; at most 65536");
  expect_error(parse({{"id", 1}, {"cmd", "tool_result"}, {"call_id", "c"}, {"content", "x"}, {"is_error", "yes"}}),
               ErrorCode::bad_request, "field 'is_error' must be true or false");
}

TEST(ProtocolTools, AskToolChoiceAndResponseFormat) {
  EXPECT_EQ(command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"tool_choice", "required"}}))
                .tool_choice,
            "required");
  const auto named =
      command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"tool_choice", {{"name", "grip"}}}}));
  EXPECT_EQ(named.tool_name, "grip");
  EXPECT_FALSE(named.tool_choice);
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"tool_choice", "always"}}), ErrorCode::bad_request,
               "field 'tool_choice' must be \"auto\", \"none\", \"required\" or {\"name\": TOOL}, got 'always'");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"tool_choice", {{"name", ""}}}}),
               ErrorCode::bad_request, "'tool_choice.name' must be a non-empty string");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"tool_choice", {{"type", "function"}}}}),
               ErrorCode::bad_request, "unknown field 'tool_choice.type' (allowed: name)");

  const std::string text = R"({"id": 1, "cmd": "ask", "text": "x", "response_format": {"type": "json_schema",
      "schema": {"type": "object", "properties": {"z": {"type": "integer"}, "a": {"type": "boolean"}}}}})";
  const auto structured = command_of<AskRequest>(parse_text(text));
  ASSERT_TRUE(structured.response_schema);
  EXPECT_LT(structured.response_schema->find("\"z\""), structured.response_schema->find("\"a\""));
  EXPECT_FALSE(structured.speak);  // data for an app: not spoken unless asked
  const std::string spoken = R"({"id": 1, "cmd": "ask", "text": "x", "speak": true,
      "response_format": {"type": "json_schema", "schema": {"type": "boolean"}}})";
  EXPECT_TRUE(command_of<AskRequest>(parse_text(spoken)).speak);
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"response_format", {{"type", "json_object"}}}}),
               ErrorCode::bad_request, "'response_format.type' must be \"json_schema\"");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"},
                      {"response_format", {{"type", "json_schema"}, {"schema", true}}}}),
               ErrorCode::bad_request, "'response_format.schema' must be an object");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"tool_choice", "required"},
                      {"response_format", {{"type", "json_schema"}, {"schema", json::object()}}}}),
               ErrorCode::bad_request, "cannot be combined");
}

TEST(ProtocolTools, ToolEventsAreKnown) {
  EXPECT_TRUE(is_known_event("tool.call"));
  EXPECT_TRUE(is_known_event("tool.timeout"));
  EXPECT_TRUE(is_known_event("tool.cancelled"));
  EXPECT_FALSE(is_known_event("tool.result"));
}
