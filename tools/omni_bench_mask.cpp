// omni-bench --mask: the cost of a constrained-decoding token mask on the release vocabulary (CPU, no
// model): forced tool calls and structured answers with seeded random choices among the allowed tokens,
// timing every mask. docs/model.md §11.2.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "grammar/tool_calls.h"
#include "omni_bench_mask.h"
#include "omni/tokenizer.h"

namespace omni {
namespace {

using Clock = std::chrono::steady_clock;

const char* kRobotTools = R"([
  {"type": "function", "function": {"name": "move_arm", "description": "Move the arm's tool point (metres).",
   "parameters": {"type": "object", "properties": {
     "x": {"type": "number", "minimum": -1, "maximum": 1}, "y": {"type": "number", "minimum": -1, "maximum": 1},
     "z": {"type": "number", "minimum": 0, "maximum": 1.5}, "speed": {"type": "string", "enum": ["slow", "normal", "fast"]}},
   "required": ["x", "y", "z"]}}},
  {"type": "function", "function": {"name": "set_gripper", "description": "Open or close the gripper.",
   "parameters": {"type": "object", "properties": {"closed": {"type": "boolean"},
     "force_n": {"type": "integer", "minimum": 0, "maximum": 40}}, "required": ["closed"]}}},
  {"type": "function", "function": {"name": "say_note", "description": "Write a note.",
   "parameters": {"type": "object", "properties": {"text": {"type": "string", "maxLength": 120},
     "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4}}, "required": ["text"]}}}])";

const char* kAnswerSchema = R"({"type": "object", "properties": {
  "objects": {"type": "array", "items": {"type": "object", "properties": {
     "name": {"type": "string", "maxLength": 40}, "x": {"type": "number"}, "y": {"type": "number"},
     "graspable": {"type": "boolean"}}, "required": ["name", "x", "y"]}, "maxItems": 5},
  "summary": {"type": "string", "maxLength": 200}}, "required": ["objects", "summary"]})";

}  // namespace

int bench_mask(const std::string& tokenizer_path, size_t vocab, int runs) {
  auto tok = Tokenizer::load(tokenizer_path);
  auto t0 = Clock::now();
  auto table = TokenTable::build(*tok, vocab);
  const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::printf("mask: vocabulary %zu ids (%zu in the tokenizer), token table built in %.0f ms\n", vocab,
              tok->vocab_size(), build_ms);
  const ConstraintTokens ids = ConstraintTokens::from(*tok, tok->token_id("<|im_end|>"));
  const ojson tools = ojson::parse(kRobotTools);
  std::mt19937_64 rng(1);
  std::vector<double> all, in_string, other;
  TokenBits bits;
  TokenTable::Scratch scratch;
  for (int r = 0; r < runs; ++r) {
    std::unique_ptr<DecodeConstraint> c;
    if (r % 4 == 3) {
      c = DecodeConstraint::for_value(table, ids, Schema::compile(ojson::parse(kAnswerSchema)));
    } else {
      const char* names[] = {"move_arm", "set_gripper", "say_note"};
      c = DecodeConstraint::for_tools(table, ids, compile_tools(tools), ToolChoice::parse(names[r % 3]), 1);
    }
    while (!c->ended()) {
      const auto m0 = Clock::now();
      c->mask(bits, scratch);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - m0).count();
      std::vector<int32_t> allowed;
      for (size_t w = 0; w < bits.size(); ++w)
        for (uint64_t b = bits[w]; b; b &= b - 1) allowed.push_back(int32_t(w * 64 + size_t(__builtin_ctzll(b))));
      all.push_back(ms);
      (allowed.size() > 10000 ? in_string : other).push_back(ms);
      // Random picks, half of them the first allowed id (short tokens), so values stay short.
      c->accept(rng() % 2 ? allowed[rng() % allowed.size()] : allowed[0]);
    }
  }
  auto report = [](const char* what, std::vector<double> v) {
    if (v.empty()) return;
    std::sort(v.begin(), v.end());
    double sum = 0;
    for (double x : v) sum += x;
    std::printf("mask %-28s %6zu masks: mean %.3f ms, p50 %.3f, p99 %.3f, max %.3f\n", what, v.size(), sum / v.size(),
                v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)], v.back());
  };
  report("(all constrained steps)", all);
  report("(inside strings)", in_string);
  report("(structure, numbers, enums)", other);
  return 0;
}

}  // namespace omni
