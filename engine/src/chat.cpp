#include "chat.h"

#include "omni/errors.h"

namespace omni {
namespace {

void append_text(std::vector<int32_t>& out, const Tokenizer& tok, const std::string& text) {
  const std::vector<int32_t> ids = tok.encode_plain(text);
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace

std::vector<int32_t> render_system(const Tokenizer& tok, const TokenIds& ids, const std::string& system) {
  std::vector<int32_t> out;
  if (system.empty()) return out;
  out.push_back(ids.im_start);
  append_text(out, tok, "system\n" + system);
  out.push_back(ids.im_end);
  append_text(out, tok, "\n");
  return out;
}

std::vector<int32_t> render_user_turn(const Tokenizer& tok, const TokenIds& ids, const ChatTurnInput& turn) {
  if (turn.audio_tokens < -1) {
    throw Error("chat prompt: audio_tokens is " + std::to_string(turn.audio_tokens) +
                " (expected -1 for no audio, or a count >= 0)");
  }
  std::vector<int32_t> out;
  out.push_back(ids.im_start);
  if (turn.audio_tokens >= 0) {
    append_text(out, tok, "user\n");
    out.push_back(ids.audio_start);
    out.insert(out.end(), static_cast<size_t>(turn.audio_tokens), ids.audio_pad);
    out.push_back(ids.audio_end);
    append_text(out, tok, turn.text);
  } else {
    append_text(out, tok, "user\n" + turn.text);
  }
  out.push_back(ids.im_end);
  append_text(out, tok, "\n");
  out.push_back(ids.im_start);
  append_text(out, tok, "assistant\n");
  return out;
}

std::vector<int32_t> render_prompt(const Tokenizer& tok, const TokenIds& ids, const std::string& system,
                                   const ChatTurnInput& turn) {
  std::vector<int32_t> out = render_system(tok, ids, system);
  const std::vector<int32_t> user = render_user_turn(tok, ids, turn);
  out.insert(out.end(), user.begin(), user.end());
  return out;
}

}  // namespace omni
