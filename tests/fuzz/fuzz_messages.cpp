// libFuzzer target for conversation files (omni-run --messages): parse_messages (engine/src/messages.cpp) and
// the prompt layout made from what it accepts (engine/src/chat.cpp). Properties checked: parsing throws only
// omni::Error; an accepted conversation has known roles, media only in user messages, a resolved path for every
// image and clip, and renders (as text, each image and clip one placeholder token) with exactly one
// <|image_pad|> per image, one <|audio_pad|> per clip and one <tool_call> per call.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat.h"
#include "omni/engine.h"

using namespace omni;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<Message> msgs;
  try {
    msgs = parse_messages(in, "/base");
  } catch (const Error&) {
    return 0;
  }
  if (msgs.empty()) std::abort();
  std::vector<ChatMessage> chat;
  size_t images = 0, clips = 0, calls = 0;
  for (const Message& m : msgs) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") std::abort();
    if (!m.tool_calls.empty() && m.role != "assistant") std::abort();
    ChatMessage cm{m.role, {}, {}};
    for (const MessageItem& item : m.content) {
      if (item.kind != MessageItem::Kind::Text && m.role != "user") std::abort();
      if (item.kind == MessageItem::Kind::Image) {
        if (item.image.path.empty()) std::abort();
        ++images;
        cm.content.push_back({ChatPart::Kind::Image, {}, 1});
      } else if (item.kind == MessageItem::Kind::Audio) {
        if (item.audio_path.empty() || !item.audio_16k.empty()) std::abort();
        ++clips;
        cm.content.push_back({ChatPart::Kind::Audio, {}, 1});
      } else {
        cm.content.push_back({ChatPart::Kind::Text, item.text, 0});
      }
    }
    for (const ToolCall& c : m.tool_calls) cm.tool_calls.push_back({c.name, c.arguments});
    calls += m.tool_calls.size();
    chat.push_back(std::move(cm));
  }
  // Text items may themselves spell the markers; count only on a conversation whose text does not.
  for (const Message& m : msgs) {
    for (const MessageItem& item : m.content)
      if (item.text.find("<|") != std::string::npos || item.text.find("<tool_call>") != std::string::npos) return 0;
    for (const ToolCall& c : m.tool_calls)
      if (c.name.find("<") != std::string::npos || c.arguments.find("<") != std::string::npos) return 0;
  }
  const std::string text = render_conversation_text(chat, {}, true);
  if (count(text, "<|image_pad|>") != images || count(text, "<|audio_pad|>") != clips ||
      count(text, "<tool_call>") != calls)
    std::abort();
  return 0;
}
