// libFuzzer target for tool schemas and the grammar made from them (engine/src/grammar).
// Input: a JSON text (the tools array, or one parameters schema when it is an object), a NUL, then bytes
// that steer a walk through the grammar. Properties checked: compiling never crashes and throws only
// omni::Error; when it compiles, every state of the walk allows at least one byte (no dead ends), and a
// walk that ends gives a call that parses and validates under the tool's schema.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "grammar/tool_calls.h"

using namespace omni;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string_view json_text = in.substr(0, nul);
  const std::string_view steer = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  ojson j = ojson::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (j.is_discarded()) return 0;
  if (j.is_object()) j = ojson::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", j}}}}});
  std::vector<JsonGrammar::Tool> tools;
  try {
    tools = compile_tools(j);
  } catch (const Error&) {
    return 0;
  }
  if (tools.empty()) return 0;
  const std::vector<JsonGrammar::Tool> check = tools;
  const JsonGrammar g = JsonGrammar::calls(std::move(tools));
  GrammarState s = g.start();
  std::string text;
  for (size_t step = 0; step < 4096 && !g.finished(s); ++step) {
    uint8_t allowed[256];
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      GrammarState t;
      t.copy_from(s);
      if (g.feed(t, uint8_t(b))) allowed[n++] = uint8_t(b);
    }
    if (n == 0) std::abort();  // a dead end: the grammar accepted a prefix it cannot complete
    const uint8_t pick = allowed[(steer.empty() ? 0 : uint8_t(steer[step % steer.size()])) % n];
    if (!g.feed(s, pick)) std::abort();
    text += char(pick);
  }
  if (!g.finished(s)) return 0;
  std::vector<std::string> errors;
  const auto calls = parse_tool_calls("<tool_call>" + text.substr(1, text.size() - 2) + "</tool_call>", check, &errors);
  if (calls.size() != 1 || !errors.empty()) std::abort();
  return 0;
}
