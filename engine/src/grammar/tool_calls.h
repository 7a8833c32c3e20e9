// Tool calls in decoding: which tokens may come next given the tool choice, the calls the answer
// made, and the parser for call markup in free text. docs/model.md "Tool calls".
//
// An answer with tools is free text, then zero or more calls
//   <tool_call>\n{"name": "N", "arguments": {...}}\n</tool_call>   (joined by "\n")
// then <|im_end|>. <tool_call>, </tool_call> and <|im_end|> are single added tokens; the JSON
// between them is byte-level text constrained by a JsonGrammar, so a call always names a tool
// that exists and its arguments are valid under that tool's parameters.
//   auto:     free text; once the model picks <tool_call> the call is constrained
//   none:     <tool_call> is never allowed
//   required: the answer starts with a call
//   a name:   the answer starts with a call of that tool
// A structured answer (response schema) is one JSON value, then <|im_end|>.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/json_grammar.h"
#include "grammar/token_mask.h"

namespace omni {

// OpenAI-style tools ([{"type": "function", "function": {"name", "description"?, "parameters"?}}]).
// Names: 1-64 characters of A-Z a-z 0-9 _ - . and unique; parameters: an object schema in the
// supported subset (absent: no arguments). Throws SchemaError naming the field, e.g.
// "tools[1].function.parameters.properties.speed.pattern: keyword not supported".
std::vector<JsonGrammar::Tool> compile_tools(const ojson& tools, const SchemaLimits& lim = {});

struct ToolChoice {
  enum class Kind { Auto, None, Required, Named };
  Kind kind = Kind::Auto;
  std::string name;
  // "auto" | "none" | "required" | a tool name. Throws Error for an empty string.
  static ToolChoice parse(const std::string& s);
};

struct ParsedToolCall {
  std::string name;
  ojson arguments;  // an object
};

// Hermes-style parser for text that holds call markup: every <tool_call>...</tool_call> block's
// JSON {"name", "arguments"}. Calls that do not parse, name an unknown tool or have arguments the
// tool's schema refuses are left out and described in `errors` (when given).
std::vector<ParsedToolCall> parse_tool_calls(std::string_view text, const std::vector<JsonGrammar::Tool>& tools,
                                             std::vector<std::string>* errors = nullptr);

struct ConstraintTokens {
  int32_t im_end = -1, newline = -1;
  int32_t tool_call = -1, tool_call_end = -1, tool_response = -1, tool_response_end = -1;
  // From the tokenizer; throws Error when a tool token is missing.
  static ConstraintTokens from(const Tokenizer& tok, int32_t im_end);
};

class DecodeConstraint {
 public:
  // Tool calls. `tools` may be empty only with ToolChoice none.
  static std::unique_ptr<DecodeConstraint> for_tools(std::shared_ptr<const TokenTable> table, ConstraintTokens ids,
                                                     std::vector<JsonGrammar::Tool> tools, const ToolChoice& choice,
                                                     int max_calls = 8);
  // A structured answer under `schema`.
  static std::unique_ptr<DecodeConstraint> for_value(std::shared_ptr<const TokenTable> table, ConstraintTokens ids,
                                                     Schema schema);

  // The tokens allowed next (bits for table->vocab() ids). Reads the state only: it may run on
  // another thread while the model computes the step, as long as accept() is not running.
  void mask(TokenBits& bits, TokenTable::Scratch& scratch) const;
  // Advances by the chosen token. Returns true when the token is call markup (not answer text:
  // not to be shown or spoken). Throws Error when the token is not allowed.
  bool accept(int32_t token);
  // The answer is complete (<|im_end|> accepted).
  bool ended() const { return phase_ == Phase::Ended; }
  const std::vector<ParsedToolCall>& calls() const { return calls_; }
  // A structured answer's text so far.
  const std::string& value_text() const { return text_; }

 private:
  enum class Phase { Free, NeedCall, Call, AfterCall, AfterNewline, Value, Ended };
  DecodeConstraint() = default;
  std::shared_ptr<const TokenTable> table_;
  ConstraintTokens ids_;
  std::unique_ptr<JsonGrammar> grammar_;
  GrammarState state_;
  Phase phase_ = Phase::Free;
  bool calls_allowed_ = true;
  int max_calls_ = 8;
  TokenBits free_;  // the tokens of free text
  std::string text_;  // the current call's or the value's bytes
  std::vector<ParsedToolCall> calls_;
};

}  // namespace omni
