// Request validation for control protocol v1. Every failure names the field or the rule that was broken.
#include "ipc/protocol.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

namespace omni::ipc {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 14> kCommandNames = {
    "ping", "status", "ask", "say", "cancel", "listen", "reset", "set", "reload", "events",
    "register_tools", "unregister_tools", "tool_result", "push_audio"};

// Field names come from the client; keep them short inside messages.
std::string field_quote(std::string_view s) {
  constexpr std::size_t kMax = 64;
  std::string out = "'";
  out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
  out += "'";
  return out;
}

std::string_view json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

// Thrown inside this file only; parse_request turns it into a ParseResult.
struct Reject {
  ErrorCode code;
  std::string message;
};

[[noreturn]] void reject_bad(std::string message) { throw Reject{ErrorCode::bad_request, std::move(message)}; }

// Nesting depth outside strings, counted without parsing, so a hostile "[[[[..." is refused cheaply.
bool nesting_exceeds(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') --depth;
  }
  return false;
}

class Fields {
 public:
  Fields(const json& object, std::string_view cmd) : object_(object), cmd_(cmd) {}

  // Rejects fields other than id, cmd and `allowed`.
  void only(std::initializer_list<std::string_view> allowed) const {
    for (const auto& [key, value] : object_.items()) {
      if (key == "id" || key == "cmd" || key == "deadline_ms" || key == "protocol") continue;
      bool known = false;
      for (auto a : allowed) known = known || key == a;
      if (!known) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        reject_bad("unknown field " + field_quote(key) + " for command '" + std::string(cmd_) + "'" +
                   (list.empty() ? " (it takes no fields)" : " (allowed: " + list + ")"));
      }
    }
  }

  const json* find(std::string_view name) const {
    auto it = object_.find(name);
    return it == object_.end() ? nullptr : &*it;
  }

  std::optional<std::string> string(std::string_view name, bool required, bool allow_empty) const {
    const json* v = find(name);
    if (!v) {
      if (required) reject_bad("missing field '" + std::string(name) + "' (a string) for command '" +
                               std::string(cmd_) + "'");
      return std::nullopt;
    }
    if (!v->is_string()) reject_bad("field '" + std::string(name) + "' must be a string, not " +
                                    std::string(json_type_name(*v)));
    const auto& s = v->get_ref<const std::string&>();
    if (!allow_empty && s.empty()) reject_bad("field '" + std::string(name) + "' must not be empty");
    return s;
  }

  std::optional<bool> boolean(std::string_view name, bool required) const {
    const json* v = find(name);
    if (!v) {
      if (required) reject_bad("missing field '" + std::string(name) + "' (true or false) for command '" +
                               std::string(cmd_) + "'");
      return std::nullopt;
    }
    if (!v->is_boolean()) reject_bad("field '" + std::string(name) + "' must be true or false, not " +
                                     std::string(json_type_name(*v)));
    return v->get<bool>();
  }

 private:
  const json& object_;
  std::string_view cmd_;
};

SamplingUpdate parse_sampling(const json& v) {
  if (!v.is_object()) reject_bad("field 'sampling' must be an object, not " + std::string(json_type_name(v)));
  if (v.empty()) reject_bad("field 'sampling' needs at least one of temperature, top_k, top_p, repetition_penalty, seed");
  SamplingUpdate u;
  for (const auto& [key, value] : v.items()) {
    std::optional<std::optional<double>>* slot = key == "temperature"          ? &u.temperature
                                                 : key == "top_k"              ? &u.top_k
                                                 : key == "top_p"              ? &u.top_p
                                                 : key == "repetition_penalty" ? &u.repetition_penalty
                                                 : key == "seed"               ? &u.seed
                                                                               : nullptr;
    if (!slot)
      reject_bad("unknown field " + field_quote("sampling." + key) +
                 " (allowed: temperature, top_k, top_p, repetition_penalty, seed)");
    if (value.is_null()) {
      *slot = std::optional<double>();
      continue;
    }
    if (!value.is_number())
      reject_bad("field 'sampling." + key + "' must be a number or null, not " + std::string(json_type_name(value)));
    const double d = value.get<double>();
    if (const std::string problem = sampling_problem(key, d); !problem.empty())
      reject_bad("field 'sampling." + key + "' " + problem + ", got " + value.dump());
    *slot = d;
  }
  return u;
}

// ask's tool_choice: "auto" | "none" | "required" | {"name": TOOL}.
void parse_tool_choice(const json& v, AskRequest& ask) {
  const std::string rule = "field 'tool_choice' must be \"auto\", \"none\", \"required\" or {\"name\": TOOL}";
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s != "auto" && s != "none" && s != "required") reject_bad(rule + ", got " + field_quote(s));
    ask.tool_choice = s;
    return;
  }
  if (!v.is_object()) reject_bad(rule + ", not " + std::string(json_type_name(v)));
  for (const auto& [key, value] : v.items())
    if (key != "name") reject_bad("unknown field " + field_quote("tool_choice." + key) + " (allowed: name)");
  const auto name = v.find("name");
  if (name == v.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    reject_bad("field 'tool_choice.name' must be a non-empty string (a registered tool)");
  ask.tool_name = name->get<std::string>();
}

// ask's response_format: {"type": "json_schema", "schema": {...}}; the schema's text is taken from the
// ordered parse (parse_request), so only its shape is checked here.
void check_response_format(const json& v) {
  if (!v.is_object()) reject_bad("field 'response_format' must be an object, not " + std::string(json_type_name(v)));
  for (const auto& [key, value] : v.items())
    if (key != "type" && key != "schema")
      reject_bad("unknown field " + field_quote("response_format." + key) + " (allowed: type, schema)");
  const auto type = v.find("type");
  if (type == v.end() || !type->is_string() || type->get<std::string>() != "json_schema")
    reject_bad("field 'response_format.type' must be \"json_schema\"");
  const auto schema = v.find("schema");
  if (schema == v.end() || !schema->is_object())
    reject_bad("field 'response_format.schema' must be an object (a JSON Schema)");
}

// ask's images: the array's size is checked before anything is taken from it.
std::vector<AskImage> parse_images(const json& v) {
  if (!v.is_array())
    reject_bad("field 'images' must be an array of {\"path\": ...} or {\"base64\": ..., \"format\": ...}, not " +
               std::string(json_type_name(v)));
  if (v.empty()) reject_bad("field 'images' is empty (leave it out for a turn without images)");
  if (v.size() > kMaxAskImages)
    reject_bad("field 'images' has " + std::to_string(v.size()) + " images; an ask takes at most " +
               std::to_string(kMaxAskImages));
  std::vector<AskImage> images(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const json& item = v[i];
    const std::string where = "images[" + std::to_string(i) + "]";
    if (!item.is_object()) reject_bad(where + " must be an object, not " + std::string(json_type_name(item)));
    for (const auto& [key, value] : item.items())
      if (key != "path" && key != "base64" && key != "format")
        reject_bad("unknown field " + field_quote(where + "." + key) + " (allowed: path, or base64 and format)");
    const auto path = item.find("path");
    const auto b64 = item.find("base64");
    const auto format = item.find("format");
    if ((path == item.end()) == (b64 == item.end()))
      reject_bad(where + " needs exactly one of 'path' (an absolute file name) and 'base64' (the file's bytes)");
    AskImage& image = images[i];
    if (path != item.end()) {
      if (format != item.end())
        reject_bad(where + ".format is only for base64 images (a file's format is read from its first bytes)");
      if (!path->is_string()) reject_bad(where + ".path must be a string, not " + std::string(json_type_name(*path)));
      const auto& p = path->get_ref<const std::string&>();
      if (p.empty()) reject_bad(where + ".path must not be empty");
      if (p.size() > kMaxImagePathBytes)
        reject_bad(where + ".path is " + std::to_string(p.size()) + " bytes; at most " +
                   std::to_string(kMaxImagePathBytes));
      if (p.find('\0') != std::string::npos) reject_bad(where + ".path contains a NUL character");
      if (p[0] != '/')
        reject_bad(where + ".path " + field_quote(p) +
                   " is not absolute (omnid does not share the client's working directory)");
      image.path = p;
      continue;
    }
    if (!b64->is_string()) reject_bad(where + ".base64 must be a string, not " + std::string(json_type_name(*b64)));
    if (format == item.end()) reject_bad(where + " needs 'format' (\"png\" or \"jpeg\") next to 'base64'");
    if (!format->is_string() || (*format != "png" && *format != "jpeg"))
      reject_bad(where + ".format must be \"png\" or \"jpeg\", not " +
                 (format->is_string() ? field_quote(format->get<std::string>()) : std::string(json_type_name(*format))));
    const auto& text = b64->get_ref<const std::string&>();
    if (text.empty()) reject_bad(where + ".base64 is empty (an image needs its file's bytes)");
    if (text.size() > kMaxImageBase64Bytes)
      reject_bad(where + ".base64 is " + std::to_string(text.size()) + " characters; at most " +
                 std::to_string(kMaxImageBase64Bytes) + " (" + std::to_string(kMaxImageBase64Bytes / 4 * 3) +
                 " bytes of file)");
    std::string error;
    if (!decode_base64(text, image.bytes, error)) reject_bad(where + ".base64 is not valid base64: " + error);
    image.format = format->get<std::string>();
  }
  return images;
}

void require_no_binary(const std::optional<std::string>& binary, std::string_view cmd) {
  if (binary)
    reject_bad("command '" + std::string(cmd) +
               "' takes no binary frame (only 'ask' accepts WAV bytes, and 'push_audio' PCM)");
}

Command parse_command(const std::string& cmd, const json& object, std::optional<std::string>& binary) {
  Fields f(object, cmd);
  if (cmd == "ping" || cmd == "status" || cmd == "reset" || cmd == "reload") {
    f.only({});
    require_no_binary(binary, cmd);
    if (cmd == "ping") return PingRequest{};
    if (cmd == "status") return StatusRequest{};
    if (cmd == "reset") return ResetRequest{};
    return ReloadRequest{};
  }
  if (cmd == "ask") {
    f.only({"text", "speak", "max_new_tokens", "sampling", "speaker", "queue", "preempt", "tool_choice",
            "response_format", "images", "camera"});
    AskRequest ask;
    ask.text = f.string("text", false, false);
    if (const json* v = f.find("images")) ask.images = parse_images(*v);
    if (const json* v = f.find("max_new_tokens")) {
      const bool in_range = (v->is_number_unsigned() || v->is_number_integer()) && v->get<std::int64_t>() >= 1 &&
                            v->get<std::int64_t>() <= kMaxNewTokensLimit;
      if (!in_range)
        reject_bad("field 'max_new_tokens' must be an integer in 1.." + std::to_string(kMaxNewTokensLimit) +
                   ", not " + (v->is_number() ? v->dump() : std::string(json_type_name(*v))));
      ask.max_new_tokens = v->get<int>();
    }
    if (const json* v = f.find("sampling")) ask.sampling = parse_sampling(*v);
    ask.speaker = f.string("speaker", false, false);
    ask.queue = f.boolean("queue", false).value_or(false);
    ask.camera = f.boolean("camera", false).value_or(false);
    ask.preempt = f.boolean("preempt", false).value_or(false);
    if (ask.queue && ask.preempt)
      reject_bad("fields 'queue' and 'preempt' exclude each other (queue: wait for the running turn; preempt: cancel it)");
    if (const json* v = f.find("tool_choice")) parse_tool_choice(*v, ask);
    if (const json* v = f.find("response_format")) {
      check_response_format(*v);
      if (ask.tool_name || (ask.tool_choice && *ask.tool_choice != "none"))
        reject_bad("fields 'tool_choice' and 'response_format' cannot be combined (a structured answer makes no calls)");
      ask.response_schema = v->at("schema").dump();  // replaced by the ordered text in parse_request
    }
    // A structured answer is data for an app: not spoken unless asked.
    ask.speak = f.boolean("speak", false).value_or(!ask.response_schema);
    if (binary) {
      const std::string& b = *binary;
      if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0)
        reject_bad("binary frame is not a WAV file (" + std::to_string(b.size()) +
                   " bytes without a RIFF....WAVE header)");
      ask.wav = std::move(binary);
    }
    if (!ask.text && !ask.wav && ask.images.empty() && !ask.camera)
      reject_bad("command 'ask' needs field 'text', 'images', 'camera' or a WAV binary frame");
    return ask;
  }
  if (cmd == "push_audio") {
    f.only({"sample_rate", "format"});
    PushAudioRequest push;
    const json* rate = f.find("sample_rate");
    if (!rate) reject_bad("command 'push_audio' needs field 'sample_rate'");
    const bool rate_ok = (rate->is_number_unsigned() || rate->is_number_integer()) &&
                         rate->get<std::int64_t>() >= kMinPushAudioRate && rate->get<std::int64_t>() <= kMaxPushAudioRate;
    if (!rate_ok)
      reject_bad("field 'sample_rate' must be an integer in " + std::to_string(kMinPushAudioRate) + ".." +
                 std::to_string(kMaxPushAudioRate) + ", not " +
                 (rate->is_number() ? rate->dump() : std::string(json_type_name(*rate))));
    push.sample_rate = rate->get<int>();
    const std::string format = *f.string("format", true, false);
    if (format != "s16le" && format != "f32le")
      reject_bad("field 'format' must be \"s16le\" or \"f32le\", not " + field_quote(format));
    push.f32 = format == "f32le";
    if (!binary) reject_bad("command 'push_audio' needs a binary frame with the PCM");
    const std::size_t width = push.f32 ? 4 : 2;
    if (binary->empty() || binary->size() > kMaxPushAudioBytes || binary->size() % width != 0)
      reject_bad("binary frame of 'push_audio' must be 1.." + std::to_string(kMaxPushAudioBytes) +
                 " bytes of whole " + format + " samples (" + std::to_string(width) + " bytes each), not " +
                 std::to_string(binary->size()) + " bytes");
    push.pcm = std::move(*binary);
    binary.reset();
    return push;
  }
  if (cmd == "say") {
    f.only({"text"});
    require_no_binary(binary, cmd);
    return SayRequest{*f.string("text", true, false)};
  }
  if (cmd == "cancel") {
    f.only({"turn_id"});
    require_no_binary(binary, cmd);
    CancelRequest cancel;
    if (const json* v = f.find("turn_id")) {
      bool positive_integer = (v->is_number_unsigned() && v->get<std::uint64_t>() >= 1) ||
                              (v->is_number_integer() && v->get<std::int64_t>() >= 1);
      if (!positive_integer)
        reject_bad("field 'turn_id' must be a positive integer, not " +
                   (v->is_number() ? v->dump() : std::string(json_type_name(*v))));
      cancel.turn_id = v->get<std::uint64_t>();
    }
    return cancel;
  }
  if (cmd == "listen") {
    f.only({"enabled"});
    require_no_binary(binary, cmd);
    return ListenRequest{*f.boolean("enabled", true)};
  }
  if (cmd == "set") {
    f.only({"speaker", "volume", "system_prompt", "sampling"});
    require_no_binary(binary, cmd);
    SetRequest set;
    set.speaker = f.string("speaker", false, false);
    set.system_prompt = f.string("system_prompt", false, true);
    if (const json* v = f.find("volume")) {
      if (!v->is_number()) reject_bad("field 'volume' must be a number in [0, 1], not " +
                                      std::string(json_type_name(*v)));
      double volume = v->get<double>();
      if (!std::isfinite(volume) || volume < 0.0 || volume > 1.0)
        reject_bad("field 'volume' must be in [0, 1], got " + v->dump());
      set.volume = volume;
    }
    if (const json* v = f.find("sampling")) set.sampling = parse_sampling(*v);
    if (!set.speaker && !set.volume && !set.system_prompt && !set.sampling)
      reject_bad("command 'set' needs at least one of 'speaker', 'volume', 'system_prompt', 'sampling'");
    return set;
  }
  if (cmd == "register_tools") {
    f.only({"tools"});
    require_no_binary(binary, cmd);
    const json* v = f.find("tools");
    if (!v) reject_bad("missing field 'tools' (an array of function tools) for command 'register_tools'");
    if (!v->is_array()) reject_bad("field 'tools' must be an array, not " + std::string(json_type_name(*v)));
    if (v->size() > kMaxToolsPerRequest)
      reject_bad("field 'tools' has " + std::to_string(v->size()) + " tools; at most " +
                 std::to_string(kMaxToolsPerRequest));
    for (std::size_t i = 0; i < v->size(); ++i)
      if (!(*v)[i].is_object())
        reject_bad("tools[" + std::to_string(i) + "] must be an object, not " + std::string(json_type_name((*v)[i])));
    return RegisterToolsRequest{v->dump()};  // replaced by the ordered text in parse_request
  }
  if (cmd == "unregister_tools") {
    f.only({});
    require_no_binary(binary, cmd);
    return UnregisterToolsRequest{};
  }
  if (cmd == "tool_result") {
    f.only({"call_id", "content", "is_error"});
    require_no_binary(binary, cmd);
    ToolResultRequest r;
    r.call_id = *f.string("call_id", true, false);
    if (r.call_id.size() > kMaxCallIdBytes)
      reject_bad("field 'call_id' is " + std::to_string(r.call_id.size()) + " bytes; call ids are at most " +
                 std::to_string(kMaxCallIdBytes));
    r.content = *f.string("content", true, true);
    if (r.content.size() > kMaxToolResultBytes)
      reject_bad("field 'content' is " + std::to_string(r.content.size()) + " bytes; at most " +
                 std::to_string(kMaxToolResultBytes));
    r.is_error = f.boolean("is_error", false).value_or(false);
    return r;
  }
  if (cmd == "events") {
    f.only({"since", "topics"});
    require_no_binary(binary, cmd);
    EventsRequest events;
    const json* since = f.find("since");
    if (!since) reject_bad("missing field 'since' (the last seq the client has; 0: everything buffered)");
    if (!since->is_number_unsigned() && !(since->is_number_integer() && since->get<std::int64_t>() >= 0))
      reject_bad("field 'since' must be an integer >= 0, not " +
                 (since->is_number() ? since->dump() : std::string(json_type_name(*since))));
    events.since = since->get<std::uint64_t>();
    if (const json* topics = f.find("topics")) {
      if (!topics->is_array()) reject_bad("field 'topics' must be a list of strings");
      for (const json& t : *topics) {
        if (!t.is_string()) reject_bad("field 'topics' must be a list of strings, not " +
                                       std::string(json_type_name(t)) + " inside it");
        events.topics.push_back(t.get<std::string>());
      }
    }
    return events;
  }
  std::string known;
  for (auto n : kCommandNames) known += (known.empty() ? "" : ", ") + std::string(n);
  throw Reject{ErrorCode::unknown_command, "unknown command " + field_quote(cmd) + " (known: " + known + ")"};
}

// Tool definitions and schemas are rendered into the prompt and generated in their own key order (the
// order of "properties" is the order arguments are written in); `json` sorts keys, so these fields are
// taken from an order-keeping parse of the same, already validated, frame.
void keep_key_order(Command& command, std::string_view json_frame) {
  auto* tools = std::get_if<RegisterToolsRequest>(&command);
  auto* ask = std::get_if<AskRequest>(&command);
  if (!tools && !(ask && ask->response_schema)) return;
  const auto ordered = nlohmann::ordered_json::parse(json_frame, nullptr, false);
  if (ordered.is_discarded() || !ordered.is_object()) return;  // not reached: the frame parsed above
  if (tools) tools->tools_json = ordered.at("tools").dump();
  else ask->response_schema = ordered.at("response_format").at("schema").dump();
}

}  // namespace

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::bad_request: return "bad_request";
    case ErrorCode::unknown_command: return "unknown_command";
    case ErrorCode::busy: return "busy";
    case ErrorCode::too_large: return "too_large";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::unavailable: return "unavailable";
    case ErrorCode::internal: return "internal";
    case ErrorCode::expired: return "expired";
    case ErrorCode::context_full: return "context_full";
  }
  return "internal";
}

std::optional<ErrorCode> error_code_from_string(std::string_view name) {
  for (auto c : {ErrorCode::bad_request, ErrorCode::unknown_command, ErrorCode::busy, ErrorCode::too_large,
                 ErrorCode::not_found, ErrorCode::unavailable, ErrorCode::internal, ErrorCode::expired,
                 ErrorCode::context_full})
    if (to_string(c) == name) return c;
  return std::nullopt;
}

std::string_view command_name(const Command& command) { return kCommandNames[command.index()]; }

ParseResult parse_request(std::string_view json_frame, std::optional<std::string> binary_frame) {
  ParseResult result;
  try {
    if (json_frame.empty()) reject_bad("request frame is empty (expected a JSON object)");
    if (nesting_exceeds(json_frame, kMaxJsonDepth))
      reject_bad("request is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    json object = json::parse(json_frame, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded()) {
      // Re-parse with exceptions only to get the position for the message.
      try {
        json ignored = json::parse(json_frame);
        (void)ignored;
      } catch (const json::parse_error& e) {
        reject_bad("request is not valid UTF-8 JSON (error at byte " + std::to_string(e.byte) + ")");
      } catch (const json::exception& e) {  // e.g. out_of_range: a number too large for a double
        std::string what = e.what();
        auto bracket = what.find("] ");
        reject_bad("request is not valid JSON: " + (bracket == std::string::npos ? what : what.substr(bracket + 2)));
      }
      reject_bad("request is not valid UTF-8 JSON");
    }
    if (!object.is_object()) reject_bad("request must be a JSON object, not " + std::string(json_type_name(object)));
    auto id = object.find("id");
    if (id == object.end()) reject_bad("missing field 'id' (any JSON value, echoed in the reply)");
    result.id = *id;
    auto cmd = object.find("cmd");
    if (cmd == object.end()) reject_bad("missing field 'cmd' (a string)");
    if (!cmd->is_string()) reject_bad("field 'cmd' must be a string, not " + std::string(json_type_name(*cmd)));
    Command command = parse_command(cmd->get<std::string>(), object, binary_frame);
    result.request.emplace();
    result.request->id = result.id;
    result.request->command = std::move(command);
    if (auto d = object.find("deadline_ms"); d != object.end()) {
      if ((!d->is_number_integer() && !d->is_number_unsigned()) ||
          (d->is_number_unsigned() && d->get<std::uint64_t>() > std::uint64_t(INT64_MAX)))
        reject_bad("field 'deadline_ms' must be an integer (Unix time in ms), not " +
                   (d->is_number() ? d->dump() : std::string(json_type_name(*d))));
      result.request->deadline_ms = d->get<std::int64_t>();
    }
    if (auto p = object.find("protocol"); p != object.end()) {
      if (!p->is_number_integer() || p->get<std::int64_t>() < kOldestProtocolVersion ||
          p->get<std::int64_t>() > kProtocolVersion)
        reject_bad("field 'protocol' must be " + std::to_string(kOldestProtocolVersion) + " or " +
                   std::to_string(kProtocolVersion) + " (the versions this omnid speaks), not " + p->dump());
      result.request->protocol = p->get<int>();
    }
    keep_key_order(result.request->command, json_frame);
  } catch (const Reject& r) {
    result.request.reset();
    result.error = Error{r.code, r.message};
  } catch (const json::exception& e) {  // not expected: every access above is type-checked
    result.error = Error{ErrorCode::internal, std::string("request validation failed: ") + e.what()};
  }
  return result;
}

json ok_reply(const json& id, const json& fields) {
  json reply = fields.is_object() ? fields : json::object();
  reply["id"] = id;
  reply["ok"] = true;
  return reply;
}

json error_reply(const json& id, ErrorCode code, std::string_view message) {
  return json{{"id", id}, {"ok", false}, {"error", {{"code", to_string(code)}, {"message", message}}}};
}

std::string serialize(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

bool is_known_event(std::string_view name) {
  for (auto known : {event::kState, event::kVadStart, event::kVadEnd, event::kTurnStart, event::kResponseDelta,
                     event::kResponseDone, event::kSpeechStart, event::kSpeechFirstAudio, event::kSpeechAudio, event::kSpeechEnd,
                     event::kTurnCancelled, event::kError, event::kHeartbeat, event::kDaemonLoading,
                     event::kDaemonReady, event::kDaemonStopping, event::kUserTranscript,
                     event::kTurnQueued, event::kToolCall, event::kToolTimeout, event::kToolCancelled})
    if (name == known) return true;
  return false;
}

EventFrames build_event(std::string_view name, const json& fields, std::uint64_t seq, std::int64_t ts_ms) {
  json body = fields.is_object() ? fields : json::object();
  body["seq"] = seq;
  body["ts_ms"] = ts_ms;
  return EventFrames{std::string(name), serialize(body)};
}

std::string encode_base64(const std::uint8_t* data, std::size_t size) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (std::size_t i = 0; i < size; i += 3) {
    const std::size_t n = std::min<std::size_t>(3, size - i);
    std::uint32_t v = std::uint32_t(data[i]) << 16;
    if (n > 1) v |= std::uint32_t(data[i + 1]) << 8;
    if (n > 2) v |= data[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += n > 1 ? kAlphabet[(v >> 6) & 63] : '=';
    out += n > 2 ? kAlphabet[v & 63] : '=';
  }
  return out;
}

bool decode_base64(std::string_view text, std::vector<std::uint8_t>& out, std::string& error) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  out.clear();
  if (text.size() % 4 != 0) {
    error = std::to_string(text.size()) + " characters is not a multiple of 4 (padded base64 is expected)";
    return false;
  }
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  for (std::size_t i = 0; i < text.size() - pad; ++i) {
    if (value(text[i]) < 0) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      error = "character " + std::to_string(i) + " is " +
              (c == '=' ? std::string("'=' before the end")
               : c > 32 && c < 127 ? "'" + std::string(1, char(c)) + "'"
                                   : "byte " + std::to_string(unsigned(c))) +
              " (the standard alphabet A-Z a-z 0-9 + /, no whitespace)";
      return false;
    }
  }
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const int a = value(text[i]), b = value(text[i + 1]);
    const int c = text[i + 2] == '=' ? 0 : value(text[i + 2]);
    const int d = text[i + 3] == '=' ? 0 : value(text[i + 3]);
    const std::uint32_t n = std::uint32_t(a) << 18 | std::uint32_t(b) << 12 | std::uint32_t(c) << 6 | std::uint32_t(d);
    out.push_back(std::uint8_t(n >> 16));
    if (text[i + 2] != '=') out.push_back(std::uint8_t(n >> 8));
    if (text[i + 3] != '=') out.push_back(std::uint8_t(n));
  }
  // Bits the last character carries past the data must be zero (a canonical encoding).
  if (pad > 0) {
    const int last = value(text[text.size() - pad - 1]);
    if ((pad == 1 && (last & 0x3)) || (pad == 2 && (last & 0xF))) {
      error = "the character before the padding has bits set past the data (not a canonical encoding)";
      out.clear();
      return false;
    }
  }
  return true;
}

std::string sampling_problem(std::string_view key, double v) {
  const bool integral = std::isfinite(v) && v == std::floor(v);
  if (key == "temperature") return std::isfinite(v) && v >= 0 && v <= 100 ? "" : "must be 0 (greedy) or in (0, 100]";
  if (key == "top_k") return integral && v >= 0 && v <= 1e6 ? "" : "must be an integer in [0, 1000000] (0: off)";
  if (key == "top_p") return v > 0 && v <= 1 ? "" : "must be in (0, 1] (1: off)";
  if (key == "repetition_penalty") return v > 0 && v <= 10 ? "" : "must be in (0, 10] (1: off)";
  if (key == "seed") return integral && v >= 0 && v <= 9007199254740992.0 ? "" : "must be an integer in [0, 2^53]";
  return "is not a sampling key (temperature, top_k, top_p, repetition_penalty, seed)";
}

}  // namespace omni::ipc
