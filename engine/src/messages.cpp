// parse_messages (omni/engine.h): a conversation file in the Hugging Face chat form, checked field by field.
#include <filesystem>

#include "chat.h"
#include "grammar/json_text.h"
#include "omni/engine.h"
#include "omni/limits.h"

namespace omni {
namespace {

std::string string_field(const ojson& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) throw Error(where + "." + key + ": missing");
  if (!it->is_string()) throw Error(where + "." + key + ": expected a string");
  return it->get<std::string>();
}

std::string resolve(const std::string& path, const std::string& base_dir, const std::string& where) {
  if (path.empty()) throw Error(where + ": an empty path");
  if (path.find('\0') != std::string::npos) throw Error(where + ": the path holds a NUL byte");
  const std::filesystem::path p(path);
  if (p.is_absolute() || base_dir.empty()) return path;
  return (std::filesystem::path(base_dir) / p).string();
}

}  // namespace

std::vector<Message> parse_messages(std::string_view json, const std::string& base_dir) {
  limits::check_at_most("messages", "the file's size in bytes", int64_t(json.size()), limits::kMaxMessagesJsonBytes,
                        "a conversation is text and paths; media are files of their own");
  const ojson j = ojson::parse(json.begin(), json.end(), nullptr, false);
  if (j.is_discarded()) throw Error("messages: not valid JSON");
  if (!j.is_array()) throw Error("messages: expected a list of {\"role\", \"content\"} objects");
  if (j.empty()) throw Error("messages: the list is empty");
  limits::check_at_most("messages", "the number of messages", int64_t(j.size()), limits::kMaxMessages,
                        "more than any context holds");
  std::vector<Message> out;
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const ojson& m = j[i];
    if (!m.is_object()) throw Error(where + ": expected an object");
    Message msg;
    msg.role = string_field(m, "role", where);
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw Error(where + ".role: '" + msg.role + "' is not a role (system, user, assistant or tool)");
    auto c = m.find("content");
    if (c == m.end() && msg.role != "assistant") throw Error(where + ".content: missing");
    if (c != m.end() && c->is_string()) {
      MessageItem it;
      it.text = c->get<std::string>();
      msg.content.push_back(std::move(it));
    } else if (c != m.end() && c->is_array()) {
      limits::check_at_most(where, "the number of content items", int64_t(c->size()), limits::kMaxMessageItems,
                            "more than any context holds");
      for (size_t k = 0; k < c->size(); ++k) {
        const ojson& item = (*c)[k];
        const std::string iw = where + ".content[" + std::to_string(k) + "]";
        if (!item.is_object()) throw Error(iw + ": expected an object");
        const std::string type = string_field(item, "type", iw);
        MessageItem it;
        if (type == "text") {
          it.text = string_field(item, "text", iw);
        } else if (type == "image") {
          it.kind = MessageItem::Kind::Image;
          it.image.path = resolve(string_field(item, "image", iw), base_dir, iw + ".image");
        } else if (type == "audio") {
          it.kind = MessageItem::Kind::Audio;
          it.audio_path = resolve(string_field(item, "audio", iw), base_dir, iw + ".audio");
        } else if (type == "video") {
          it.kind = MessageItem::Kind::Video;
          it.video.path = resolve(string_field(item, "video", iw), base_dir, iw + ".video");
          if (item.contains("audio"))
            it.video.audio_path = resolve(string_field(item, "audio", iw), base_dir, iw + ".audio");
          auto fps = item.find("fps");
          if (fps != item.end()) {
            if (!fps->is_number()) throw Error(iw + ".fps: expected a number");
            it.video.fps = fps->get<double>();
            if (!(it.video.fps > 0 && it.video.fps <= limits::kMaxVideoFps))
              throw Error(iw + ".fps: " + fps->dump() + " is not in (0, " + std::to_string(int(limits::kMaxVideoFps)) +
                          "] frames a second");
          }
        } else {
          throw Error(iw + ".type: '" + type + "' is not a content type (text, image, video or audio)");
        }
        if (msg.role != "user" && it.kind != MessageItem::Kind::Text)
          throw Error(iw + ": only user messages hold images and audio (this is a " + msg.role + " message)");
        msg.content.push_back(std::move(it));
      }
    } else if (c != m.end() && !c->is_null()) {
      throw Error(where + ".content: expected a string, null or a list of items");
    }
    auto tc = m.find("tool_calls");
    if (tc != m.end() && !tc->is_null()) {
      if (msg.role != "assistant") throw Error(where + ".tool_calls: only an assistant message calls tools");
      if (!tc->is_array()) throw Error(where + ".tool_calls: expected a list");
      limits::check_at_most(where, "the number of tool_calls", int64_t(tc->size()), limits::kMaxMessageItems,
                            "more than any context holds");
      for (size_t k = 0; k < tc->size(); ++k) {
        ChatToolCall c = parse_tool_call((*tc)[k], where + ".tool_calls[" + std::to_string(k) + "]");
        msg.tool_calls.push_back({std::move(c.name), std::move(c.arguments)});
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace omni
