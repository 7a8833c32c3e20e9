#include "daemon/tools.h"

#include <algorithm>
#include <cstdio>

#include "grammar/tool_calls.h"

namespace omnid {

using omni::ipc::Error;
using omni::ipc::ErrorCode;

std::string client_name(const std::string& id) {
  const bool printable = !id.empty() && std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x21 && c < 0x7f; });
  if (printable) return id;
  std::string out = "0x";
  char buf[3];
  for (unsigned char c : id) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    out += buf;
  }
  return out;
}

std::optional<Error> ToolRegistry::replace(const std::string& owner, const std::string& tools_json) {
  const omni::ojson tools = omni::ojson::parse(tools_json, nullptr, false);
  if (tools.is_discarded() || !tools.is_array()) return Error{ErrorCode::bad_request, "field 'tools' must be an array"};
  std::vector<omni::JsonGrammar::Tool> compiled;
  try {
    compiled = omni::compile_tools(tools);  // names, uniqueness within the set, the schema subset
  } catch (const omni::Error& e) {
    return Error{ErrorCode::bad_request, e.what()};
  }
  size_t others = 0;
  for (const Tool& t : tools_) others += t.owner != owner;
  if (others + compiled.size() > kMaxRegisteredTools)
    return Error{ErrorCode::bad_request, "field 'tools': " + std::to_string(compiled.size()) + " tools would make " +
                                             std::to_string(others + compiled.size()) + " registered in all; at most " +
                                             std::to_string(kMaxRegisteredTools)};
  for (size_t i = 0; i < compiled.size(); ++i) {
    const Tool* held = find(compiled[i].name);
    if (held && held->owner != owner)
      return Error{ErrorCode::bad_request, "tools[" + std::to_string(i) + "].function.name: '" + compiled[i].name +
                                               "' is registered by another client (" + client_name(held->owner) + ")"};
  }
  // Registration order: the owner's earlier tools leave, the new set goes to the end.
  std::vector<Tool> next;
  for (Tool& t : tools_)
    if (t.owner != owner) next.push_back(std::move(t));
  for (size_t i = 0; i < compiled.size(); ++i)
    next.push_back(Tool{compiled[i].name, owner, tools[i], std::move(compiled[i].parameters)});
  tools_ = std::move(next);
  return std::nullopt;
}

size_t ToolRegistry::remove(const std::string& owner) {
  const size_t before = tools_.size();
  tools_.erase(std::remove_if(tools_.begin(), tools_.end(), [&](const Tool& t) { return t.owner == owner; }),
               tools_.end());
  return before - tools_.size();
}

const ToolRegistry::Tool* ToolRegistry::find(const std::string& name) const {
  for (const Tool& t : tools_)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::string> ToolRegistry::names_of(const std::string& owner) const {
  std::vector<std::string> out;
  for (const Tool& t : tools_)
    if (t.owner == owner) out.push_back(t.name);
  return out;
}

std::string ToolRegistry::engine_json() const {
  if (tools_.empty()) return "";
  omni::ojson all = omni::ojson::array();
  for (const Tool& t : tools_) all.push_back(t.definition);
  return all.dump();
}

nlohmann::json ToolRegistry::status() const {
  nlohmann::json out = nlohmann::json::array();
  for (const Tool& t : tools_) out.push_back({{"name", t.name}, {"owner", client_name(t.owner)}});
  return out;
}

bool TurnTools::waiting() const {
  return std::any_of(calls.begin(), calls.end(), [](const PendingCall& c) { return !c.result; });
}

std::vector<omni::ToolResult> TurnTools::results() const {
  std::vector<omni::ToolResult> out;
  for (const PendingCall& c : calls) out.push_back(c.result.value_or(omni::ToolResult{}));
  return out;
}

omni::ToolResult tool_result_for_model(const std::string& content, bool is_error) {
  return omni::ToolResult{is_error ? "error: " + content : content};
}

}  // namespace omnid
