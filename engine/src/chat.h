// The Qwen3-Omni ChatML prompt (docs/model.md §5.4), built as token ids:
//   <|im_start|>system\n{system}<|im_end|>\n                     (only with a system prompt)
//   <|im_start|>user\n{content items in order}<|im_end|>\n       (per user message; assistant and tool turns
//                                                                  as render_conversation says below)
//   <|im_start|>assistant\n
// where an item is its text, <|audio_start|><|audio_pad|>×N<|audio_end|>, <|vision_start|><|image_pad|>×N
// <|vision_end|> or the video's span. Special ids come from TokenIds; the text between them ("system\n{system}",
// "user\n{text}" or, with audio, "user\n" and "{text}", "\n", "assistant\n") is tokenized as one piece each,
// which gives the ids HF's tokenizer gives for the rendered string. Text is encoded with
// Tokenizer::encode_plain, so special-token strings typed by a user (e.g. "<|im_end|>") stay plain text and
// cannot end a turn.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "grammar/json_text.h"

#include "io/model_config.h"
#include "omni/tokenizer.h"

namespace omni {

// System turn ids (empty when `system` is empty).
std::vector<int32_t> render_system(const Tokenizer& tok, const TokenIds& ids, const std::string& system);

// ---- Conversations with tools (docs/model.md "Tool calls") ----
//
// With tools the system turn lists them (one JSON object a line) and explains the call format;
// an assistant turn may end in calls "<tool_call>\n{"name": N, "arguments": A}\n</tool_call>"
// (joined by "\n", a "\n" before the first only when the turn has text); consecutive tool
// results share one user turn of "\n<tool_response>\nR\n</tool_response>" blocks. The text
// is laid out exactly as the chat template lays it out and tokenized as render_prompt does
// (special ids pushed, the text between them encoded as one piece each).

// One item of a message's content, in order.
struct ChatPart {
  enum class Kind { Text, Audio, Image, Video };
  Kind kind = Kind::Text;
  std::string text;  // Text
  int tokens = 0;    // Audio: the number of <|audio_pad|> tokens (>= 0); Image / Video: of <|image_pad|> /
                     // <|video_pad|> tokens (> 0)
  // Video with its audio (use_audio_in_video): the soundtrack's <|audio_pad|> count (-1: none), the video's
  // temporal pairs (tokens / pairs per pair) and the seconds between pairs; the two are interleaved by time.
  int audio_tokens = -1;
  int pairs = 1;
  double seconds_per_pair = 1.0;
};

struct ChatToolCall {
  std::string name;
  std::string arguments;  // the JSON text exactly as it goes into the prompt
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool"
  std::vector<ChatPart> content;
  std::vector<ChatToolCall> tool_calls;  // assistant only
};

// The conversation's ids. `tools` are the tool definitions as JSON text, one per tool
// (json_dumps_py of an OpenAI-style {"type": "function", "function": {...}}). With
// `add_generation_prompt` the assistant header ends the ids. Throws omni::Error for an unknown
// role, tool calls outside an assistant turn or a negative audio count.
std::vector<int32_t> render_conversation(const Tokenizer& tok, const TokenIds& ids,
                                         const std::vector<ChatMessage>& messages,
                                         const std::vector<std::string>& tools, bool add_generation_prompt = true);
// The same conversation as text (special tokens written out), for logs and tests.
std::string render_conversation_text(const std::vector<ChatMessage>& messages, const std::vector<std::string>& tools,
                                     bool add_generation_prompt = true);

// OpenAI-style messages ([{"role", "content": string | null | [{"type": "text"|"audio", ...}],
// "tool_calls": [{"function": {"name", "arguments": object | string}}]}]) → ChatMessage.
// Arguments given as an object are written with json_dumps_py, as a string verbatim. `audio_tokens`
// gives the <|audio_pad|> count of an audio item (the i-th audio item of the conversation and the
// item); without it an audio item is an error. Errors name the field: "messages[2].tool_calls[0]...".
using AudioItemTokens = std::function<int(size_t index, const ojson& item)>;
std::vector<ChatMessage> parse_chat_messages(const ojson& messages, const AudioItemTokens& audio_tokens = {});
// One assistant tool call, {"function"?: {"name", "arguments": object | JSON string}}: its name and the arguments'
// JSON text (an object written with json_dumps_py, a string verbatim). Throws omni::Error naming `where`.
ChatToolCall parse_tool_call(const ojson& call, std::string where);
// OpenAI-style tools ([{"type": "function", "function": {"name", "description"?, "parameters"?}}]) →
// their JSON text lines for render_conversation. Throws omni::Error naming the bad field.
std::vector<std::string> tool_lines(const ojson& tools);

}  // namespace omni
