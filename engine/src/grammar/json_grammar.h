// A byte-level recognizer for JSON text valid under a compiled Schema, written the way
// json.dumps writes it (", " and ": " separators, no other whitespace, object properties in the
// schema's order, optional ones skippable). Every state it accepts can still be completed, so
// decoding constrained by it never gets stuck, and every value is bounded (json_schema.h), so
// it always ends. docs/model.md "Tool calls".
//
// Two shapes:
//   value(schema):  one JSON value (structured answers)
//   calls(tools):   the body of one tool call after the <tool_call> token,
//                   "\n{\"name\": \"NAME\", \"arguments\": ARGS}\n", ARGS valid under NAME's schema
// The state is a small value type: copy it to try bytes ahead (token masks do).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "grammar/json_schema.h"

namespace omni {

struct GrammarFrame {
  uint8_t kind = 0, phase = 0, schema = 0, flags = 0;
  uint16_t node = 0;
  int32_t count = 0;  // string chars, array items, object next property, literal/enum position, integer digits
  int32_t aux = 0;    // string escape/UTF-8 state, fraction digits, key position, chosen tool
  uint64_t cand = 0;  // enum values / property keys / tool names still possible
  __int128 num = 0;   // number digits so far
};

struct GrammarState {
  static constexpr int kMaxFrames = 24;
  int depth = 0;
  GrammarFrame f[kMaxFrames];
  void copy_from(const GrammarState& o) {
    depth = o.depth;
    for (int i = 0; i < depth; ++i) f[i] = o.f[i];
  }
};

class JsonGrammar {
 public:
  struct Tool {
    std::string name;
    Schema parameters;
  };
  static JsonGrammar value(Schema schema);
  // At most 64 tools; `allowed` (bit i: tool i may be called) narrows the names, 0 means all.
  static JsonGrammar calls(std::vector<Tool> tools, uint64_t allowed = 0);

  GrammarState start() const;
  // Advances by one byte; false (state unspecified) when the byte is not allowed here.
  bool feed(GrammarState& s, uint8_t b) const;
  bool feed(GrammarState& s, const std::string& bytes) const {
    for (unsigned char c : bytes)
      if (!feed(s, c)) return false;
    return true;
  }
  // The text so far is complete (nothing more is needed; a number may still grow).
  bool can_end(const GrammarState& s) const;
  // Nothing more can follow.
  bool finished(const GrammarState& s) const;
  // Inside a string's characters (not in an escape or a multi-byte character): how many more
  // characters it may hold. -1 elsewhere. Token masks take a fast path here.
  int string_room(const GrammarState& s) const;

  const std::vector<Tool>& tools() const { return tools_; }

 private:
  enum Kind : uint8_t { Root, Call, Object, Array, String, Number, Enum, Literal };
  const Schema& schema(uint8_t i) const { return is_calls_ ? tools_[i].parameters : value_schema_; }
  const SchemaNode& node_of(const GrammarFrame& f) const { return schema(f.schema).nodes[f.node]; }
  // 1: consumed, 0: refused, 2: the frame is complete and the byte belongs to its parent.
  int start_value(GrammarState& s, uint8_t schema, int node, uint8_t b) const;
  void pop(GrammarState& s) const;
  int feed_number(GrammarFrame& f, uint8_t b) const;
  bool number_feasible(const SchemaNode& n, const GrammarFrame& f) const;
  bool number_complete(const SchemaNode& n, const GrammarFrame& f) const;

  std::vector<Tool> tools_;
  Schema value_schema_;
  bool is_calls_ = false;
  uint64_t allowed_ = 0;
  std::vector<std::string> names_;  // "\"name\"" per tool
};

}  // namespace omni
