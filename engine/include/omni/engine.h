// Public API of the omnid engine: load a Qwen3-Omni checkpoint once, hold conversations.
//
//   auto model = omni::Model::load({.model_dir = dir, .device = "cuda"});
//   auto session = model->new_session({.system_prompt = "You are ..."});
//   omni::UserTurn turn{.text = "What is on the table?", .images = {{.path = "table.jpg"}}};
//   omni::GenerateOptions opt; opt.speak = true;
//   omni::Callbacks cb{.on_text = [](std::string_view s){...}, .on_audio = [](const float* p, size_t n){...}};
//   omni::TurnResult r = session->respond(turn, opt, cb);
//
// The engine knows nothing of microphones, sockets or systemd. A Session is not thread-safe;
// use one thread per session. cancel() may be called from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "omni/errors.h"

namespace omni {

struct LoadOptions {
  std::string model_dir;
  std::string device = "cpu";  // "cpu" | "cuda"
  // Activations: "" (backend default), "f32", "bf16". CPU: f32 only. CUDA (bf16 weights either
  // way): f32 (default) keeps the KV cache in fp32 and feeds fp32-accurate inputs to the tensor
  // cores; bf16 stores and feeds bf16 (faster prefill, half the KV bytes; docs/performance.md).
  std::string dtype;
  // Weight storage: "bf16" | "int8" | "int4" for every quantizable part, or a list such as
  // "experts=int4,attention=int8,lm_head=bf16,talker=int4" (parts not named stay bf16).
  // Quantized at load time from the bf16 checkpoint; docs/config.md has the formats.
  std::string weights = "bf16";
  int context_tokens = 8192;   // KV cache capacity of a session
  bool load_talker = true;     // false: text only (talker + code2wav not loaded)
  // Progress while loading (0..1 and a short phrase), e.g. for systemd EXTEND_TIMEOUT_USEC.
  std::function<void(double fraction, const std::string& what)> on_progress;
};

// How the next token is chosen from the logits; the one description of sampling in the engine (the backends'
// SamplingParams extend it with token suppression, the talker's SpeechOptions hold one). The values here are
// "off": greedy, no top-k / top-p / penalty. A checkpoint's own defaults: Model::default_sampling().
struct Sampling {
  bool greedy = true;
  float temperature = 1.0f;         // > 0; used when sampling
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // in (0, 1]; 1: off
  float repetition_penalty = 1.0f;  // > 0; 1: off; applied when greedy too (as transformers does)
  uint64_t seed = 0;                // the random stream of one turn
};

struct GenerateOptions {
  int max_new_tokens = 256;
  Sampling sampling;
  bool speak = false;             // run talker + code2wav and deliver audio
  std::string speaker = "ethan";  // a name in the checkpoint's speaker_id (case-insensitive)
  int max_speech_frames = 4096;   // codec frames (80 ms each)
  // Teacher forcing, for accuracy comparisons (tools/quant_accuracy.py): step i feeds
  // forced_tokens[i] to the model instead of its own pick; TurnResult::tokens still holds the
  // picks, so two weight formats can be compared on the same contexts. Empty: off.
  std::vector<int32_t> forced_tokens;
  // Tool calls (docs/model.md "Tool calls"), when the session has tools: "auto" (the model decides;
  // a call is constrained from <tool_call> on), "none" (no call), "required" (the answer starts with
  // a call) or a tool's name (a call of that tool). Without tools only "auto" and "none" are valid.
  std::string tool_choice = "auto";
  int max_tool_calls = 8;  // calls in one answer
  // Structured answer: a JSON Schema (text, the tool-parameter subset); the whole answer is then
  // JSON valid under it (TurnResult::text). Empty: off.
  std::string response_schema;
  // false: a turn that would not fit in the context throws omni::Error before anything changes,
  // instead of dropping the oldest turns; a mark made before such a turn stays usable (speculative
  // turns, which may be rolled back).
  bool drop_oldest_turns = true;
};

struct Callbacks {
  // A piece of the answer's text as soon as it is complete UTF-8.
  std::function<void(std::string_view text)> on_text;
  // Each generated token id.
  std::function<void(int32_t token)> on_token;
  // Speech: mono float32 samples at speech_sample_rate(), in order, as they are made.
  std::function<void(const float* samples, size_t count)> on_audio;
  // Logits row (float32, vocab entries) that chose each generated token; for tools and tests.
  std::function<void(const float* logits, size_t vocab)> on_logits;
};

// An image in a user turn: a PNG or JPEG file, or its encoded bytes (decoded, resized and normalised as
// transformers' Qwen2-VL processor does, docs/model.md §5.5). A bad image throws ImageError naming it; images
// that need more tokens than the context holds throw ContextFullError.
struct ImageInput {
  std::string path;            // read when `bytes` is empty
  std::vector<uint8_t> bytes;  // the encoded file, or with format "rgb" the pixels
  std::string format;          // with bytes: "png" | "jpeg" | "rgb"; empty: from the bytes' signature
  int width = 0, height = 0;   // format "rgb": bytes hold height rows of width RGB pixels (8 bits each)
  // The most pixels the picture is resized to (a token budget: a camera frame); 0: the checkpoint's max_pixels.
  // Smaller than the checkpoint's min_pixels it is raised to that.
  int64_t max_pixels = 0;
};

// A video as a folder of frame images (PNG or JPEG, all of one size, taken in file-name order), sampled at `fps`
// frames a second: every frame is used (an odd count repeats the last), resized and normalised as transformers'
// video processor does (docs/model.md §5.5), and its pairs of frames are 2/fps seconds apart on the time row of
// the positions. A bad folder or frame throws ImageError naming it.
//
// With `audio_16k` (mono float32 at 16 kHz: the video's soundtrack) the video is given with its audio as
// transformers' use_audio_in_video does: one span whose video and audio tokens are interleaved by time
// (docs/model.md §5.4).
struct VideoInput {
  std::string path;
  double fps = 2.0;
  // The frames themselves instead of `path` (e.g. a video file the caller decoded and sampled, format "rgb"):
  // taken as they are, at `fps`.
  std::vector<ImageInput> frames;
  std::vector<float> audio_16k;
  std::string audio_path;  // parse_messages: the soundtrack's file ("audio" of a video item), not read
};

struct UserTurn {
  std::string text;                // may be empty when audio, images or videos are given
  std::vector<float> audio_16k;    // mono float32 at 16 kHz; empty: no audio
  std::vector<ImageInput> images;  // in order; the prompt holds the audio, then the images, the videos, the text
  std::vector<VideoInput> videos = {};  // in order (a video with its own audio_16k carries its soundtrack interleaved)
};


// One item of a message's content (Message): text, an image, a video, or a spoken clip.
struct MessageItem {
  enum class Kind { Text, Image, Video, Audio };
  Kind kind = Kind::Text;
  std::string text;              // Text
  ImageInput image;              // Image
  VideoInput video;              // Video
  std::vector<float> audio_16k;  // Audio: mono float32 at 16 kHz
  // Audio read by parse_messages: the file to read (the engine takes samples, not files; omni-run reads WAV).
  std::string audio_path;
};

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, valid under the tool's parameters (json.dumps layout)
};

// A message of a conversation in the Hugging Face chat form. Roles: "system" (text only; first), "user",
// "assistant" (text and/or tool_calls) and "tool" (a tool's result; consecutive results share one user turn).
struct Message {
  std::string role;
  std::vector<MessageItem> content;  // in order: text, images and clips are laid out as listed
  std::vector<ToolCall> tool_calls;  // assistant: the calls it made (arguments as JSON text)
};

// Reads a conversation file (omni-run --messages): a JSON list of {"role", "content": string | null |
// [{"type": "text", "text"} | {"type": "image", "image": PATH} | {"type": "video", "video": FOLDER, "fps"?: F,
// "audio"?: PATH (its soundtrack, interleaved)} | {"type": "audio", "audio": PATH}], and for an
// assistant "tool_calls": [{"function"?: {"name", "arguments": object | JSON string}}]}. Relative paths are
// resolved against `base_dir`. Nothing is read: audio items come back with audio_path set and no samples, image
// items with image.path. Throws omni::Error naming the field ("messages[2].content[1].image: ...").
std::vector<Message> parse_messages(std::string_view json, const std::string& base_dir);

struct Timings {
  double prefill_ms = 0;
  double decode_tok_s = 0;
  double first_audio_ms = -1;  // from the first thinker token to the first audio sample; -1: none
  double audio_encode_ms = 0;
  // Constrained decoding: the mean time to compute one token mask (computed while the step runs)
  // and the number of masked steps.
  double mask_ms = 0;
  int masked_steps = 0;
};

enum class StopReason { EndOfTurn, MaxTokens, Cancelled, ContextFull };

// The wire and log name: "end_of_turn", "max_tokens", "cancelled", "context_full".
constexpr std::string_view to_string(StopReason s) {
  switch (s) {
    case StopReason::EndOfTurn: return "end_of_turn";
    case StopReason::MaxTokens: return "max_tokens";
    case StopReason::Cancelled: return "cancelled";
    case StopReason::ContextFull: return "context_full";
  }
  return "unknown";
}

struct ToolResult {
  std::string content;  // what the tool returned, as the model will read it
};

struct TurnResult {
  std::vector<int32_t> prompt_tokens;  // the ids this turn added before generation
  std::vector<int32_t> tokens;         // generated ids (including the final <|im_end|> if produced)
  std::string text;                    // decoded answer without <|im_end|> and without call markup
  std::vector<ToolCall> tool_calls;    // the calls the answer ends with (answer them with respond_tool_results)
  StopReason stop = StopReason::EndOfTurn;
  size_t speech_samples = 0;
  int speech_frames = 0;
  Timings timings;
};

// A saved point of a conversation: Session::mark() makes one, Session::rollback() returns to it.
// A value; copying it is cheap. Default-constructed: no mark. What it holds is the implementation's.
struct SessionMarkState {
  virtual ~SessionMarkState() = default;
};
struct SessionMark {
  std::shared_ptr<const SessionMarkState> state;
  bool valid() const { return state != nullptr; }
};

struct SessionOptions {
  std::string system_prompt;  // empty: no system turn
  // Tools the model may call: JSON text of OpenAI-style function tools ([{"type": "function",
  // "function": {"name", "description", "parameters"}}]); empty: none. They are listed in the
  // system turn. Throws omni::Error naming the field when a tool is outside the supported subset.
  std::string tools = {};
};

class Session {
 public:
  virtual ~Session() = default;
  // Appends a user turn to the conversation and generates the answer. Earlier turns stay in
  // the KV cache and are not recomputed. When the context would overflow, the oldest turns
  // are dropped (the system prompt is kept) and the remainder is recomputed once.
  virtual TurnResult respond(const UserTurn& turn, const GenerateOptions& opt, const Callbacks& cb) = 0;
  // Raw ids, no chat template, fresh context (omni-run --ids).
  virtual TurnResult generate_from_ids(const std::vector<int32_t>& ids, const GenerateOptions& opt,
                                       const Callbacks& cb) = 0;
  // Speaks `text` verbatim (no thinker answer): the talker reads the text. Requires a talker.
  virtual TurnResult say(const std::string& text, const GenerateOptions& opt, const Callbacks& cb) = 0;
  // Stops the running respond()/say() between steps; it returns with StopReason::Cancelled.
  virtual void cancel() = 0;
  // Forgets the conversation (keeps the system prompt).
  virtual void reset() = 0;
  virtual void set_system_prompt(const std::string& system_prompt) = 0;
  // Replaces the tools (SessionOptions::tools); like a new system prompt it starts a new
  // conversation. A bad set throws omni::Error naming the field and leaves the old set in place.
  virtual void set_tools(const std::string& tools_json) { (void)tools_json; throw Error("this session has no tools"); }
  // Gives the results of the last answer's tool calls, in the order of TurnResult::tool_calls, as
  // one user turn, and generates the answer that follows.
  virtual TurnResult respond_tool_results(const std::vector<ToolResult>& results, const GenerateOptions& opt,
                                          const Callbacks& cb) {
    (void)results, (void)opt, (void)cb;
    throw Error("this session has no tools");
  }
  // Runs a whole conversation (the Hugging Face chat form, Message) as the prompt and generates the answer to
  // it: the session starts over with it (like reset()), its system message, if any, becomes the session's system
  // prompt, the session's tools are listed, earlier assistant turns are taken as given, and items are laid out in
  // the order listed (docs/model.md §5.4). Later respond() calls continue the conversation. Checks everything
  // (roles, tool calls, images, clips) before anything changes; errors name the field ("messages[1].content[0]").
  virtual TurnResult respond_messages(const std::vector<Message>& messages, const GenerateOptions& opt,
                                      const Callbacks& cb) {
    (void)messages, (void)opt, (void)cb;
    throw Error("this session does not take whole conversations");
  }
  virtual int context_used() const = 0;  // tokens in the KV cache

  // Rolling back (speculative turns: start answering, then take it back without a trace).
  // mark() saves where the conversation stands between turns. rollback(mark) returns to it: the KV
  // cache's used length, the turn history and the closing tokens of the last answer that the next
  // turn feeds are restored, so the next respond() gives bit for bit what it would have given had the
  // turns since the mark never run. Nothing is recomputed: the cache is positional, and the slots past
  // the mark are overwritten by the next turn. Speech keeps no state between turns.
  // Refused (omni::Error naming the reason, the session unchanged) when the cache was rebuilt since the
  // mark: the oldest turns were dropped because the context filled (a turn run with
  // GenerateOptions::drop_oldest_turns = false never does that), reset(), set_system_prompt(),
  // generate_from_ids(); or when the mark is empty or from another session. Not during a turn
  // (the same thread as respond(), like everything but cancel()).
  virtual SessionMark mark() const = 0;
  virtual void rollback(const SessionMark& mark) = 0;
};

// Checks a LoadOptions::weights value; throws ConfigError naming the value and the allowed set.
void check_weights(const std::string& spec);

class Model {
 public:
  // Throws CheckpointError / ConfigError / DeviceError with a one-line reason.
  static std::unique_ptr<Model> load(const LoadOptions& opt);
  virtual ~Model() = default;
  virtual std::unique_ptr<Session> new_session(const SessionOptions& opt = {}) = 0;
  virtual std::vector<int32_t> tokenize(std::string_view text) const = 0;
  // The prompt ids that respond() would add for `turn` as the first turn of a session with this
  // system prompt (audio_pad count from the audio length, image_pad counts from the images' sizes).
  virtual std::vector<int32_t> render_prompt(const std::string& system, const UserTurn& turn) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual bool has_talker() const = 0;
  virtual bool has_vision() const { return false; }  // takes images (UserTurn::images)
  // Loads the vision tower and its buffers now; otherwise the first image loads them. A server calls it at start,
  // so that no request pays for the load and the load never runs beside a turn. Throws omni::Error when the
  // model has no vision tower.
  virtual void load_vision() { throw Error("this model has no vision tower: it cannot take images"); }
  virtual std::vector<std::string> speakers() const = 0;
  // The checkpoint's sampling defaults from its generation_config.json, read as transformers reads them:
  // no file, or no `do_sample: true`, means greedy (docs/config.md "model.sampling").
  virtual Sampling default_sampling() const = 0;
  virtual int speech_sample_rate() const = 0;  // 24000
  virtual std::string device_name() const = 0;
  virtual double load_ms() const = 0;
  // Bytes of checkpoint tensors the weights were made from (their stored size): with load_ms(), the load's
  // throughput. 0 where the model has no checkpoint.
  virtual uint64_t load_bytes() const { return 0; }
};

}  // namespace omni
