// Constrained decoding (engine/src/grammar): the schema subset, the byte grammar, token masks over
// the real 152k vocabulary, and the tool-call constraint. The property tests walk random schemas
// with random choices among the allowed tokens: every walk must end, parse and validate.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>

#include "grammar/json_grammar.h"
#include "grammar/token_mask.h"
#include "grammar/tool_calls.h"
#include "schema_gen.h"
#include "tokenizer_fixtures.h"

using namespace omni;
using omni::testing_fixtures::real_tokenizer;

namespace {

constexpr size_t kVocab = 152064;  // the thinker's logits (the tokenizer has fewer ids)

const std::shared_ptr<const TokenTable>& table() {
  static const std::shared_ptr<const TokenTable> t = TokenTable::build(real_tokenizer(), kVocab);
  return t;
}

ConstraintTokens tokens() { return ConstraintTokens::from(real_tokenizer(), 151645); }

bool accepts(const JsonGrammar& g, const std::string& text) {
  GrammarState s = g.start();
  return g.feed(s, text) && g.can_end(s);
}

std::string schema_error(const char* json) {
  try {
    Schema::compile(ojson::parse(json), "parameters");
  } catch (const SchemaError& e) {
    return e.what();
  }
  return "";
}

std::vector<int32_t> allowed_ids(const TokenBits& bits) {
  std::vector<int32_t> out;
  for (size_t w = 0; w < bits.size(); ++w)
    for (uint64_t b = bits[w]; b; b &= b - 1) out.push_back(int32_t(w * 64 + size_t(__builtin_ctzll(b))));
  return out;
}

// Python writes floats under 1e-4 in exponent form ("1e-05"); the grammar writes them as decimals, so
// for those the text is valid JSON of the same value but not json.dumps' spelling.
bool has_tiny_float(const ojson& v) {
  if (v.is_number_float()) return v.get<double>() != 0 && std::abs(v.get<double>()) < 1e-4;
  if (v.is_array() || v.is_object())
    for (const auto& x : v)
      if (has_tiny_float(x)) return true;
  return false;
}

// Random allowed tokens until the constraint ends; fails the test on an empty mask.
void walk(DecodeConstraint& c, std::mt19937_64& rng, int max_steps, std::vector<int32_t>* taken = nullptr) {
  TokenBits bits;
  TokenTable::Scratch scratch;
  for (int step = 0; step < max_steps && !c.ended(); ++step) {
    c.mask(bits, scratch);
    const auto ids = allowed_ids(bits);
    ASSERT_FALSE(ids.empty()) << "no token allowed at step " << step;
    // Half the time the smallest allowed id (single bytes and short tokens) to keep values short.
    const int32_t t = rng() % 2 ? ids[rng() % ids.size()] : ids[0];
    if (taken) taken->push_back(t);
    c.accept(t);
  }
  ASSERT_TRUE(c.ended()) << "did not end within " << max_steps << " steps";
}

}  // namespace

TEST(Grammar, SchemaOutsideTheSubsetIsRefusedNamingTheKeyword) {
  EXPECT_NE(schema_error(R"({"type": "object", "properties": {"p": {"type": "string", "pattern": "a+"}}})")
                .find("parameters.properties.p.pattern: keyword not supported"),
            std::string::npos);
  EXPECT_NE(schema_error(R"({"anyOf": []})").find("parameters.anyOf"), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "strin"})").find("unknown type 'strin'"), std::string::npos);
  EXPECT_NE(schema_error(R"({"description": "x"})").find("needs a \"type\""), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "integer", "minimum": 0.2, "maximum": 0.8})").find("no integer"),
            std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "object", "required": ["a"]})").find("'a' is not in properties"),
            std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "array"})").find("needs \"items\""), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "string", "maxLength": -1})").find("maxLength"), std::string::npos);
  EXPECT_NE(schema_error(R"({"type": "object", "additionalProperties": {"type": "string"}})")
                .find("additionalProperties: only true or false"),
            std::string::npos);
  EXPECT_EQ(schema_error(R"({"type": "object", "properties": {"a": {"type": ["string", "null"]}}})"), "");
}

TEST(Grammar, AcceptsExactlyTheCanonicalTextOfValidValues) {
  const JsonGrammar g = JsonGrammar::value(Schema::compile(ojson::parse(R"({
    "type": "object",
    "properties": {"x": {"type": "number", "minimum": -1, "maximum": 1},
                   "n": {"type": "integer", "minimum": 3, "maximum": 12},
                   "s": {"type": "string", "maxLength": 3},
                   "e": {"enum": ["slow", "fast", 1, 10]},
                   "a": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2},
                   "o": {"type": ["object", "null"], "properties": {}}},
    "required": ["x", "a"]})")));
  EXPECT_TRUE(accepts(g, R"({"x": 0.5, "a": [true]})"));
  EXPECT_TRUE(accepts(g, R"({"x": -1, "n": 12, "s": "é\n", "e": 10, "a": [false, true], "o": null})"));
  EXPECT_TRUE(accepts(g, R"({"x": 1.0, "e": 1, "a": [true], "o": {}})"));
  EXPECT_TRUE(accepts(g, R"({"x": 0, "s": "\u00e9", "a": [true]})"));
  EXPECT_FALSE(accepts(g, R"({"x": 1.5, "a": [true]})"));             // above maximum
  EXPECT_FALSE(accepts(g, R"({"x": -1.000001, "a": [true]})"));       // below minimum
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "n": 2, "a": [true]})"));     // below minimum
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "n": 3.5, "a": [true]})"));   // not an integer
  EXPECT_FALSE(accepts(g, R"({"x": 0.5})"));                          // required a missing
  EXPECT_FALSE(accepts(g, R"({"a": [true], "x": 0.5})"));             // schema order
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "a": []})"));                 // minItems
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "a": [true, true, true]})"));  // maxItems
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "s": "abcd", "a": [true]})"));  // maxLength
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "e": "medium", "a": [true]})"));  // not in enum
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "e": 100, "a": [true]})"));
  EXPECT_FALSE(accepts(g, R"({"x": 0.5,"a": [true]})"));              // separators are ", " and ": "
  EXPECT_FALSE(accepts(g, R"({"x":0.5, "a": [true]})"));
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "a": [true], "z": 1})"));     // no other properties
  EXPECT_FALSE(accepts(g, R"({"x": 00, "a": [true]})"));
  EXPECT_FALSE(accepts(g, R"({"x": 0.50, "a": [true]})"));             // json.dumps writes 0.5
  EXPECT_FALSE(accepts(g, R"({"x": -0, "a": [true]})"));               // and 0
  EXPECT_TRUE(accepts(g, R"({"x": 0.05, "a": [true]})"));
  EXPECT_TRUE(accepts(g, R"({"x": -0.0, "a": [true]})"));
  EXPECT_FALSE(accepts(g, R"({"x": 0.5, "s": "\ud800", "a": [true]})"));  // no surrogate halves
  EXPECT_FALSE(accepts(g, "{\"x\": 0.5, \"s\": \"\x01\", \"a\": [true]}"));
  EXPECT_FALSE(accepts(g, "{\"x\": 0.5, \"s\": \"\xc3\", \"a\": [true]}"));  // broken UTF-8
}

TEST(Grammar, NumberRangesWithFractionalAndExclusiveBounds) {
  const JsonGrammar g = JsonGrammar::value(Schema::compile(ojson::parse(
      R"({"type": "number", "exclusiveMinimum": 0.25, "maximum": 0.75})")));
  EXPECT_FALSE(accepts(g, "0.25"));
  EXPECT_TRUE(accepts(g, "0.250001"));
  EXPECT_TRUE(accepts(g, "0.75"));
  EXPECT_FALSE(accepts(g, "0.750001"));
  EXPECT_FALSE(accepts(g, "1"));
  GrammarState s = g.start();
  EXPECT_FALSE(g.feed(s, '-'));  // no negative value is allowed
  s = g.start();
  EXPECT_FALSE(g.feed(s, '1'));  // nothing from 1 on is in range
}

TEST(Grammar, MaskEqualsFeedingEveryTokenOnItsOwn) {
  const TokenTable& t = *table();
  std::mt19937_64 rng(7);
  const Tokenizer& tok = real_tokenizer();
  int states = 0;
  for (int k = 0; k < 12; ++k) {
    ojson params = testing_schemas::random_parameters(rng);
    auto tools = compile_tools(ojson::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", params}}}}}));
    const JsonGrammar g = JsonGrammar::calls(std::move(tools));
    GrammarState s = g.start();
    TokenTable::Scratch scratch;
    // Walk single bytes of a random allowed continuation, checking the mask at each state.
    for (int step = 0; step < 40 && !g.finished(s); ++step) {
      TokenBits fast(t.words(), 0);
      t.grammar_mask(g, s, fast, scratch);
      TokenBits slow(t.words(), 0);
      for (size_t id = 0; id < tok.vocab_size(); ++id) {
        if (!t.is_text(int32_t(id))) continue;
        GrammarState c;
        c.copy_from(s);
        if (g.feed(c, t.bytes(int32_t(id)))) set_bit(slow, int32_t(id));
      }
      ASSERT_EQ(fast, slow) << "schema " << params.dump() << " step " << step;
      ++states;
      const auto ids = allowed_ids(fast);
      ASSERT_FALSE(ids.empty());
      const std::string& b = t.bytes(ids[rng() % ids.size()]);
      ASSERT_TRUE(g.feed(s, b));
    }
  }
  EXPECT_GT(states, 100);
}

TEST(Grammar, RandomWalksOverGeneratedSchemasAlwaysEndParseAndValidate) {
  std::mt19937_64 rng(2026);
  for (int k = 0; k < 150; ++k) {
    const ojson tool_json = testing_schemas::random_tools(rng, 1 + int(rng() % 3));
    auto tools = compile_tools(tool_json);
    const auto names = [&] {
      std::vector<std::string> n;
      for (const auto& t : tools) n.push_back(t.name);
      return n;
    }();
    const ToolChoice choice = rng() % 2 ? ToolChoice::parse("required") : ToolChoice::parse(names[rng() % names.size()]);
    auto tools_copy = compile_tools(tool_json);
    auto c = DecodeConstraint::for_tools(table(), tokens(), std::move(tools), choice, 2);
    std::vector<int32_t> taken;
    walk(*c, rng, 20000, &taken);
    ASSERT_GE(c->calls().size(), 1u) << tool_json.dump();
    for (const ParsedToolCall& call : c->calls()) {
      if (choice.kind == ToolChoice::Kind::Named) {
        EXPECT_EQ(call.name, choice.name);
      }
      const auto it = std::find(names.begin(), names.end(), call.name);
      ASSERT_NE(it, names.end());
      std::string why;
      EXPECT_TRUE(tools_copy[size_t(it - names.begin())].parameters.validate(call.arguments, &why))
          << why << " in " << json_dumps_py(call.arguments);
    }
    // The decoded text parses the same with the free-text parser.
    const std::string text = real_tokenizer().decode(taken);
    std::vector<std::string> errors;
    const auto reparsed = parse_tool_calls(text, tools_copy, &errors);
    EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors[0]);
    ASSERT_EQ(reparsed.size(), c->calls().size()) << text;
    for (size_t i = 0; i < reparsed.size(); ++i) {
      EXPECT_EQ(reparsed[i].name, c->calls()[i].name);
      EXPECT_EQ(reparsed[i].arguments, c->calls()[i].arguments);
      // Written exactly as json.dumps writes the arguments.
      if (!has_tiny_float(reparsed[i].arguments)) {
        EXPECT_NE(text.find("\"arguments\": " + json_dumps_py(reparsed[i].arguments) + "}\n</tool_call>"),
                  std::string::npos)
            << text;
      }
    }
  }
}

TEST(Grammar, StructuredAnswersFollowTheirSchema) {
  std::mt19937_64 rng(99);
  for (int k = 0; k < 80; ++k) {
    const ojson schema = testing_schemas::random_schema(rng, 0);
    const Schema compiled = Schema::compile(schema);
    auto c = DecodeConstraint::for_value(table(), tokens(), Schema::compile(schema));
    walk(*c, rng, 20000);
    const ojson v = ojson::parse(c->value_text(), nullptr, false);
    ASSERT_FALSE(v.is_discarded()) << c->value_text();
    std::string why;
    EXPECT_TRUE(compiled.validate(v, &why)) << why << ": " << c->value_text() << " for " << schema.dump();
    if (!has_tiny_float(v)) {
      EXPECT_EQ(json_dumps_py(v), c->value_text());
    }
  }
}

TEST(Grammar, ToolChoiceNoneNeverAllowsACallAndAutoConstrainsOnlyFromTheCallOn) {
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"name": "set_gripper",
      "parameters": {"type": "object", "properties": {"closed": {"type": "boolean"}}, "required": ["closed"]}}}])");
  const ConstraintTokens ids = tokens();
  TokenBits bits;
  TokenTable::Scratch scratch;
  auto none = DecodeConstraint::for_tools(table(), ids, compile_tools(tools), ToolChoice::parse("none"));
  none->mask(bits, scratch);
  EXPECT_FALSE(test_bit(bits, ids.tool_call));
  EXPECT_TRUE(test_bit(bits, ids.im_end));
  EXPECT_TRUE(test_bit(bits, 9707));  // ordinary text
  EXPECT_THROW(none->accept(ids.tool_call), Error);

  auto aut = DecodeConstraint::for_tools(table(), ids, compile_tools(tools), ToolChoice::parse("auto"));
  aut->mask(bits, scratch);
  EXPECT_TRUE(test_bit(bits, ids.tool_call));
  EXPECT_TRUE(test_bit(bits, 9707));
  EXPECT_FALSE(aut->accept(9707));  // text
  EXPECT_TRUE(aut->accept(ids.tool_call));
  aut->mask(bits, scratch);
  EXPECT_FALSE(test_bit(bits, 9707));
  EXPECT_TRUE(test_bit(bits, ids.newline));
  const std::string body = "\n{\"name\": \"set_gripper\", \"arguments\": {\"closed\": true}}\n";
  for (int32_t t : real_tokenizer().encode_plain(body)) EXPECT_TRUE(aut->accept(t));
  EXPECT_TRUE(aut->accept(ids.tool_call_end));
  ASSERT_EQ(aut->calls().size(), 1u);
  EXPECT_EQ(aut->calls()[0].arguments, ojson::parse(R"({"closed": true})"));
  EXPECT_FALSE(aut->accept(ids.im_end));
  EXPECT_TRUE(aut->ended());

  EXPECT_THROW(DecodeConstraint::for_tools(table(), ids, compile_tools(tools), ToolChoice::parse("fly")), Error);
}

TEST(Grammar, ToolDefinitionsAreCheckedNamingTheField) {
  auto err = [](const char* json) {
    try {
      compile_tools(ojson::parse(json));
    } catch (const SchemaError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(R"([{"type": "function", "function": {"name": "a b"}}])").find("tools[0].function.name"),
            std::string::npos);
  EXPECT_NE(err(R"([{"function": {"name": "a"}}, {"function": {"name": "a"}}])").find("given twice"),
            std::string::npos);
  EXPECT_NE(err(R"([{"function": {"name": "a", "parameters": {"type": "string"}}}])").find("type \"object\""),
            std::string::npos);
  EXPECT_NE(err(R"([{"function": {"name": "a", "parameters": {"type": "object", "properties": {"p": {"type": "string", "format": "date"}}}}}])")
                .find("tools[0].function.parameters.properties.p.format"),
            std::string::npos);
  EXPECT_EQ(err(R"([{"type": "function", "function": {"name": "stop"}}])"), "");
}

TEST(Grammar, CallParserKeepsValidCallsAndNamesTheBadOnes) {
  auto tools = compile_tools(ojson::parse(R"([{"function": {"name": "go", "parameters": {"type": "object",
      "properties": {"to": {"type": "string", "enum": ["kitchen", "hall"]}}, "required": ["to"]}}}])"));
  std::vector<std::string> errors;
  const auto calls = parse_tool_calls(
      "text <tool_call>\n{\"name\": \"go\", \"arguments\": {\"to\": \"hall\"}}\n</tool_call>\n"
      "<tool_call>{\"name\": \"fly\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"go\", \"arguments\": "
      "\"{\\\"to\\\": \\\"kitchen\\\"}\"}</tool_call><tool_call>{\"name\": \"go\", \"arguments\": {}}</tool_call>"
      "<tool_call>{oops</tool_call><tool_call>",
      tools, &errors);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].arguments["to"], "kitchen");
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_NE(errors[0].find("unknown tool 'fly'"), std::string::npos);
  EXPECT_NE(errors[1].find("required property 'to'"), std::string::npos);
  EXPECT_NE(errors[2].find("not valid JSON"), std::string::npos);
  EXPECT_NE(errors[3].find("no </tool_call>"), std::string::npos);
}

TEST(Grammar, MaskCostOnTheReleaseVocabulary) {
  // Not a speed gate (omni-bench reports the number); checks that the mask is cheap enough to hide
  // behind a decode step even here, with a generous bound.
  std::mt19937_64 rng(5);
  const ojson tools = testing_schemas::random_tools(rng, 3);
  auto c = DecodeConstraint::for_tools(table(), tokens(), compile_tools(tools), ToolChoice::parse("required"), 1);
  TokenBits bits;
  TokenTable::Scratch scratch;
  double total_ms = 0;
  int steps = 0;
  while (!c->ended()) {
    const auto t0 = std::chrono::steady_clock::now();
    c->mask(bits, scratch);
    total_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++steps;
    const auto ids = allowed_ids(bits);
    c->accept(ids[rng() % ids.size()]);
  }
  EXPECT_LT(total_ms / steps, 20.0);
}
