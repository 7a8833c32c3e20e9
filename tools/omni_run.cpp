// omni-run: one-shot inference (its flags: README.md, "omni-run"). Tests and scripts depend on its flags
// and its JSON; errors go to stderr as one line with a non-zero exit.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "omni/engine.h"
#include "omni/limits.h"
#include "omni/npy.h"
#include "omni/tokenizer.h"
#include "run_audio.h"
#ifdef OMNI_HAVE_VIDEO_FILES
#include "video/video_file.h"
#endif

namespace {

struct Args {
  std::string model, device = "cpu", dtype, weights = "bf16";
  std::string ids, system, prompt, audio, tokenize;
  std::vector<std::string> images;  // --image, repeatable: in order after the audio, before the text
  std::string messages_file;        // --messages: a whole conversation (Hugging Face chat form)
  std::vector<omni::VideoInput> videos;  // --video FOLDER [--video-fps F], repeatable: after the images
  bool have_ids = false, have_prompt = false, have_tokenize = false;
  omni::GenerateOptions gen;
  std::string speech_out;
  bool json = false;
  std::string logits_out;
  std::string force_ids;  // teacher forcing (GenerateOptions::forced_tokens)
  int context = 0;
  std::string tools_file, response_schema_file;  // JSON files: OpenAI-style tools; a JSON Schema
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "omni-run: %s\n"
               "usage: omni-run --model DIR [--device cpu|cuda] [--dtype f32|bf16]\n"
               "  [--weights bf16|int8|int4|experts=int4,attention=int8,lm_head=bf16,talker=int4]\n"
               "  (--ids 1,2,3 | [--system TEXT] [--prompt TEXT] [--audio FILE.wav] [--image FILE.png|jpg ...]\n"
               "   [--video FRAME_FOLDER [--video-fps F] ...]\n"
               "   | --messages FILE.json | --tokenize TEXT)\n"
               "  [--max-new-tokens N] [--greedy | --temperature T --top-k K --top-p P] [--repetition-penalty R]\n"
               "  [--seed S] [--speech OUT.wav --speaker NAME --max-speech-frames N] [--json]\n"
               "  [--logits-out FILE.npy] [--context N] [--force-ids 1,2,3 (feed these instead of the picks)]\n"
               "  [--tools FILE.json [--tool-choice auto|none|required|NAME]] [--response-schema FILE.json]\n",
               problem.c_str());
  std::exit(2);
}

long parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end) usage(flag + " expects an integer, got '" + v + "'");
  return x;
}

float parse_float(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  float x = std::strtof(v.c_str(), &end);
  if (v.empty() || *end) usage(flag + " expects a number, got '" + v + "'");
  return x;
}

Args parse(int argc, char** argv) {
  Args a;
  bool sampling_flag = false, greedy_flag = false;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(f + " needs a value");
      return argv[++i];
    };
    if (f == "--model") a.model = value();
    else if (f == "--device") a.device = value();
    else if (f == "--dtype") a.dtype = value();
    else if (f == "--weights") a.weights = value();
    else if (f == "--ids") a.ids = value(), a.have_ids = true;
    else if (f == "--force-ids") a.force_ids = value();
    else if (f == "--system") a.system = value(), a.have_prompt = true;
    else if (f == "--prompt") a.prompt = value(), a.have_prompt = true;
    else if (f == "--audio") a.audio = value(), a.have_prompt = true;
    else if (f == "--image") a.images.push_back(value()), a.have_prompt = true;
    else if (f == "--video") {
      a.videos.emplace_back();
      a.videos.back().path = value();
      a.have_prompt = true;
    }
    else if (f == "--video-fps") {
      if (a.videos.empty()) usage("--video-fps follows the --video it sets");
      a.videos.back().fps = parse_float(f, value());
      if (!(a.videos.back().fps > 0)) usage("--video-fps must be positive");
    }
    else if (f == "--tokenize") a.tokenize = value(), a.have_tokenize = true;
    else if (f == "--messages") a.messages_file = value();
    else if (f == "--max-new-tokens") a.gen.max_new_tokens = int(parse_int(f, value()));
    else if (f == "--greedy") greedy_flag = true;
    else if (f == "--temperature") a.gen.sampling.temperature = parse_float(f, value()), sampling_flag = true;
    else if (f == "--top-k") a.gen.sampling.top_k = int(parse_int(f, value())), sampling_flag = true;
    else if (f == "--top-p") a.gen.sampling.top_p = parse_float(f, value()), sampling_flag = true;
    else if (f == "--repetition-penalty") a.gen.sampling.repetition_penalty = parse_float(f, value());
    else if (f == "--seed") a.gen.sampling.seed = uint64_t(parse_int(f, value()));
    else if (f == "--speech") a.speech_out = value();
    else if (f == "--speaker") a.gen.speaker = value();
    else if (f == "--max-speech-frames") a.gen.max_speech_frames = int(parse_int(f, value()));
    else if (f == "--json") a.json = true;
    else if (f == "--logits-out") a.logits_out = value();
    else if (f == "--context") a.context = int(parse_int(f, value()));
    else if (f == "--tools") a.tools_file = value();
    else if (f == "--tool-choice") a.gen.tool_choice = value();
    else if (f == "--response-schema") a.response_schema_file = value();
    else if (f == "-h" || f == "--help") usage("help");
    else usage("unknown flag " + f);
  }
  if (a.model.empty()) usage("--model is required");
  try {
    omni::check_weights(a.weights);
  } catch (const std::exception& e) {
    usage(std::string("--weights: ") + e.what());
  }
  if (int(a.have_ids) + int(a.have_prompt) + int(a.have_tokenize) + int(!a.messages_file.empty()) != 1)
    usage("give exactly one input: --ids, --system/--prompt/--audio/--image, --messages or --tokenize");
  if (greedy_flag && sampling_flag) usage("--greedy cannot be combined with --temperature/--top-k/--top-p");
  a.gen.sampling.greedy = !sampling_flag;
  if (a.gen.max_new_tokens < 1) usage("--max-new-tokens must be at least 1");
  if (a.gen.sampling.temperature <= 0) usage("--temperature must be positive");
  if (a.gen.sampling.top_p <= 0 || a.gen.sampling.top_p > 1) usage("--top-p must be in (0, 1]");
  if (a.gen.sampling.top_k < 0) usage("--top-k must be >= 0");
  if (a.gen.sampling.repetition_penalty <= 0) usage("--repetition-penalty must be positive");
  if (a.gen.tool_choice.empty()) usage("--tool-choice: expected auto, none, required or a tool's name");
  a.gen.speak = !a.speech_out.empty();
  return a;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    std::string tok = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    char* e = nullptr;
    long v = std::strtol(tok.c_str(), &e, 10);
    if (tok.empty() || *e || v < 0 || v > INT32_MAX) usage("--ids: '" + tok + "' is not a token id");
    ids.push_back(int32_t(v));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return ids;
}

std::string read_json_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(flag + ": cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!nlohmann::json::accept(ss.str())) throw std::runtime_error(flag + ": " + path + " is not valid JSON");
  return ss.str();
}

// A video given as a file: decoded and sampled here (the engine takes frames or a folder of them).
void read_video_file(omni::VideoInput& v) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(v.path, ec)) return;  // a folder of frames: the engine reads it
#ifdef OMNI_HAVE_VIDEO_FILES
  omni::video::SampledVideo s = omni::video::decode_video_file(v.path, v.fps);
  v.frames = std::move(s.frames);
  v.fps = s.fps;
#else
  throw std::runtime_error(v.path + ": this omni-run was built without GStreamer and reads no video files (give a "
                           "folder of frames)");
#endif
}

// The conversation of --messages with its clips read (WAV, converted to 16 kHz mono); relative paths are the
// file's folder's.
std::vector<omni::Message> read_messages(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("--messages: cannot read " + path);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  omni::limits::check_at_most("--messages " + path, "the file's size in bytes", int64_t(size),
                              omni::limits::kMaxMessagesJsonBytes, "a conversation is text and paths");
  in.seekg(0);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  const std::string dir = std::filesystem::path(path).parent_path().string();
  std::vector<omni::Message> msgs;
  try {
    msgs = omni::parse_messages(text, dir.empty() ? "." : dir);
  } catch (const std::exception& e) {
    throw std::runtime_error("--messages " + path + ": " + e.what());
  }
  for (omni::Message& m : msgs)
    for (omni::MessageItem& item : m.content) {
      if (item.kind == omni::MessageItem::Kind::Audio) item.audio_16k = read_audio_16k(item.audio_path);
      if (!item.video.audio_path.empty()) item.video.audio_16k = read_audio_16k(item.video.audio_path);
      if (item.kind == omni::MessageItem::Kind::Video) read_video_file(item.video);
    }
  return msgs;
}

// The quick flags' one user turn as a conversation, for what a UserTurn does not hold (videos): the audio, the
// images, the videos, then the text (the system prompt is the session's).
std::vector<omni::Message> quick_turn(const Args& a) {
  omni::Message user;
  user.role = "user";
  omni::MessageItem item;
  if (!a.audio.empty()) {
    item.kind = omni::MessageItem::Kind::Audio;
    item.audio_16k = read_audio_16k(a.audio);
    user.content.push_back(item);
    item = {};
  }
  for (const std::string& path : a.images) {
    item.kind = omni::MessageItem::Kind::Image;
    item.image.path = path;
    user.content.push_back(item);
    item = {};
  }
  for (const omni::VideoInput& v : a.videos) {
    item.kind = omni::MessageItem::Kind::Video;
    item.video = v;
    read_video_file(item.video);
    user.content.push_back(item);
    item = {};
  }
  if (!a.prompt.empty()) {
    item.text = a.prompt;
    user.content.push_back(item);
  }
  return {user};
}

int run(const Args& a) {
  if (a.have_tokenize) {
    // Only the tokenizer is needed: no weights are mapped. Its ids are bounded by the model's vocabulary
    // when the directory has a config.json, else by limits::kMaxVocab.
    auto tok = omni::Tokenizer::load_for_model(a.model);
    nlohmann::json out = {{"ids", tok->encode(a.tokenize)}};
    std::cout << (a.json ? out.dump() : out["ids"].dump()) << "\n";
    return 0;
  }
  omni::LoadOptions lo;
  lo.model_dir = a.model;
  lo.device = a.device;
  lo.dtype = a.dtype;
  lo.weights = a.weights;
  lo.load_talker = a.gen.speak;
  if (a.context > 0) lo.context_tokens = a.context;
  omni::GenerateOptions gen = a.gen;
  if (!a.force_ids.empty()) gen.forced_tokens = parse_ids(a.force_ids);
  auto model = omni::Model::load(lo);
  std::string tools;
  if (!a.tools_file.empty()) tools = read_json_file("--tools", a.tools_file);
  if (!a.response_schema_file.empty()) gen.response_schema = read_json_file("--response-schema", a.response_schema_file);
  auto session = model->new_session({.system_prompt = a.system, .tools = tools});

  std::vector<float> logits;
  size_t vocab = 0;
  SpeechWriter speech;
  omni::Callbacks cb;
  if (!a.logits_out.empty())
    cb.on_logits = [&](const float* l, size_t n) {
      vocab = n;
      logits.insert(logits.end(), l, l + n);
    };
  if (!a.json) cb.on_text = [](std::string_view t) { std::cout << t << std::flush; };
  if (a.gen.speak) {
    speech.open(a.speech_out, model->speech_sample_rate());
    cb.on_audio = [&](const float* s, size_t n) { speech.write(s, n); };
  }
  omni::TurnResult r;
  if (a.have_ids) {
    r = session->generate_from_ids(parse_ids(a.ids), gen, cb);
  } else if (!a.messages_file.empty()) {
    r = session->respond_messages(read_messages(a.messages_file), gen, cb);
  } else if (!a.videos.empty()) {
    r = session->respond_messages(quick_turn(a), gen, cb);
  } else {
    omni::UserTurn turn;
    turn.text = a.prompt;
    if (!a.audio.empty()) turn.audio_16k = read_audio_16k(a.audio);
    for (const std::string& path : a.images) turn.images.push_back({.path = path, .bytes = {}, .format = {}});
    r = session->respond(turn, gen, cb);
  }
  if (a.gen.speak) speech.close();
  if (!a.logits_out.empty())
    omni::write_npy_f32(a.logits_out, logits.data(), {int64_t(r.tokens.size()), int64_t(vocab)});
  if (a.json) {
    nlohmann::json out;
    out["prompt_tokens"] = r.prompt_tokens;
    out["tokens"] = r.tokens;
    out["text"] = r.text;
    if (!a.tools_file.empty()) {
      // The calls the answer ends with (a one-shot run has no results to give, so it ends there).
      out["tool_calls"] = nlohmann::json::array();
      for (const auto& c : r.tool_calls)
        out["tool_calls"].push_back({{"name", c.name}, {"arguments", nlohmann::ordered_json::parse(c.arguments)}});
    }
    out["stop"] = std::string(omni::to_string(r.stop));
    if (a.gen.speak)
      out["speech"] = {{"samples", r.speech_samples}, {"sample_rate", model->speech_sample_rate()},
                       {"frames", r.speech_frames}};
    out["timings"] = {{"load_ms", model->load_ms()},
                      {"load_bytes", model->load_bytes()},
                      {"prefill_ms", r.timings.prefill_ms},
                      {"decode_tok_s", r.timings.decode_tok_s}};
    if (a.gen.speak) out["timings"]["first_audio_ms"] = r.timings.first_audio_ms;
    if (r.timings.masked_steps > 0) {
      out["timings"]["mask_ms"] = r.timings.mask_ms;
      out["timings"]["masked_steps"] = r.timings.masked_steps;
    }
    std::cout << out.dump() << "\n";
  } else {
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omni-run: error: %s\n", e.what());
    return 1;
  }
}
