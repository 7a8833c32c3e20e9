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

namespace {

// The rendered conversation as a run of pieces: special tokens and the text between them.
struct Layout {
  struct Piece {
    int32_t special = -1;  // >= 0: this special token; else `text`
    std::string text;
  };
  std::vector<Piece> pieces;
  void special(int32_t id) { pieces.push_back({id, {}}); }
  void text(const std::string& t) {
    if (t.empty()) return;
    if (!pieces.empty() && pieces.back().special < 0) {
      pieces.back().text += t;
    } else {
      pieces.push_back({-1, t});
    }
  }
};

constexpr const char* kToolsIntro =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr const char* kToolsOutro =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>";

void content(Layout& L, const TokenIds& ids, const ChatMessage& m, size_t index) {
  for (const ChatPart& p : m.content) {
    if (p.kind == ChatPart::Kind::Text) {
      L.text(p.text);
      continue;
    }
    const bool audio = p.kind == ChatPart::Kind::Audio;
    const char* what = audio ? "an audio" : p.kind == ChatPart::Kind::Image ? "an image" : "a video";
    if (p.tokens < (audio ? 0 : 1))
      throw Error("chat prompt: messages[" + std::to_string(index) + "] has " + what + " item of " +
                  std::to_string(p.tokens) + " tokens (expected " + (audio ? ">= 0)" : "> 0)"));
    const int32_t pad = audio ? ids.audio_pad : p.kind == ChatPart::Kind::Image ? ids.image_pad : ids.video_pad;
    if (p.kind == ChatPart::Kind::Video && p.audio_tokens >= 0) {
      // transformers' processor (use_audio_in_video): video token k of pair t has the time t * seconds_per_pair *
      // 13, audio token j the time j; while both remain the earlier goes first (video on a tie), then the rest.
      if (p.pairs <= 0 || p.tokens % p.pairs != 0)
        throw Error("chat prompt: messages[" + std::to_string(index) + "]: a video of " + std::to_string(p.tokens) +
                    " tokens is not " + std::to_string(p.pairs) + " equal pairs");
      const int per_pair = p.tokens / p.pairs;
      L.special(ids.vision_start);
      L.special(ids.audio_start);
      int vi = 0, ai = 0;
      while (vi < p.tokens && ai < p.audio_tokens) {
        const double v = double(vi / per_pair) * p.seconds_per_pair * 13.0;
        if (v <= double(ai)) {
          L.special(ids.video_pad);
          ++vi;
        } else {
          L.special(ids.audio_pad);
          ++ai;
        }
      }
      for (; vi < p.tokens; ++vi) L.special(ids.video_pad);
      for (; ai < p.audio_tokens; ++ai) L.special(ids.audio_pad);
      L.special(ids.audio_end);
      L.special(ids.vision_end);
      continue;
    }
    L.special(audio ? ids.audio_start : ids.vision_start);
    for (int i = 0; i < p.tokens; ++i) L.special(pad);
    L.special(audio ? ids.audio_end : ids.vision_end);
  }
}

bool has_content(const ChatMessage& m) {
  for (const ChatPart& p : m.content)
    if (p.kind != ChatPart::Kind::Text || !p.text.empty()) return true;
  return false;
}

Layout layout(const TokenIds& ids, const std::vector<ChatMessage>& msgs, const std::vector<std::string>& tools,
              bool add_generation_prompt) {
  Layout L;
  const bool first_system = !msgs.empty() && msgs[0].role == "system";
  if (!tools.empty()) {
    L.special(ids.im_start);
    L.text("system\n");
    if (first_system) {
      content(L, ids, msgs[0], 0);
      L.text("\n\n");
    }
    L.text(kToolsIntro);
    for (const std::string& t : tools) L.text("\n" + t);
    L.text(kToolsOutro);
    L.special(ids.im_end);
    L.text("\n");
  } else if (first_system) {
    L.special(ids.im_start);
    L.text("system\n");
    content(L, ids, msgs[0], 0);
    L.special(ids.im_end);
    L.text("\n");
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    const std::string where = "chat prompt: messages[" + std::to_string(i) + "]";
    if (!m.tool_calls.empty() && m.role != "assistant")
      throw Error(where + " (" + m.role + ") has tool_calls; only an assistant turn can call tools");
    if (m.role == "system" && i == 0) continue;  // rendered above
    if (m.role == "user" || m.role == "system") {
      L.special(ids.im_start);
      L.text(m.role + "\n");
      content(L, ids, m, i);
      L.special(ids.im_end);
      L.text("\n");
    } else if (m.role == "assistant") {
      L.special(ids.im_start);
      L.text("assistant\n");
      content(L, ids, m, i);
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if (k > 0 || has_content(m)) L.text("\n");
        L.text("<tool_call>\n{\"name\": \"" + m.tool_calls[k].name + "\", \"arguments\": " +
               m.tool_calls[k].arguments + "}\n</tool_call>");
      }
      L.special(ids.im_end);
      L.text("\n");
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") {
        L.special(ids.im_start);
        L.text("user");
      }
      L.text("\n<tool_response>\n");
      content(L, ids, m, i);
      L.text("\n</tool_response>");
      if (i + 1 == msgs.size() || msgs[i + 1].role != "tool") {
        L.special(ids.im_end);
        L.text("\n");
      }
    } else {
      throw Error(where + ": unknown role '" + m.role + "' (expected system, user, assistant or tool)");
    }
  }
  if (add_generation_prompt) {
    L.special(ids.im_start);
    L.text("assistant\n");
  }
  return L;
}

std::string special_text(const TokenIds& ids, int32_t id) {
  if (id == ids.im_start) return "<|im_start|>";
  if (id == ids.im_end) return "<|im_end|>";
  if (id == ids.audio_start) return "<|audio_start|>";
  if (id == ids.audio_end) return "<|audio_end|>";
  if (id == ids.audio_pad) return "<|audio_pad|>";
  if (id == ids.vision_start) return "<|vision_start|>";
  if (id == ids.vision_end) return "<|vision_end|>";
  if (id == ids.image_pad) return "<|image_pad|>";
  if (id == ids.video_pad) return "<|video_pad|>";
  return "<|" + std::to_string(id) + "|>";
}

std::string field_string(const ojson& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) throw Error(where + "." + key + ": expected a string");
  return it->get<std::string>();
}

}  // namespace

std::vector<int32_t> render_conversation(const Tokenizer& tok, const TokenIds& ids,
                                         const std::vector<ChatMessage>& messages,
                                         const std::vector<std::string>& tools, bool add_generation_prompt) {
  const Layout L = layout(ids, messages, tools, add_generation_prompt);
  std::vector<int32_t> out;
  for (const Layout::Piece& p : L.pieces) {
    if (p.special >= 0) {
      out.push_back(p.special);
    } else {
      append_text(out, tok, p.text);
    }
  }
  return out;
}

std::string render_conversation_text(const std::vector<ChatMessage>& messages, const std::vector<std::string>& tools,
                                     bool add_generation_prompt) {
  const TokenIds ids;
  const Layout L = layout(ids, messages, tools, add_generation_prompt);
  std::string out;
  for (const Layout::Piece& p : L.pieces) out += p.special >= 0 ? special_text(ids, p.special) : p.text;
  return out;
}

std::vector<ChatMessage> parse_chat_messages(const ojson& messages, const AudioItemTokens& audio_tokens) {
  if (!messages.is_array()) throw Error("messages: expected an array of {role, content} objects");
  std::vector<ChatMessage> out;
  size_t audio_index = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const ojson& m = messages[i];
    if (!m.is_object()) throw Error(where + ": expected an object");
    ChatMessage cm;
    cm.role = field_string(m, "role", where);
    auto c = m.find("content");
    if (c != m.end() && !c->is_null()) {
      if (c->is_string()) {
        cm.content.push_back({ChatPart::Kind::Text, c->get<std::string>(), 0});
      } else if (c->is_array()) {
        for (size_t k = 0; k < c->size(); ++k) {
          const ojson& item = (*c)[k];
          const std::string iw = where + ".content[" + std::to_string(k) + "]";
          if (!item.is_object()) throw Error(iw + ": expected an object");
          const std::string type = field_string(item, "type", iw);
          if (type == "text") {
            cm.content.push_back({ChatPart::Kind::Text, field_string(item, "text", iw), 0});
          } else if (type == "audio") {
            if (!audio_tokens) throw Error(iw + ": audio items are not accepted here");
            const int n = audio_tokens(audio_index++, item);
            if (n < 0) throw Error(iw + ": audio item gives " + std::to_string(n) + " tokens");
            cm.content.push_back({ChatPart::Kind::Audio, {}, n});
          } else {
            throw Error(iw + ".type: '" + type + "' is not supported (text or audio)");
          }
        }
      } else {
        throw Error(where + ".content: expected a string, null or a list of items");
      }
    }
    auto tc = m.find("tool_calls");
    if (tc != m.end() && !tc->is_null()) {
      if (!tc->is_array()) throw Error(where + ".tool_calls: expected an array");
      for (size_t k = 0; k < tc->size(); ++k)
        cm.tool_calls.push_back(parse_tool_call((*tc)[k], where + ".tool_calls[" + std::to_string(k) + "]"));
    }
    out.push_back(std::move(cm));
  }
  return out;
}

ChatToolCall parse_tool_call(const ojson& call_in, std::string where) {
  const ojson* call = &call_in;
  if (!call->is_object()) throw Error(where + ": expected an object");
  auto f = call->find("function");
  if (f != call->end()) {
    if (!f->is_object()) throw Error(where + ".function: expected an object");
    call = &*f;
    where += ".function";
  }
  ChatToolCall out;
  out.name = field_string(*call, "name", where);
  auto a = call->find("arguments");
  if (a == call->end()) throw Error(where + ".arguments: missing");
  if (a->is_string()) {
    out.arguments = a->get<std::string>();  // the template writes a string as it is
  } else if (a->is_object()) {
    out.arguments = json_dumps_py(*a);
  } else {
    throw Error(where + ".arguments: expected an object or a JSON string");
  }
  return out;
}

std::vector<std::string> tool_lines(const ojson& tools) {
  if (!tools.is_array()) throw Error("tools: expected an array of tool objects");
  std::vector<std::string> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    if (!tools[i].is_object()) throw Error("tools[" + std::to_string(i) + "]: expected an object");
    out.push_back(json_dumps_py(tools[i]));
  }
  return out;
}

}  // namespace omni
