// omnid_scripted: the real omnid (same command line, config, event loop, audio, ipc, systemd code)
// with a scripted engine in place of the model, for daemon tests that must not depend on the
// engine's speed or state: exact timing of answers, a cancel that lands mid-answer, an engine that
// hangs (watchdog), a load that fails. Never installed; the e2e tests also run the real omnid with
// the tiny model.
//
// model.path selects the script: "scripted:step_ms=20,words=12,talker=1,hang_at=-1,load_ms=0,fail=0"
//   step_ms  time per generated word (one token, one 80 ms audio chunk when speaking)
//   words    filler words after the echo of the question
//   talker   1: the model can speak (speakers ethan, chelsie); 0: text only
//   hang_at  word index at which respond() blocks for good, ignoring cancel (-1: never)
//   load_ms  time Model::load takes, reporting progress
//   fail     1: Model::load throws a CheckpointError
//   device_error_at  word index at which respond() throws omni::DeviceError (-1: never)
//   reset_fails  1: Session::reset (and so set_system_prompt) throws; the conversation stays
//   context_full  1: respond() throws omni::ContextFullError (the engine's "turn does not fit")
//   Prompts count one token per word (render_prompt: the system prompt's words, the text's, one per 40 ms of audio).
//   sample   1: the checkpoint's generation_config samples (temperature 0.6, top_k 20, top_p 0.95, penalty 1.1);
//            0: it is absent (greedy, transformers' defaults)
//   show_sampling  1: each answer starts with "[greedy r=R]" or "[t=T k=K p=P r=R seed=S]", the sampling it got
//   answer_wav  a WAV file (any rate, resampled to 24 kHz): every spoken answer is this recording, one 80 ms chunk
//            per word ("word0", "word1", ...), the chunks paced by the clock in real time from 200 ms ahead of
//            it (as a streaming talker keeps the loudspeaker fed), step_ms unused; "answer" for the echo tests
//   bad_args  1: tool calls carry "{}" as arguments (a required argument missing), as a broken engine would
//   repeat_calls  1: after tool results, with tool_choice "auto", the answer calls the same tools again
//   call_on_audio  1: a spoken question (audio, no text) with tool_choice "auto" calls the first tool
//
// Tools (docs/protocol.md "Tools"): with tool_choice "required" the answer calls the first tool, with a name
// that tool; with "auto" it calls the tools named by a question "call NAME [NAME...]" (any names, registered
// or not); "none" never calls. A call says "Calling." first, then ends the answer; its arguments are the
// simplest valid value of the tool's parameters (required properties only, minimum-or-zero numbers, the
// first enum value). The answer after results is " Result: CONTENT." for each result, then the words. A
// response_format answer is the simplest valid value of its schema.
#include <omni/engine.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "audio/io/wav.h"
#include "daemon/cli.h"
#include "grammar/json_text.h"

namespace {

struct Script {
  int step_ms = 20;
  int words = 12;
  bool talker = true;
  int hang_at = -1;
  int load_ms = 0;
  bool fail = false;
  int device_error_at = -1;
  bool reset_fails = false;
  bool sample = false;
  bool context_full = false;
  bool show_sampling = false;
  std::string answer_wav;
  std::vector<float> answer;  // answer_wav at 24 kHz
  bool bad_args = false;
  bool repeat_calls = false;
  bool call_on_audio = false;
};

// The simplest value that `schema` (the tool-parameter subset) accepts.
omni::ojson simplest_value(const omni::ojson& schema) {
  if (!schema.is_object()) return omni::ojson::object();
  if (auto e = schema.find("enum"); e != schema.end() && e->is_array() && !e->empty()) return e->front();
  std::string type = "object";
  if (auto t = schema.find("type"); t != schema.end()) {
    if (t->is_string()) type = t->get<std::string>();
    else if (t->is_array() && !t->empty()) type = t->front().get<std::string>();
  }
  auto num = [&](const char* key) -> std::optional<double> {
    auto it = schema.find(key);
    return it != schema.end() && it->is_number() ? std::optional<double>(it->get<double>()) : std::nullopt;
  };
  if (type == "string") {
    const int min_len = static_cast<int>(num("minLength").value_or(1));
    return std::string(static_cast<size_t>(std::max(min_len, 1)), 'a').substr(0, num("maxLength") ? size_t(*num("maxLength")) : size_t(-1));
  }
  if (type == "integer" || type == "number") {
    const auto lo = num("minimum") ? num("minimum") : num("exclusiveMinimum");
    const auto hi = num("maximum") ? num("maximum") : num("exclusiveMaximum");
    double v = 0;
    if (lo && hi) v = (*lo + *hi) / 2;
    else if (lo) v = *lo + 1;
    else if (hi) v = *hi - 1;
    if (type == "integer") {
      v = std::ceil(v);
      if (hi && v > *hi) v = std::floor(*hi);
      return static_cast<long long>(v);
    }
    return v;
  }
  if (type == "boolean") return true;
  if (type == "null") return nullptr;
  if (type == "array") {
    omni::ojson a = omni::ojson::array();
    const int n = static_cast<int>(num("minItems").value_or(0));
    for (int i = 0; i < n; ++i) a.push_back(simplest_value(schema.value("items", omni::ojson::object())));
    return a;
  }
  omni::ojson o = omni::ojson::object();
  const omni::ojson props = schema.value("properties", omni::ojson::object());
  for (const auto& req : schema.value("required", omni::ojson::array()))
    if (req.is_string() && props.contains(req.get<std::string>()))
      o[req.get<std::string>()] = simplest_value(props[req.get<std::string>()]);
  return o;
}

Script parse_script(const std::string& dir) {
  if (dir.rfind("scripted:", 0) != 0)
    throw omni::CheckpointError(dir + ": omnid_scripted wants model.path 'scripted:key=value,...'");
  Script s;
  std::stringstream in(dir.substr(9));
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = item.substr(0, eq);
    if (key == "answer_wav") {
      s.answer_wav = item.substr(eq + 1);
      s.answer = omni::audio::load_wav_mono(s.answer_wav, 24000);
      continue;
    }
    const int v = std::stoi(item.substr(eq + 1));
    if (key == "step_ms") s.step_ms = v;
    else if (key == "words") s.words = v;
    else if (key == "talker") s.talker = v != 0;
    else if (key == "hang_at") s.hang_at = v;
    else if (key == "load_ms") s.load_ms = v;
    else if (key == "fail") s.fail = v != 0;
    else if (key == "device_error_at") s.device_error_at = v;
    else if (key == "reset_fails") s.reset_fails = v != 0;
    else if (key == "sample") s.sample = v != 0;
    else if (key == "context_full") s.context_full = v != 0;
    else if (key == "show_sampling") s.show_sampling = v != 0;
    else if (key == "bad_args") s.bad_args = v != 0;
    else if (key == "repeat_calls") s.repeat_calls = v != 0;
    else if (key == "call_on_audio") s.call_on_audio = v != 0;
    else throw omni::CheckpointError(dir + ": unknown script key '" + key + "'");
  }
  return s;
}

class ScriptedSession final : public omni::Session {
 public:
  explicit ScriptedSession(const Script& s, std::string system) : script_(s), system_(std::move(system)) {}

  omni::TurnResult respond(const omni::UserTurn& turn, const omni::GenerateOptions& opt,
                           const omni::Callbacks& cb) override {
    if (script_.context_full)
      throw omni::ContextFullError("context full: this turn needs 9999 tokens but context_tokens is 256 (scripted)");
    std::vector<std::string> words;
    if (script_.show_sampling) {
      const omni::Sampling& s = opt.sampling;
      char buf[160];
      if (s.greedy) std::snprintf(buf, sizeof buf, "[greedy r=%g]", s.repetition_penalty);
      else
        std::snprintf(buf, sizeof buf, "[t=%g k=%d p=%g r=%g seed=%llu]", s.temperature, s.top_k, s.top_p,
                      s.repetition_penalty, static_cast<unsigned long long>(s.seed));
      words.push_back(buf);
    }
    if (!opt.response_schema.empty())
      return run({omni::json_dumps_py(simplest_value(omni::ojson::parse(opt.response_schema)))}, opt, cb, true);
    std::vector<std::string> calls;
    if (opt.tool_choice == "required" && !tools_.empty()) calls.push_back(tools_.front()["function"]["name"]);
    else if (opt.tool_choice != "auto" && opt.tool_choice != "none" && opt.tool_choice != "required")
      calls.push_back(opt.tool_choice);
    else if (opt.tool_choice == "auto" && script_.call_on_audio && turn.text.empty() && !turn.audio_16k.empty() &&
             !tools_.empty())
      calls.push_back(tools_.front()["function"]["name"]);
    else if (opt.tool_choice == "auto" && turn.text.rfind("call ", 0) == 0) {
      std::stringstream names(turn.text.substr(5));
      for (std::string n; names >> n;) calls.push_back(n);
    }
    if (!calls.empty()) return call(calls, opt, cb);
    if (!turn.audio_16k.empty()) words.push_back("(heard " + std::to_string(turn.audio_16k.size() / 16) + " ms)");
    if (!turn.text.empty()) words.push_back("You said: " + turn.text + ".");
    const int fillers = script_.answer.empty() || !opt.speak ? script_.words
                                                            : static_cast<int>((script_.answer.size() + 1919) / 1920);
    for (int i = 0; i < fillers; ++i) words.push_back("word" + std::to_string(i));
    return run(words, opt, cb, true);
  }

  void set_tools(const std::string& tools_json) override {
    tools_ = tools_json.empty() ? omni::ojson::array() : omni::ojson::parse(tools_json);
    reset();  // as the engine: the tools are in the system turn
  }

  omni::TurnResult respond_tool_results(const std::vector<omni::ToolResult>& results, const omni::GenerateOptions& opt,
                                        const omni::Callbacks& cb) override {
    if (last_calls_.empty()) throw omni::Error("tool results: no answer in this conversation called a tool");
    if (results.size() != last_calls_.size())
      throw omni::Error("tool results: " + std::to_string(results.size()) + " results for " +
                        std::to_string(last_calls_.size()) + " calls");
    if (opt.tool_choice == "auto" && script_.repeat_calls) return call(last_calls_, opt, cb);
    last_calls_.clear();
    std::vector<std::string> words;
    // The answer after the results goes on from the text before the calls: " Result: ..." (a new word).
    for (const auto& r : results) words.push_back((words.empty() ? " " : "") + std::string("Result: ") + r.content + ".");
    for (int i = 0; i < script_.words; ++i) words.push_back("word" + std::to_string(i));
    return run(words, opt, cb, true);
  }

  omni::TurnResult generate_from_ids(const std::vector<int32_t>&, const omni::GenerateOptions& opt,
                                     const omni::Callbacks& cb) override {
    return run({"ids"}, opt, cb, true);
  }

  omni::TurnResult say(const std::string& text, const omni::GenerateOptions& opt, const omni::Callbacks& cb) override {
    std::vector<std::string> words;
    std::stringstream in(text);
    for (std::string w; in >> w;) words.push_back(w);
    omni::GenerateOptions o = opt;
    o.speak = true;
    return run(words, o, cb, false);
  }

  void cancel() override { cancelled_ = true; }
  void reset() override {
    if (script_.reset_fails) throw std::runtime_error("scripted reset failure");
    context_ = 0;
    ++epoch_;
    last_calls_.clear();  // the conversation, and with it the calls of its last answer, is forgotten
  }
  void set_system_prompt(const std::string& p) override {  // as the engine: a new conversation
    reset();
    system_ = p;
  }
  int context_used() const override { return context_; }
  // As the engine: a mark saves the context length; a reset in between makes it stale.
  omni::SessionMark mark() const override {
    auto m = std::make_shared<Mark>();
    m->session = this;
    m->epoch = epoch_;
    m->context = context_;
    return omni::SessionMark{std::move(m)};
  }
  void rollback(const omni::SessionMark& mark) override {
    const auto* m = dynamic_cast<const Mark*>(mark.state.get());
    if (!m || m->session != this) throw omni::Error("rollback: the mark is empty or from another session");
    if (m->epoch != epoch_) throw omni::Error("rollback: the conversation was reset since the mark");
    context_ = m->context;
  }

 private:
  // "Calling." then the calls (markup: not text, not spoken), as the engine ends an answer with calls.
  omni::TurnResult call(const std::vector<std::string>& names, const omni::GenerateOptions& opt,
                        const omni::Callbacks& cb) {
    omni::TurnResult r = run({"Calling."}, opt, cb, true);
    if (r.stop != omni::StopReason::EndOfTurn) return r;
    for (const std::string& name : names) {
      omni::ojson params = omni::ojson::object();
      for (const auto& t : tools_)
        if (t["function"]["name"] == name) params = t["function"].value("parameters", omni::ojson::object());
      r.tool_calls.push_back({name, script_.bad_args ? "{}" : omni::json_dumps_py(simplest_value(params))});
      r.tokens.push_back(151657);  // <tool_call>
      ++context_;
    }
    last_calls_ = names;
    return r;
  }

  struct Mark : omni::SessionMarkState {
    const void* session = nullptr;
    int epoch = 0;
    int context = 0;
  };

  omni::TurnResult run(const std::vector<std::string>& words, const omni::GenerateOptions& opt,
                       const omni::Callbacks& cb, bool emit_text) {
    cancelled_ = false;  // as the real engine does: a cancel() before the turn starts is forgotten
    omni::TurnResult r;
    std::vector<float> chunk(1920);
    const auto started = std::chrono::steady_clock::now();
    size_t answer_at = 0;  // answer_wav: the next sample to speak
    for (size_t i = 0; i < words.size(); ++i) {
      if (script_.hang_at >= 0 && static_cast<int>(i) == script_.hang_at)
        for (;;) std::this_thread::sleep_for(std::chrono::hours(1));  // a stuck device
      if (script_.device_error_at >= 0 && static_cast<int>(i) == script_.device_error_at)
        throw omni::DeviceError("scripted: CUDA error 700 (an illegal memory access) in step " + std::to_string(i));
      if (cancelled_) {
        r.stop = omni::StopReason::Cancelled;
        return r;
      }
      if (static_cast<int>(i) >= opt.max_new_tokens) {
        r.stop = omni::StopReason::MaxTokens;
        return r;
      }
      if (!script_.answer.empty()) {
        std::this_thread::sleep_until(started + std::chrono::milliseconds(80 * static_cast<int64_t>(i)) -
                                      std::chrono::milliseconds(200));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(script_.step_ms));
      }
      const std::string piece = (i ? " " : "") + words[i];
      r.tokens.push_back(static_cast<int32_t>(1000 + i));
      r.text += piece;
      ++context_;
      if (cb.on_token) cb.on_token(r.tokens.back());
      if (emit_text && cb.on_text) cb.on_text(piece);
      if (opt.speak && script_.talker && cb.on_audio) {
        for (size_t k = 0; k < chunk.size(); ++k) {
          if (!script_.answer.empty())
            chunk[k] = answer_at < script_.answer.size() ? script_.answer[answer_at++] : 0.0f;
          else
            chunk[k] = 0.3f * static_cast<float>(std::sin(2 * M_PI * (220 + 20 * (i % 8)) * k / 24000.0));
        }
        cb.on_audio(chunk.data(), chunk.size());
        r.speech_samples += chunk.size();
        ++r.speech_frames;
      }
    }
    r.stop = omni::StopReason::EndOfTurn;
    return r;
  }

  Script script_;
  std::string system_;
  std::atomic<bool> cancelled_{false};
  std::atomic<int> context_{0};
  int epoch_ = 0;
  omni::ojson tools_ = omni::ojson::array();
  std::vector<std::string> last_calls_;  // the calls the last answer ended with
};

class ScriptedModel final : public omni::Model {
 public:
  explicit ScriptedModel(Script s) : script_(s) {}
  std::unique_ptr<omni::Session> new_session(const omni::SessionOptions& opt) override {
    auto s = std::make_unique<ScriptedSession>(script_, opt.system_prompt);
    if (!opt.tools.empty()) s->set_tools(opt.tools);
    return s;
  }
  std::vector<int32_t> tokenize(std::string_view) const override { return {}; }
  std::vector<int32_t> render_prompt(const std::string& system, const omni::UserTurn& turn) const override {
    size_t n = turn.audio_16k.size() / 640;
    for (const std::string* text : {&system, &turn.text}) {
      std::stringstream in(*text);
      for (std::string w; in >> w;) ++n;
    }
    return std::vector<int32_t>(n, 1);
  }
  std::string decode(const std::vector<int32_t>&) const override { return {}; }
  bool has_talker() const override { return script_.talker; }
  std::vector<std::string> speakers() const override {
    return script_.talker ? std::vector<std::string>{"Ethan", "Chelsie"} : std::vector<std::string>{};
  }
  int speech_sample_rate() const override { return 24000; }
  std::string device_name() const override { return "scripted"; }
  double load_ms() const override { return script_.load_ms; }
  omni::Sampling default_sampling() const override {
    omni::Sampling s{.greedy = true, .temperature = 1.0f, .top_k = 50, .top_p = 1.0f, .repetition_penalty = 1.0f};
    if (script_.sample) s = {.greedy = false, .temperature = 0.6f, .top_k = 20, .top_p = 0.95f, .repetition_penalty = 1.1f};
    return s;
  }

 private:
  Script script_;
};

std::unique_ptr<omni::Model> load_scripted(const omni::LoadOptions& opt) {
  const Script s = parse_script(opt.model_dir);
  for (int t = 0; t < s.load_ms; t += 100) {
    if (opt.on_progress) opt.on_progress(static_cast<double>(t) / s.load_ms, "scripted load");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (s.fail) throw omni::CheckpointError(opt.model_dir + ": scripted load failure");
  return std::make_unique<ScriptedModel>(s);
}

}  // namespace

int main(int argc, char** argv) { return omnid::daemon_main(argc, argv, load_scripted); }
