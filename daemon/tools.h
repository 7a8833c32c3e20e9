// Tool calls in the daemon (docs/protocol.md "Tools"): which client registered which tools, and the calls
// a turn is waiting on.
//
// Tools belong to the client (its ZeroMQ routing id) that registered them: re-registering replaces that
// client's set, a name another client holds is refused, and the engine's session lists the union of all
// sets in registration order (a change starts a new conversation, as a new system prompt does). Every
// definition is compiled here with the engine's schema compiler before anything changes, so a tool outside
// the supported JSON-Schema subset is a bad_request naming the keyword, and a call's arguments are checked
// against the registered schema once more before a tool.call reaches an app.
#pragma once
#include <omni/engine.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grammar/json_schema.h"
#include "ipc/protocol.h"

namespace omnid {

// The most tools registered over all clients (each costs prompt tokens in every turn).
inline constexpr size_t kMaxRegisteredTools = 64;

// How a client is named in status and logs: its routing id when that is printable ASCII (a client may set
// one, e.g. ZMQ_ROUTING_ID "arm-controller"), else "0x" and its bytes in hex (libzmq's generated ids).
std::string client_name(const std::string& routing_id);

class ToolRegistry {
 public:
  struct Tool {
    std::string name;
    std::string owner;       // routing id
    omni::ojson definition;  // the OpenAI-style tool as registered (key order kept)
    omni::Schema parameters;
  };

  // Replaces `owner`'s tools with `tools_json` (a JSON array of OpenAI-style function tools; [] removes
  // them). Nothing changes on an error: bad_request naming the field, e.g.
  // "tools[0].function.parameters.properties.speed.pattern: keyword not supported".
  std::optional<omni::ipc::Error> replace(const std::string& owner, const std::string& tools_json);
  // Removes `owner`'s tools; how many there were.
  size_t remove(const std::string& owner);
  const Tool* find(const std::string& name) const;
  std::vector<std::string> names_of(const std::string& owner) const;
  // What the engine's session is given (SessionOptions::tools): all tools in registration order; "" for none.
  std::string engine_json() const;
  // status's "tools": [{"name", "owner"}].
  nlohmann::json status() const;
  bool empty() const { return tools_.empty(); }

 private:
  std::vector<Tool> tools_;
};

// One call the model made, waiting for the owner's tool_result.
struct PendingCall {
  std::string call_id;
  std::string name;
  std::string owner;                       // routing id of the tool's owner
  std::optional<omni::ToolResult> result;  // set once answered (or refused, timed out)
  int timeout_ms = 0;                      // tools.call_timeout_ms when the call was made
  int64_t deadline_ms = 0;                 // monotonic
};

// A turn's tool state: its rounds so far and the calls of the current round.
struct TurnTools {
  std::string choice = "auto";  // the turn's first tool_choice; later rounds are "auto" (or "none" at the limit)
  bool speak = true;            // the turn speaks (kept for the rounds after a call)
  int rounds = 0;               // call rounds so far
  int next_call = 1;            // the number in the next call id
  std::vector<PendingCall> calls;  // the current round's calls, in the order the model made them
  std::string text;             // the answer text of the finished rounds
  size_t tokens = 0;            // their generated tokens
  bool waiting() const;         // some call of the round has no result yet
  // The round's results, in call order (all answered).
  std::vector<omni::ToolResult> results() const;
};

// What the model reads for a result: the content as given, or "error: " + content for is_error.
omni::ToolResult tool_result_for_model(const std::string& content, bool is_error);

}  // namespace omnid
