// Tool calls in the dialog (docs/protocol.md "Tools"): registering tools, publishing the model's calls as
// tool.call events, collecting tool_result requests, timing calls out, and continuing the turn with the
// results. One turn may call tools in up to tools.max_rounds rounds; the round after the last allowed one
// runs with tool_choice "none", so the answer always ends in text.
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "grammar/json_schema.h"

namespace omnid {

using omni::audio::monotonic_ms;
using omni::ipc::Error;
using omni::ipc::ErrorCode;

void Daemon::register_tools(const omni::ipc::ReplyHandle& h, const omni::ipc::RegisterToolsRequest& r) {
  if (turn_)
    return server_->reply_error(h, ErrorCode::busy, "turn " + std::to_string(turn_->id) +
                                                        " is running; tools change between turns (they are part of "
                                                        "the conversation's system turn)");
  ToolRegistry next = tools_;
  if (auto err = next.replace(h.client_id(), r.tools_json)) return server_->reply_error(h, err->code, err->message);
  nlohmann::json names = next.names_of(h.client_id());
  apply_tools(h, std::move(next), {{"tools", names}, {"owner", client_name(h.client_id())}});
}

void Daemon::unregister_tools(const omni::ipc::ReplyHandle& h) {
  if (turn_)
    return server_->reply_error(h, ErrorCode::busy, "turn " + std::to_string(turn_->id) +
                                                        " is running; tools change between turns");
  ToolRegistry next = tools_;
  const size_t removed = next.remove(h.client_id());
  apply_tools(h, std::move(next), {{"removed", removed}});
}

// The engine lists the tools in the system turn: a changed set starts a new conversation. Before the model
// is loaded the registry alone changes; the session is made with it (on_model_loaded).
void Daemon::apply_tools(const omni::ipc::ReplyHandle& h, ToolRegistry next, nlohmann::json reply) {
  const std::string json = next.engine_json();
  const bool changed = json != tools_.engine_json();
  ToolRegistry previous = std::exchange(tools_, std::move(next));
  if (!changed || !worker_) return server_->reply_ok(h, reply);
  if (spec_) drop_speculation("the tools changed");
  auto restore = std::make_shared<ToolRegistry>(std::move(previous));
  worker_->submit_control(
      [json](omni::Session& s) { s.set_tools(json); },
      [this, h, json, restore](const std::string& e) {
        loop_.post([this, h, json, restore, e] {
          if (tools_.engine_json() == json) tools_ = *restore;  // nothing registered since: back to the old set
          publish_error("internal", "register_tools failed: " + e);
          if (server_) server_->reply_error(h, ErrorCode::internal, "register_tools failed: " + e);
        });
      },
      [this, h, reply] {
        loop_.post([this, h, reply] {
          if (server_) server_->reply_ok(h, reply);
        });
      });
}

std::optional<Error> Daemon::ask_tool_options(const omni::ipc::AskRequest& r, omni::GenerateOptions& o) const {
  if (r.tool_name) {
    if (!tools_.find(*r.tool_name)) {
      std::string list;
      for (const auto& t : tools_.status()) list += (list.empty() ? "" : ", ") + t["name"].get<std::string>();
      return Error{ErrorCode::not_found, "field 'tool_choice.name': no tool '" + *r.tool_name + "' is registered (" +
                                             (list.empty() ? "none are" : "registered: " + list) + ")"};
    }
    if (*r.tool_name == "auto" || *r.tool_name == "none" || *r.tool_name == "required")
      return Error{ErrorCode::bad_request, "field 'tool_choice.name': a tool named '" + *r.tool_name +
                                               "' cannot be forced by name (use \"required\")"};
    o.tool_choice = *r.tool_name;
  } else if (r.tool_choice) {
    if (*r.tool_choice == "required" && tools_.empty())
      return Error{ErrorCode::not_found, "field 'tool_choice': \"required\" needs a registered tool; none are"};
    o.tool_choice = *r.tool_choice;
  }
  if (r.response_schema) {
    try {
      omni::Schema::compile(omni::ojson::parse(*r.response_schema), "response_format.schema");
    } catch (const std::exception& e) {
      return Error{ErrorCode::bad_request, e.what()};
    }
    o.response_schema = *r.response_schema;
  }
  return std::nullopt;
}

bool Daemon::on_tool_calls(omni::TurnResult& result) {
  if (result.tool_calls.empty() || result.stop != omni::StopReason::EndOfTurn) return false;
  TurnTools& tt = turn_->tools;
  if (tt.rounds == 0) tt.speak = turn_->speak;
  ++tt.rounds;
  tt.text += result.text;
  tt.tokens += result.tokens.size();
  tt.calls.clear();
  const int64_t now = monotonic_ms();
  for (const omni::ToolCall& c : result.tool_calls) {
    PendingCall p;
    p.call_id = "call-" + std::to_string(turn_->id) + "-" + std::to_string(tt.next_call++);
    p.name = c.name;
    p.timeout_ms = config_.tools.call_timeout_ms;
    p.deadline_ms = now + p.timeout_ms;
    // Constrained decoding makes every call valid; the registered schema checks it once more, so that
    // nothing else can ever reach an app.
    std::string why;
    const ToolRegistry::Tool* tool = tools_.find(c.name);
    const omni::ojson args = omni::ojson::parse(c.arguments, nullptr, false);
    if (!tool) why = "no tool '" + c.name + "' is registered";
    else if (args.is_discarded() || !args.is_object()) why = "the arguments are not a JSON object";
    else if (!tool->parameters.validate(args, &why)) why = "the arguments do not match the tool's parameters: " + why;
    if (!why.empty()) {
      log_error("turn %llu: tool call %s not sent: %s", static_cast<unsigned long long>(turn_->id),
                p.call_id.c_str(), why.c_str());
      publish_error("internal", "tool call " + p.call_id + " (" + c.name + ") was not sent: " + why, turn_->id);
      p.result = tool_result_for_model(why, true);  // the model reads the refusal as the call's result
    } else {
      p.owner = tool->owner;
      publish("tool.call", {{"turn_id", turn_->id},
                            {"call_id", p.call_id},
                            {"name", c.name},
                            {"arguments", nlohmann::json::parse(c.arguments)}});
    }
    tt.calls.push_back(std::move(p));
  }
  if (!tt.waiting()) continue_after_tools();
  return true;
}

void Daemon::continue_after_tools() {
  TurnTools& tt = turn_->tools;
  TurnJob job;
  job.turn_id = turn_->job;
  job.tool_results = tt.results();
  job.options = generate_options(tt.speak);
  // After the last allowed round the model answers in text.
  job.options.tool_choice = tt.rounds >= config_.tools.max_rounds ? "none" : "auto";
  tt.calls.clear();
  worker_->submit(std::move(job));
}

void Daemon::tool_result(const omni::ipc::ReplyHandle& h, const omni::ipc::ToolResultRequest& r) {
  PendingCall* call = nullptr;
  if (turn_)
    for (PendingCall& c : turn_->tools.calls)
      if (c.call_id == r.call_id && !c.result) call = &c;
  if (!call)
    return server_->reply_error(h, ErrorCode::not_found,
                                "no call '" + r.call_id +
                                    "' is waiting for a result (unknown, answered, timed out, or its turn ended)");
  if (call->owner != h.client_id())
    return server_->reply_error(h, ErrorCode::bad_request,
                                "field 'call_id': call '" + r.call_id + "' is of tool '" + call->name +
                                    "', registered by another client (" + client_name(call->owner) +
                                    "); only that client answers it");
  call->result = tool_result_for_model(r.content, r.is_error);
  size_t waiting = 0;
  for (const PendingCall& c : turn_->tools.calls) waiting += !c.result;
  server_->reply_ok(h, {{"call_id", r.call_id}, {"turn_id", turn_->id}, {"waiting", waiting}});
  if (!waiting) continue_after_tools();
}

void Daemon::tools_tick() {
  if (!turn_ || !turn_->tools.waiting()) return;
  const int64_t now = monotonic_ms();
  for (PendingCall& c : turn_->tools.calls) {
    if (c.result || now < c.deadline_ms) continue;
    log_warning("turn %llu: tool call %s (%s) got no result within %d ms", static_cast<unsigned long long>(turn_->id),
                c.call_id.c_str(), c.name.c_str(), c.timeout_ms);
    c.result = tool_result_for_model("no result from the tool within " + std::to_string(c.timeout_ms) + " ms", true);
    publish("tool.timeout",
            {{"turn_id", turn_->id}, {"call_id", c.call_id}, {"name", c.name}, {"timeout_ms", c.timeout_ms}});
  }
  if (!turn_->tools.waiting()) continue_after_tools();
}

void Daemon::cancel_tool_calls(const std::string& reason) {
  if (!turn_) return;
  for (const PendingCall& c : turn_->tools.calls)
    if (!c.result)
      publish("tool.cancelled", {{"turn_id", turn_->id}, {"call_id", c.call_id}, {"name", c.name}, {"reason", reason}});
  turn_->tools.calls.clear();
}

}  // namespace omnid
