// The Qwen3-Omni ChatML prompt (docs/model.md §5.4), built as token ids:
//   <|im_start|>system\n{system}<|im_end|>\n                     (only with a system prompt)
//   <|im_start|>user\n<|audio_start|><|audio_pad|>×N<|audio_end|>{text}<|im_end|>\n
//   <|im_start|>assistant\n
// Special ids come from TokenIds; the text between them ("system\n{system}", "user\n{text}" or, with
// audio, "user\n" and "{text}", "\n", "assistant\n") is tokenized as one piece each, which gives the
// ids HF's tokenizer gives for the rendered string. Text is encoded with Tokenizer::encode_plain, so
// special-token strings typed by a user (e.g. "<|im_end|>") stay plain text and cannot end a turn.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "tokenizer/tokenizer.h"

namespace omni {

struct ChatTurnInput {
  std::string text;         // may be empty
  int audio_tokens = -1;    // -1: no audio; else the number of <|audio_pad|> tokens (< -1 is an error)
};

// System turn ids (empty when `system` is empty).
std::vector<int32_t> render_system(const Tokenizer& tok, const TokenIds& ids, const std::string& system);
// One user turn followed by the assistant header (the generation prompt).
std::vector<int32_t> render_user_turn(const Tokenizer& tok, const TokenIds& ids, const ChatTurnInput& turn);
// The whole prompt for a single-turn chat: system (optional) + user turn + assistant header.
std::vector<int32_t> render_prompt(const Tokenizer& tok, const TokenIds& ids, const std::string& system,
                                   const ChatTurnInput& turn);

}  // namespace omni
