#include "grammar/tool_calls.h"

#include <set>

namespace omni {
namespace {

bool good_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}

ParsedToolCall parse_call_json(std::string_view body, const std::vector<JsonGrammar::Tool>& tools) {
  ojson j = ojson::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw Error("call is not valid JSON");
  if (!j.is_object()) throw Error("call is not a JSON object");
  auto n = j.find("name");
  if (n == j.end() || !n->is_string()) throw Error("call has no \"name\" string");
  ParsedToolCall c;
  c.name = n->get<std::string>();
  const JsonGrammar::Tool* tool = nullptr;
  for (const auto& t : tools)
    if (t.name == c.name) tool = &t;
  if (!tool) throw Error("call names an unknown tool '" + c.name + "'");
  auto a = j.find("arguments");
  if (a == j.end()) throw Error("call of " + c.name + " has no \"arguments\"");
  c.arguments = *a;
  if (a->is_string()) {
    c.arguments = ojson::parse(a->get<std::string>(), nullptr, false);
    if (c.arguments.is_discarded()) throw Error("call of " + c.name + ": arguments string is not JSON");
  }
  if (!c.arguments.is_object()) throw Error("call of " + c.name + ": arguments are not an object");
  std::string why;
  if (!tool->parameters.validate(c.arguments, &why)) throw Error("call of " + c.name + ": arguments " + why);
  return c;
}

}  // namespace

std::vector<JsonGrammar::Tool> compile_tools(const ojson& tools, const SchemaLimits& lim) {
  if (!tools.is_array()) throw SchemaError("tools: expected an array of function tools");
  if (tools.size() > 64) throw SchemaError("tools: more than 64 tools");
  std::vector<JsonGrammar::Tool> out;
  std::set<std::string> names;
  for (size_t i = 0; i < tools.size(); ++i) {
    std::string where = "tools[" + std::to_string(i) + "]";
    const ojson& t = tools[i];
    if (!t.is_object()) throw SchemaError(where + ": expected an object");
    if (auto ty = t.find("type"); ty != t.end() && (!ty->is_string() || *ty != "function"))
      throw SchemaError(where + ".type: only \"function\" tools are supported");
    auto f = t.find("function");
    if (f == t.end() || !f->is_object()) throw SchemaError(where + ".function: expected an object");
    where += ".function";
    auto n = f->find("name");
    if (n == f->end() || !n->is_string()) throw SchemaError(where + ".name: expected a string");
    const std::string name = n->get<std::string>();
    if (!good_name(name))
      throw SchemaError(where + ".name: '" + name + "' is not 1-64 characters of A-Z a-z 0-9 _ - .");
    if (!names.insert(name).second) throw SchemaError(where + ".name: '" + name + "' is given twice");
    if (auto d = f->find("description"); d != f->end() && !d->is_string())
      throw SchemaError(where + ".description: expected a string");
    ojson params = {{"type", "object"}, {"properties", ojson::object()}};
    if (auto p = f->find("parameters"); p != f->end()) params = *p;
    Schema s = Schema::compile(params, where + ".parameters", lim);
    const SchemaNode& root = s.nodes[size_t(s.root)];
    if (root.types != schema_type::Object || !root.enum_json.empty())
      throw SchemaError(where + ".parameters: must be a schema of type \"object\"");
    out.push_back({name, std::move(s)});
  }
  return out;
}

ToolChoice ToolChoice::parse(const std::string& s) {
  ToolChoice c;
  if (s == "auto") {
    c.kind = Kind::Auto;
  } else if (s == "none") {
    c.kind = Kind::None;
  } else if (s == "required") {
    c.kind = Kind::Required;
  } else if (!s.empty()) {
    c.kind = Kind::Named;
    c.name = s;
  } else {
    throw Error("tool_choice: empty (expected auto, none, required or a tool's name)");
  }
  return c;
}

std::vector<ParsedToolCall> parse_tool_calls(std::string_view text, const std::vector<JsonGrammar::Tool>& tools,
                                             std::vector<std::string>* errors) {
  static constexpr std::string_view open = "<tool_call>", close = "</tool_call>";
  std::vector<ParsedToolCall> out;
  size_t pos = 0;
  while ((pos = text.find(open, pos)) != std::string_view::npos) {
    const size_t body = pos + open.size();
    const size_t end = text.find(close, body);
    if (end == std::string_view::npos) {
      if (errors) errors->push_back("call " + std::to_string(out.size()) + ": no </tool_call>");
      break;
    }
    try {
      out.push_back(parse_call_json(text.substr(body, end - body), tools));
    } catch (const Error& e) {
      if (errors) errors->push_back(e.what());
    }
    pos = end + close.size();
  }
  return out;
}

ConstraintTokens ConstraintTokens::from(const Tokenizer& tok, int32_t im_end) {
  ConstraintTokens t;
  t.im_end = im_end;
  auto need = [&](const char* s) {
    const int32_t id = tok.token_id(s);
    if (id < 0 || !tok.is_added(id)) throw Error(std::string("tokenizer has no added token ") + s);
    return id;
  };
  t.newline = tok.token_id("\n");
  if (t.newline < 0) throw Error("tokenizer has no token for \"\\n\"");
  t.tool_call = need("<tool_call>");
  t.tool_call_end = need("</tool_call>");
  t.tool_response = need("<tool_response>");
  t.tool_response_end = need("</tool_response>");
  return t;
}

std::unique_ptr<DecodeConstraint> DecodeConstraint::for_tools(std::shared_ptr<const TokenTable> table,
                                                               ConstraintTokens ids,
                                                               std::vector<JsonGrammar::Tool> tools,
                                                               const ToolChoice& choice, int max_calls) {
  std::unique_ptr<DecodeConstraint> c(new DecodeConstraint());
  c->table_ = std::move(table);
  c->ids_ = ids;
  c->max_calls_ = std::max(1, max_calls);
  c->calls_allowed_ = choice.kind != ToolChoice::Kind::None;
  if (c->calls_allowed_) {
    if (tools.empty()) throw Error("tool_choice " + std::string(choice.kind == ToolChoice::Kind::Named ? choice.name
                                                                : choice.kind == ToolChoice::Kind::Required
                                                                    ? "required"
                                                                    : "auto") +
                                   ": no tools are registered");
    uint64_t allowed = 0;
    if (choice.kind == ToolChoice::Kind::Named) {
      for (size_t i = 0; i < tools.size(); ++i)
        if (tools[i].name == choice.name) allowed = 1ull << i;
      if (!allowed) throw Error("tool_choice: no tool is named '" + choice.name + "'");
    }
    c->grammar_ = std::make_unique<JsonGrammar>(JsonGrammar::calls(std::move(tools), allowed));
  }
  c->phase_ = choice.kind == ToolChoice::Kind::Required || choice.kind == ToolChoice::Kind::Named ? Phase::NeedCall
                                                                                                  : Phase::Free;
  const size_t vocab = c->table_->vocab();
  c->free_.assign(c->table_->words(), 0);
  for (size_t id = 0; id < vocab; ++id) set_bit(c->free_, int32_t(id));
  auto clear = [&](int32_t id) {
    if (id >= 0 && size_t(id) < vocab) c->free_[size_t(id) >> 6] &= ~(1ull << (id & 63));
  };
  clear(ids.tool_call_end);
  clear(ids.tool_response);
  clear(ids.tool_response_end);
  if (!c->calls_allowed_) clear(ids.tool_call);
  return c;
}

std::unique_ptr<DecodeConstraint> DecodeConstraint::for_value(std::shared_ptr<const TokenTable> table,
                                                               ConstraintTokens ids, Schema schema) {
  std::unique_ptr<DecodeConstraint> c(new DecodeConstraint());
  c->table_ = std::move(table);
  c->ids_ = ids;
  c->grammar_ = std::make_unique<JsonGrammar>(JsonGrammar::value(std::move(schema)));
  c->state_ = c->grammar_->start();
  c->phase_ = Phase::Value;
  c->calls_allowed_ = false;
  return c;
}

void DecodeConstraint::mask(TokenBits& bits, TokenTable::Scratch& scratch) const {
  bits.assign(table_->words(), 0);
  auto allow = [&](int32_t id) {
    if (id >= 0 && size_t(id) < table_->vocab()) set_bit(bits, id);
  };
  switch (phase_) {
    case Phase::Free: bits = free_; break;
    case Phase::NeedCall:
    case Phase::AfterNewline: allow(ids_.tool_call); break;
    case Phase::Call:
      if (grammar_->finished(state_)) {
        allow(ids_.tool_call_end);
      } else {
        table_->grammar_mask(*grammar_, state_, bits, scratch);
      }
      break;
    case Phase::AfterCall:
      allow(ids_.im_end);
      if (int(calls_.size()) < max_calls_) allow(ids_.newline);
      break;
    case Phase::Value:
      if (!grammar_->finished(state_)) table_->grammar_mask(*grammar_, state_, bits, scratch);
      if (grammar_->can_end(state_)) allow(ids_.im_end);
      break;
    case Phase::Ended: allow(ids_.im_end); break;
  }
}

bool DecodeConstraint::accept(int32_t t) {
  auto refuse = [&](const char* where) {
    throw Error(std::string("constrained decoding: token ") + std::to_string(t) + " is not allowed " + where);
  };
  switch (phase_) {
    case Phase::Free:
      if (!test_bit(free_, t)) refuse("in free text");
      if (t == ids_.tool_call) {
        phase_ = Phase::Call;
        state_ = grammar_->start();
        text_.clear();
        return true;
      }
      if (t == ids_.im_end) phase_ = Phase::Ended;
      return false;
    case Phase::NeedCall:
    case Phase::AfterNewline:
      if (t != ids_.tool_call) refuse("(a call must start here)");
      phase_ = Phase::Call;
      state_ = grammar_->start();
      text_.clear();
      return true;
    case Phase::Call: {
      if (grammar_->finished(state_)) {
        if (t != ids_.tool_call_end) refuse("after a call's JSON (expected </tool_call>)");
        const std::string body = text_.substr(1, text_.size() - 2);  // without the "\n" either side
        std::vector<std::string> errors;
        auto parsed = parse_tool_calls("<tool_call>" + body + "</tool_call>", grammar_->tools(), &errors);
        if (parsed.size() != 1)
          throw Error("constrained decoding made a call that does not validate: " +
                      (errors.empty() ? std::string("?") : errors[0]));
        calls_.push_back(std::move(parsed[0]));
        phase_ = Phase::AfterCall;
        return true;
      }
      const std::string& b = table_->is_text(t) ? table_->bytes(t) : std::string();
      if (b.empty() || !grammar_->feed(state_, b)) refuse("inside a call");
      text_ += b;
      return true;
    }
    case Phase::AfterCall:
      if (t == ids_.im_end) {
        phase_ = Phase::Ended;
        return false;
      }
      if (t != ids_.newline || int(calls_.size()) >= max_calls_) refuse("after a call");
      phase_ = Phase::AfterNewline;
      return true;
    case Phase::Value: {
      if (t == ids_.im_end) {
        if (!grammar_->can_end(state_)) refuse("(the JSON answer is not complete)");
        phase_ = Phase::Ended;
        return false;
      }
      const std::string& b = table_->is_text(t) ? table_->bytes(t) : std::string();
      if (b.empty() || !grammar_->feed(state_, b)) refuse("in the JSON answer");
      text_ += b;
      return false;
    }
    case Phase::Ended: refuse("after the end of the answer");
  }
  return false;
}

}  // namespace omni
