// Session::respond_messages: a whole conversation in the Hugging Face chat form as the prompt.
#include "model_impl.h"
#include "omni/errors.h"

namespace omni {

TurnResult SessionImpl::respond_messages(const std::vector<Message>& messages, const GenerateOptions& opt,
                                         const Callbacks& cb) {
  cancelled_.store(false);
  if (messages.empty()) throw Error("messages: none given");
  if (opt.speak && !model_.speech())
    throw Error(model_.config().has_talker ? "speech was not loaded (load_talker is off)"
                                           : "this model has no talker: it cannot speak");
  // Everything is checked and prepared before the conversation is replaced: a bad message leaves it as it was.
  make_constraint(opt);
  std::vector<ChatMessage> chat;
  std::vector<std::vector<float>> clips;
  struct Visual {
    const MessageItem* item;
    size_t message, part;  // where its placeholder goes
  };
  std::vector<Visual> visuals;  // images and videos, in prompt order
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool")
      throw Error(where + ".role: '" + m.role + "' is not a role (system, user, assistant or tool)");
    if (!m.tool_calls.empty() && m.role != "assistant")
      throw Error(where + ".tool_calls: only an assistant message calls tools");
    ChatMessage cm{m.role, {}, {}};
    for (size_t k = 0; k < m.content.size(); ++k) {
      const MessageItem& item = m.content[k];
      const std::string iw = where + ".content[" + std::to_string(k) + "]";
      if (item.kind == MessageItem::Kind::Text) {
        cm.content.push_back({ChatPart::Kind::Text, item.text, 0});
        continue;
      }
      if (m.role != "user")
        throw Error(iw + ": only user messages hold images and audio (this is a " + m.role + " message)");
      if (item.kind == MessageItem::Kind::Audio) {
        if (item.audio_16k.empty())
          throw Error(iw + ": the clip has no samples" +
                      (item.audio_path.empty() ? std::string() : " (" + item.audio_path + " was not read)"));
        int tokens = 0;
        try {
          tokens = model_.audio_tokens_for(item.audio_16k.size());
        } catch (const Error& e) {
          throw Error(iw + ": " + e.what());
        }
        clips.push_back(item.audio_16k);
        cm.content.push_back({ChatPart::Kind::Audio, {}, tokens});
      } else {
        visuals.push_back({&item, i, cm.content.size()});
        const bool video = item.kind == MessageItem::Kind::Video;
        ChatPart part{video ? ChatPart::Kind::Video : ChatPart::Kind::Image, {}, 0};  // counts once prepared
        if (video && !item.video.audio_path.empty() && item.video.audio_16k.empty())
          throw Error(iw + ": the video's audio has no samples (" + item.video.audio_path + " was not read)");
        if (video) part.audio_tokens = model_.soundtrack(item.video, iw + ".audio", clips);
        cm.content.push_back(part);
      }
    }
    for (const ToolCall& c : m.tool_calls) cm.tool_calls.push_back({c.name, c.arguments});
    chat.push_back(std::move(cm));
  }
  std::vector<std::shared_ptr<const VisualPatches>> images;
  for (const Visual& v : visuals) {  // each throws ImageError naming the file or folder
    images.push_back(v.item->kind == MessageItem::Kind::Video ? model_.prepare_video(v.item->video)
                                                              : model_.prepare_images({v.item->image})[0]);
    ChatPart& part = chat[v.message].content[v.part];
    const int audio_tokens = part.audio_tokens;  // the soundtrack's, counted above
    part = model_.visual_part(*images.back());
    part.audio_tokens = audio_tokens;
  }
  model_.check_visual_tokens(images, "messages: the conversation's");
  // The first message, when a system message, becomes the session's system prompt (its text items joined, as the
  // template writes them); the session's tools are listed in that turn.
  std::string system = system_prompt_;
  if (messages[0].role == "system") {
    system.clear();
    for (const ChatPart& p : chat[0].content) system += p.text;
    chat.erase(chat.begin());
  }
  std::vector<ChatMessage> all;
  if (!system.empty()) all.push_back({"system", {{ChatPart::Kind::Text, system, 0}}, {}});
  all.insert(all.end(), chat.begin(), chat.end());
  const std::vector<int32_t> ids = render_conversation(model_.tokenizer(), model_.config().ids, all, tool_lines_, true);
  if (int64_t(ids.size()) + opt.max_new_tokens > model_.context_tokens())
    throw ContextFullError("messages: the conversation is " + std::to_string(ids.size()) + " tokens, with " +
                           std::to_string(opt.max_new_tokens) + " new tokens more than context_tokens " +
                           std::to_string(model_.context_tokens()));
  reset();
  system_prompt_ = system;
  // The system turn heads the cache as for any conversation (run_turn puts it first); the rest is one turn.
  const std::vector<int32_t> sys = system_ids();
  if (sys.size() > ids.size() || !std::equal(sys.begin(), sys.end(), ids.begin()))
    throw Error("messages: internal: the system turn does not head the rendered conversation");
  return run_turn(std::vector<int32_t>(ids.begin() + long(sys.size()), ids.end()), std::move(clips), opt, cb, images);
}

}  // namespace omni
