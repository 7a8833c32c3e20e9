// libFuzzer target for the call parser (grammar/tool_calls.h parse_tool_calls): any text, a fixed tool set.
// Properties checked: no crash, only the documented results (every call returned names a known tool and
// has arguments its schema accepts), and the number of calls plus errors never exceeds the <tool_call>
// blocks in the text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "grammar/tool_calls.h"

using namespace omni;

namespace {

const std::vector<JsonGrammar::Tool>& tools() {
  static const std::vector<JsonGrammar::Tool> t = compile_tools(ojson::parse(R"([
    {"type": "function", "function": {"name": "move_arm", "parameters": {"type": "object", "properties": {
      "x": {"type": "number", "minimum": -1, "maximum": 1}, "speed": {"type": "string", "enum": ["slow", "fast"]},
      "path": {"type": "array", "items": {"type": "integer"}, "maxItems": 3}}, "required": ["x"]}}},
    {"type": "function", "function": {"name": "set_gripper", "parameters": {"type": "object", "properties": {
      "closed": {"type": "boolean"}, "note": {"type": ["string", "null"], "maxLength": 8}}, "required": ["closed"]}}},
    {"type": "function", "function": {"name": "stop"}}])"));
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> errors;
  const auto calls = parse_tool_calls(text, tools(), &errors);
  size_t blocks = 0;
  for (size_t p = 0; (p = text.find("<tool_call>", p)) != std::string_view::npos; p += 11) ++blocks;
  if (calls.size() + errors.size() > blocks) std::abort();
  for (const ParsedToolCall& c : calls) {
    const JsonGrammar::Tool* t = nullptr;
    for (const auto& x : tools())
      if (x.name == c.name) t = &x;
    if (!t || !c.arguments.is_object() || !t->parameters.validate(c.arguments)) std::abort();
    if (ojson::parse(json_dumps_py(c.arguments)) != c.arguments) std::abort();
  }
  return 0;
}
