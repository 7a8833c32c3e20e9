// omnid control protocol 2 (v1 clients keep working): request parsing/validation, reply and event builders.
// The full wire contract (every command, reply field and event) is docs/protocol.md; this header is its C++ face.
//
// Framing
//   request : frame 1 = UTF-8 JSON object {"id": <any JSON>, "cmd": "<name>", ...fields}
//             frame 2 = optional binary frame (WAV bytes; only `ask` accepts it)
//   request fields every command accepts (protocol 2): "protocol": the version the client speaks (1 or 2; a
//             higher one is bad_request), "deadline_ms": Unix time in ms after which the request must not run
//             (it is answered `expired` instead: a request queued while omnid was down never runs late)
//   reply   : one UTF-8 JSON frame, {"id": <same>, "ok": true, ...fields}
//             or {"id": <same>, "ok": false, "error": {"code": "<code>", "message": "<text>"}}
//             "id" is null when the request's id could not be read (not JSON, not an object, no "id").
//   event   : frame 1 = event name (the SUB topic), frame 2 = JSON {"seq", "ts_ms", ["turn_id"], ...fields}
//
// Validation is strict: a field of the wrong type, a missing field and an unknown field are all `bad_request`
// with a message that names the field. Requests nested deeper than kMaxJsonDepth are refused before parsing.
//
// Commands and their typed requests (what the daemon must reply is in docs/protocol.md and repeated here):
//   every reply (protocol 2) also carries "instance" (this daemon process's id; it changes at each start) and
//   "seq" (the last event seq published when the reply was sent)
//   ping                       -> answered by ControlServer itself: {"protocol": 2, "protocols": [1, 2]}
//   events {since, topics?}    -> answered by ControlServer itself: {"events": [{"event": NAME, "seq", ...}, ...],
//                                 "oldest_seq": int, "complete": bool}: the buffered events after seq `since`
//                                 (the last ServerConfig::event_history), only those whose name starts with one
//                                 of `topics` when given; complete is false when some after `since` have left
//                                 the buffer
//   status                     -> {"state": "loading|idle|listening|thinking|speaking", "listening": bool,
//                                  "speaker": str, "volume": num, "turn_id": int|null, "seq": int (last event
//                                  seq published), "uptime_s": num, "model": {"path": str, "device": str,
//                                  "loaded": bool}, "context_tokens_used": int, "context_tokens": int,
//                                  "protocol": 1}
//   ask {text?, speak?=true, max_new_tokens?, sampling?, speaker?, queue?, preempt?} + optional WAV frame (at
//                                least one of text / WAV; max_new_tokens, sampling and speaker apply to this turn
//                                only) -> {"turn_id": int} at once, or {"turn_id", "queued": true, "position"}
//                              -> {"turn_id": int} at once; the answer follows as events.
//                                 errors: busy (a turn is running and cannot be queued), unavailable (model not
//                                 loaded), bad_request (WAV cannot be decoded; message says why)
//   say {text}                 -> {"turn_id": int}; speaks text verbatim (speech.* events, no response.*)
//   cancel {turn_id?}          -> {"turn_id": int|null} (the cancelled turn; null: nothing was running).
//                                 turn_id is a positive integer; not_found when it names a turn that is not running
//   listen {enabled}           -> {"listening": bool}
//   reset                      -> {} (cancels a running turn, forgets the conversation)
//   set {speaker?, volume?, system_prompt?, sampling?} (one or more)
//                              -> {"speaker": str, "volume": num, "system_prompt": str, "sampling": {...}} (the
//                                 values now in effect);
//                                 not_found for an unknown speaker. volume is a number in [0, 1] (0 mute,
//                                 1 full scale, linear gain); speaker a non-empty string; system_prompt any
//                                 string ("" = no system prompt). sampling: an object of temperature, top_k,
//                                 top_p, repetition_penalty, seed (each a number in the range of
//                                 sampling_problem, or null: back to the checkpoint's value).
//   reload                     -> an object describing what was applied; a bad config file -> unavailable (message
//                                 names key and line), the running configuration is kept.
//   register_tools {tools}     -> {"tools": [names], "owner": str}; the client's tools (OpenAI-style function tools)
//                                 replace its earlier set. bad_request names the field of a tool outside the
//                                 supported schema subset or a name another client holds; busy during a turn.
//   unregister_tools           -> {"removed": int}
//   tool_result {call_id, content, is_error?=false}
//                              -> {"call_id", "turn_id", "waiting": int (calls of the round still unanswered)};
//                                 not_found for an unknown, answered or expired call id.
//   ask also takes images ([{"path": ABS} | {"base64": B64, "format": "png"|"jpeg"}], at most kMaxAskImages; the
//   reply then comes once the daemon has decoded them: bad_request names images[i] and the problem, context_full
//   when they do not fit) and tool_choice ("auto"|"none"|"required"|{"name": TOOL}) and response_format
//   ({"type": "json_schema", "schema": {...}}; speak then defaults to false).
// Replies and events may carry more fields than listed; clients ignore unknown ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace omni::ipc {

inline constexpr int kProtocolVersion = 2;
inline constexpr int kOldestProtocolVersion = 1;
inline constexpr int kMaxJsonDepth = 64;  // arrays/objects nested deeper than this are bad_request

enum class ErrorCode {
  bad_request,      // not JSON, not an object, missing / wrong-typed / unknown field, malformed multipart
  unknown_command,  // "cmd" names no command
  busy,             // the daemon cannot take this now (e.g. a turn is running)
  too_large,        // the request is larger than max_message_bytes
  not_found,        // a named thing does not exist (turn_id, speaker)
  unavailable,      // the daemon cannot serve this at all now (model not loaded, reload failed, ...)
  internal,         // a bug or an unexpected failure inside omnid
  expired,          // the request's deadline_ms passed before it could run; it was not run
  context_full,     // the turn does not fit in the context (model.context_tokens), even with older turns dropped
};

std::string_view to_string(ErrorCode code);
std::optional<ErrorCode> error_code_from_string(std::string_view name);

struct Error {
  ErrorCode code;
  std::string message;
};

struct PingRequest {};
struct StatusRequest {};
// `set`'s and `ask`'s sampling: each key present replaces the running value; a present null (an empty inner
// optional) makes it unset again, so that the checkpoint's value applies. Values are checked by sampling_problem.
struct SamplingUpdate {
  std::optional<std::optional<double>> temperature, top_k, top_p, repetition_penalty, seed;
};
inline constexpr int kMaxNewTokensLimit = 32768;  // the largest max_new_tokens a request (or model.max_new_tokens) takes
// ask's images (docs/protocol.md "ask"): at most kMaxAskImages per ask; a base64 image's text is at most
// kMaxImageBase64Bytes (16 MiB, the default ipc.max_message_bytes: ~12 MiB of file); a path at most
// kMaxImagePathBytes.
inline constexpr std::size_t kMaxAskImages = 8;
inline constexpr std::size_t kMaxImageBase64Bytes = std::size_t(16) << 20;
inline constexpr std::size_t kMaxImagePathBytes = 4096;
struct AskImage {
  std::string path;                // {"path": "/abs/file.png"}: absolute, no NUL byte; the daemon reads the file
  std::vector<std::uint8_t> bytes;  // {"base64": ..., "format": ...}: the decoded file, non-empty
  std::string format;              // with bytes: "png" | "jpeg"
};
struct AskRequest {
  std::optional<std::string> text;  // non-empty when present
  bool speak = true;
  std::optional<std::string> wav;   // raw bytes of the binary frame; starts with a RIFF/WAVE header
  // This turn only (protocol 2): the answer's length bound in 1..kMaxNewTokensLimit, sampling over the
  // daemon's (each key present replaces it, null: the checkpoint's value), and the voice (non-empty).
  std::optional<int> max_new_tokens;
  bool queue = false;    // while a turn runs: wait in the daemon's bounded queue instead of `busy`
  bool preempt = false;  // while a turn runs: cancel it (reason preempt) and start this one; not with queue
  std::optional<SamplingUpdate> sampling;
  std::optional<std::string> speaker;
  // Tool calls (docs/protocol.md "Tools"): "auto" | "none" | "required", or tool_name set ({"name": TOOL}).
  std::optional<std::string> tool_choice;
  std::optional<std::string> tool_name;  // non-empty
  // response_format {"type": "json_schema", "schema": S}: S as JSON text, key order as sent.
  std::optional<std::string> response_schema;
  // In the user turn after the audio, before the text, in this order.
  std::vector<AskImage> images;
  bool camera = false;  // attach the camera's latest frame (after the images)
};

// Strict RFC 4648 base64 (the standard alphabet, '=' padding to a multiple of 4, no whitespace). false:
// `error` says what is wrong and where (the offset of the first bad character).
bool decode_base64(std::string_view text, std::vector<std::uint8_t>& out, std::string& error);
// The padded standard encoding decode_base64 takes (omnictl ask --image --inline).
std::string encode_base64(const std::uint8_t* data, std::size_t size);
struct SayRequest {
  std::string text;  // non-empty
};
struct CancelRequest {
  std::optional<std::uint64_t> turn_id;  // >= 1; absent: cancel whatever turn is running
};
struct ListenRequest {
  bool enabled = false;
};
struct ResetRequest {};
struct SetRequest {  // at least one member is set
  std::optional<std::string> speaker;        // non-empty
  std::optional<double> volume;              // in [0, 1]
  std::optional<std::string> system_prompt;  // may be empty
  std::optional<SamplingUpdate> sampling;    // at least one key
};

// The keys of a sampling setting (model.sampling in the configuration, `set`'s sampling) and the one rule for
// their values: "" when `value` is valid for `key`, else what is wrong ("must be in (0, 1] (1: off)").
//   temperature 0 (greedy) or (0, 100]; top_k an integer in [0, 1000000] (0: off); top_p in (0, 1];
//   repetition_penalty in (0, 10]; seed an integer in [0, 2^53].
inline constexpr std::string_view kSamplingKeys[] = {"temperature", "top_k", "top_p", "repetition_penalty", "seed"};
std::string sampling_problem(std::string_view key, double value);
struct ReloadRequest {};
// Microphone audio from the client (audio.input.source: ipc): mono PCM in the binary frame.
inline constexpr std::size_t kMaxPushAudioBytes = std::size_t(1) << 20;  // one request's PCM frame
inline constexpr int kMinPushAudioRate = 8000, kMaxPushAudioRate = 48000;
struct PushAudioRequest {
  int sample_rate = 16000;  // kMinPushAudioRate..kMaxPushAudioRate
  bool f32 = false;         // format: f32le (true) or s16le
  std::string pcm;          // 1..kMaxPushAudioBytes bytes, whole samples
};
struct EventsRequest {
  std::uint64_t since = 0;          // events with a larger seq
  std::vector<std::string> topics;  // name prefixes; empty: all
};

// Tools (docs/protocol.md "Tools"). The schemas inside are checked by the daemon (the engine's compiler).
inline constexpr std::size_t kMaxToolsPerRequest = 64;
inline constexpr std::size_t kMaxToolResultBytes = 65536;  // a result's content, as the model will read it
inline constexpr std::size_t kMaxCallIdBytes = 64;
struct RegisterToolsRequest {
  std::string tools_json;  // the "tools" array (at most kMaxToolsPerRequest objects), key order as sent
};
struct UnregisterToolsRequest {};
struct ToolResultRequest {
  std::string call_id;  // non-empty, at most kMaxCallIdBytes
  std::string content;  // at most kMaxToolResultBytes
  bool is_error = false;
};

using Command = std::variant<PingRequest, StatusRequest, AskRequest, SayRequest, CancelRequest, ListenRequest,
                             ResetRequest, SetRequest, ReloadRequest, EventsRequest, RegisterToolsRequest,
                             UnregisterToolsRequest, ToolResultRequest, PushAudioRequest>;

// The wire name of a command ("ping", "ask", ...).
std::string_view command_name(const Command& command);

struct Request {
  nlohmann::json id;  // echoed in the reply; any JSON value
  Command command;
  std::optional<std::int64_t> deadline_ms;  // Unix ms; past it the request is answered `expired`
  int protocol = kOldestProtocolVersion;    // the version the client says it speaks
};

// Result of parse_request: exactly one of `request` / `error` is set.
struct ParseResult {
  nlohmann::json id;                // the request's id; null when it could not be read
  std::optional<Request> request;
  std::optional<Error> error;
  bool ok() const { return request.has_value(); }
};

// Validates one request. Never throws on any input bytes (only std::bad_alloc can escape).
ParseResult parse_request(std::string_view json_frame, std::optional<std::string> binary_frame = std::nullopt);

// {"id": id, "ok": true, ...fields}. fields must be an object (or null for none); "id"/"ok" in it are overwritten.
nlohmann::json ok_reply(const nlohmann::json& id, const nlohmann::json& fields = nlohmann::json::object());
// {"id": id, "ok": false, "error": {"code": ..., "message": ...}}
nlohmann::json error_reply(const nlohmann::json& id, ErrorCode code, std::string_view message);

// Serializes a reply or event body. Invalid UTF-8 inside strings is replaced (U+FFFD), never thrown.
std::string serialize(const nlohmann::json& value);

// Event names (topics). Fields of each are in docs/protocol.md.
namespace event {
inline constexpr std::string_view kState = "state";                   // {state, previous}: loading|idle|listening|
                                                                      //   thinking|speaking
inline constexpr std::string_view kVadStart = "vad.start";            // {stream_ms}
inline constexpr std::string_view kVadEnd = "vad.end";                // {duration_ms, truncated}
inline constexpr std::string_view kTurnStart = "turn.start";          // {turn_id, source: voice|ask|say, text?, audio_ms?}
inline constexpr std::string_view kResponseDelta = "response.delta";  // {turn_id, text}
inline constexpr std::string_view kResponseDone = "response.done";    // {turn_id, text, tokens, stop, prefill_ms,
                                                                      //   decode_tok_s}
inline constexpr std::string_view kSpeechStart = "speech.start";      // {turn_id}
inline constexpr std::string_view kSpeechFirstAudio = "speech.first_audio";  // {turn_id, latency_ms}
inline constexpr std::string_view kSpeechAudio = "speech.audio";      // {turn_id, sample_rate, format, offset} + PCM frame; no seq
inline constexpr std::string_view kSpeechEnd = "speech.end";          // {turn_id, duration_ms, output}
inline constexpr std::string_view kTurnCancelled = "turn.cancelled";  // {turn_id, reason: request|reset|reload|
                                                                      //   barge_in|shutdown|error}
inline constexpr std::string_view kError = "error";                   // {code, message, turn_id?}
inline constexpr std::string_view kHeartbeat = "heartbeat";           // {state}; every 1 s
inline constexpr std::string_view kTurnQueued = "turn.queued";  // {turn_id, position}: an ask waits its turn
inline constexpr std::string_view kUserTranscript = "user.transcript";  // {turn_id, text}: after a voice turn
inline constexpr std::string_view kDaemonLoading = "daemon.loading";  // {fraction, what}: model load progress
inline constexpr std::string_view kDaemonReady = "daemon.ready";      // {instance, load_ms, device}
inline constexpr std::string_view kDaemonStopping = "daemon.stopping";  // {instance, exit_code}
inline constexpr std::string_view kToolCall = "tool.call";            // {turn_id, call_id, name, arguments}
inline constexpr std::string_view kToolTimeout = "tool.timeout";      // {turn_id, call_id, name, timeout_ms}
inline constexpr std::string_view kToolCancelled = "tool.cancelled";  // {turn_id, call_id, name, reason}
}  // namespace event

bool is_known_event(std::string_view name);

struct EventFrames {
  std::string topic;  // frame 1: the event name
  std::string body;   // frame 2: serialized JSON
};

// Builds an event: body = fields + {"seq": seq, "ts_ms": ts_ms}. fields must be an object (or null).
EventFrames build_event(std::string_view name, const nlohmann::json& fields, std::uint64_t seq, std::int64_t ts_ms);

}  // namespace omni::ipc
