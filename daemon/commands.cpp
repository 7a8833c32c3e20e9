// Control requests (protocol v1, docs/protocol.md) and reload.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <memory>

#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/request_audio.h"

namespace omnid {

using omni::audio::monotonic_ms;
using omni::ipc::ErrorCode;

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

void Daemon::drain_requests() {
  if (!server_) return;
  // A bad request must never take the daemon down: whatever a handler throws becomes `internal`.
  while (auto in = server_->poll(std::chrono::milliseconds(0))) {
    try {
      handle(*in);
    } catch (const std::exception& e) {
      log_error("request %s failed: %s", std::string(omni::ipc::command_name(in->request.command)).c_str(), e.what());
      server_->reply_error(in->handle, ErrorCode::internal, e.what());
    }
    if (!server_) return;  // shut down by this request's consequences
  }
}

nlohmann::json Daemon::status_fields() const {
  nlohmann::json turn_id = nullptr;
  if (turn_) turn_id = turn_->id;
  return {{"state", to_string(state_)},
          {"listening", listening_},
          {"speaker", speaker_},
          {"volume", speech_.volume()},
          {"turn_id", turn_id},
          {"seq", server_->events().last_seq()},
          {"uptime_s", static_cast<double>(monotonic_ms() - started_ms_) / 1000.0},
          {"model", {{"path", config_.model.path}, {"device", config_.model.device}, {"loaded", model_ != nullptr}}},
          {"context_tokens_used", worker_ ? worker_->context_used() : 0},
          {"context_tokens", config_.model.context_tokens},
          {"first_audio", {{"since_speech_end_ms", latency_status()}}},
          {"sampling", sampling_fields()},
          {"tools", tools_.status()},
          {"camera", camera_ ? camera_->status() : nlohmann::json{{"state", "off"}}},
          {"voices", model_ ? nlohmann::json(model_->speakers()) : nlohmann::json::array()},
          {"queued", [this] {
             nlohmann::json ids = nlohmann::json::array();
             for (const auto& q : queued_asks_) ids.push_back(q.turn_id);
             return ids;
           }()},
          {"protocols", {omni::ipc::kOldestProtocolVersion, omni::ipc::kProtocolVersion}},
          {"protocol", omni::ipc::kProtocolVersion}};
}

nlohmann::json Daemon::sampling_fields() const {
  const omni::Sampling s = effective_sampling(model_ ? model_->default_sampling() : omni::Sampling{}, sampling_, 0);
  nlohmann::json seed = nullptr;
  if (sampling_.seed) seed = *sampling_.seed;
  return {{"temperature", s.greedy ? 0.0 : double(s.temperature)},
          {"top_k", s.top_k},
          {"top_p", double(s.top_p)},
          {"repetition_penalty", double(s.repetition_penalty)},
          {"seed", seed}};
}

void Daemon::apply_sampling(const omni::ipc::SamplingUpdate& u) { update_sampling(u, sampling_); }

void Daemon::update_sampling(const omni::ipc::SamplingUpdate& u, SamplingConfig& sampling) {
  auto put = [](const std::optional<std::optional<double>>& in, auto& out) {
    using T = typename std::decay_t<decltype(out)>::value_type;
    if (!in) return;
    if (*in) out = static_cast<T>(**in);
    else out.reset();
  };
  put(u.temperature, sampling.temperature);
  put(u.top_k, sampling.top_k);
  put(u.top_p, sampling.top_p);
  put(u.repetition_penalty, sampling.repetition_penalty);
  put(u.seed, sampling.seed);
}

static bool same_name(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

std::optional<std::string> Daemon::find_speaker(const std::string& name) const {
  if (!model_) return std::nullopt;
  for (const std::string& n : model_->speakers())
    if (same_name(n, name)) return n;
  return std::nullopt;
}

std::string Daemon::unknown_speaker_message(const std::string& name) const {
  std::string list;
  if (model_)
    for (const auto& n : model_->speakers()) list += (list.empty() ? "" : ", ") + n;
  return "no speaker '" + name + "' (this model has: " + list + ")";
}

void Daemon::handle(const omni::ipc::IncomingRequest& in) {
  auto& server = *server_;
  const auto& h = in.handle;
  std::visit(
      overloaded{
          [&](const omni::ipc::PingRequest&) { server.reply_ok(h, {{"protocol", omni::ipc::kProtocolVersion}}); },
          [&](const omni::ipc::StatusRequest&) { server.reply_ok(h, status_fields()); },
          [&](const omni::ipc::AskRequest& r) {
            TurnJob job;
            if (r.text) job.input.text = *r.text;
            if (r.wav) {
              // Only the header is read here (bounds: request_audio.h); decoding and resampling run on the
              // engine worker, so a long clip never holds up the other clients.
              std::string error;
              omni::audio::WavInfo info;
              if (!check_request_wav(*r.wav, info, error))
                return server.reply_error(h, ErrorCode::bad_request, "WAV frame: " + error);
              job.audio_ms = static_cast<int64_t>(info.seconds() * 1000.0);
              job.prepare = [wav = std::make_shared<const std::string>(*r.wav)](omni::UserTurn& input) {
                input.audio_16k = convert_request_wav(*wav);
              };
            }
            job.options = generate_options(r.speak);
            if (auto err = ask_tool_options(r, job.options)) return server.reply_error(h, err->code, err->message);
            // This turn's own settings (protocol 2); the daemon's stay as they are.
            if (r.max_new_tokens) job.options.max_new_tokens = *r.max_new_tokens;
            if (r.sampling) {
              SamplingConfig s = sampling_;
              update_sampling(*r.sampling, s);
              job.options.sampling =
                  effective_sampling(model_ ? model_->default_sampling() : omni::Sampling{}, s, seed_source_());
            }
            if (r.speaker) {
              if (!model_) return server.reply_error(h, ErrorCode::unavailable, "the model is still loading");
              const auto voice = find_speaker(*r.speaker);
              if (!voice) return server.reply_error(h, ErrorCode::not_found, unknown_speaker_message(*r.speaker));
              job.options.speaker = *voice;
            }
            for (const omni::ipc::AskImage& image : r.images) {
              omni::ImageInput in;
              in.path = image.path;
              in.bytes = image.bytes;
              in.format = image.format;
              job.input.images.push_back(std::move(in));
            }
            if (r.camera) {
              const std::string why = camera_ ? camera_->unavailable_reason()
                                              : std::string("no camera is configured (camera.pipeline in the configuration)");
              if (!why.empty() || !attach_camera_frame(job.input))
                return server.reply_error(h, ErrorCode::unavailable, "camera: " + (why.empty() ? "no frame" : why));
            } else {
              attach_camera_by_config("ask", job.input);
            }
            if (!job.input.images.empty()) return check_images_then_take_ask(h, std::move(job), r.queue, r.preempt);
            take_ask(h, std::move(job), r.queue, r.preempt);
          },
          [&](const omni::ipc::SayRequest& r) {
            TurnJob job;
            job.say = true;
            job.input.text = r.text;
            job.options = generate_options(true);
            uint64_t id = 0;
            if (auto err = start_turn("say", std::move(job), id)) return server.reply_error(h, err->code, err->message);
            server.reply_ok(h, {{"turn_id", id}});
          },
          [&](const omni::ipc::CancelRequest& r) {
            if (r.turn_id && cancel_queued(*r.turn_id, "request")) return server.reply_ok(h, {{"turn_id", *r.turn_id}});
            if (r.turn_id && (!turn_ || turn_->id != *r.turn_id))
              return server.reply_error(h, ErrorCode::not_found,
                                        "turn " + std::to_string(*r.turn_id) + " is not running");
            if (!turn_) return server.reply_ok(h, {{"turn_id", nullptr}});
            const uint64_t id = turn_->id;
            cancel_turn("request");
            server.reply_ok(h, {{"turn_id", id}});
          },
          [&](const omni::ipc::ListenRequest& r) {
            listening_ = r.enabled;
            // The microphone opens before the pipeline plays, so the VAD hears a recording from its first sample.
            update_state();
            capture_.set_playing(r.enabled);
            server.reply_ok(h, {{"listening", listening_}});
          },
          [&](const omni::ipc::ResetRequest&) {
            if (!worker_) return server.reply_error(h, ErrorCode::unavailable, "the model is still loading");
            if (turn_) cancel_turn("reset");
            // The cancelled turn, if any, finishes first in the worker's queue.
            apply_then_reply(h, [](omni::Session& s) { s.reset(); }, "reset");
          },
          [&](const omni::ipc::SetRequest& r) {
            if (r.system_prompt && !worker_)
              return server.reply_error(h, ErrorCode::unavailable, "the model is still loading");
            if (r.system_prompt)
              if (auto err = check_system_prompt(*r.system_prompt, config_.model.max_new_tokens)) return server.reply_error(h, err->code, err->message);
            if (r.speaker) {
              if (!model_) return server.reply_error(h, ErrorCode::unavailable, "the model is still loading");
              const auto voice = find_speaker(*r.speaker);
              if (!voice) return server.reply_error(h, ErrorCode::not_found, unknown_speaker_message(*r.speaker));
              speaker_ = *voice;
              if (spec_) drop_speculation("the speaker changed");  // it speaks with the old voice
            }
            if (r.volume) speech_.set_volume(*r.volume);
            if (r.sampling) {
              apply_sampling(*r.sampling);
              if (spec_) drop_speculation("the sampling changed");  // it was drawn with the old settings
            }
            if (r.system_prompt) change_system_prompt(*r.system_prompt);
            server.reply_ok(h, {{"speaker", speaker_},
                                {"volume", speech_.volume()},
                                {"system_prompt", system_prompt_},
                                {"sampling", sampling_fields()}});
          },
          [&](const omni::ipc::EventsRequest&) {  // the control server answers these from its buffer
            server.reply_error(h, ErrorCode::internal, "events reached the daemon instead of the control server");
          },
          [&](const omni::ipc::ReloadRequest&) {
            std::string error;
            nlohmann::json details = nlohmann::json::object();
            ErrorCode code = ErrorCode::unavailable;
            if (!reload(error, details, &code)) return server.reply_error(h, code, error);
            server.reply_ok(h, details);
          },
          [&](const omni::ipc::RegisterToolsRequest& r) { register_tools(h, r); },
          [&](const omni::ipc::UnregisterToolsRequest&) { unregister_tools(h); },
          [&](const omni::ipc::ToolResultRequest& r) { tool_result(h, r); },
          [&](const omni::ipc::PushAudioRequest& r) {
            if (config_.audio.input.source != "ipc")
              return server.reply_error(h, ErrorCode::bad_request,
                                        "push_audio needs audio.input.source: ipc (the microphone is the "
                                        "GStreamer pipeline)");
            // The size was checked when the request was parsed (kMaxPushAudioBytes, whole samples).
            const size_t width = r.f32 ? 4 : 2;
            const size_t count = r.pcm.size() / width;
            std::vector<float> samples(count);
            if (r.f32) {
              std::memcpy(samples.data(), r.pcm.data(), count * 4);
              for (float& x : samples)
                if (!std::isfinite(x)) x = 0.0f;
            } else {
              for (size_t i = 0; i < count; ++i) {
                const auto lo = static_cast<uint8_t>(r.pcm[2 * i]), hi = static_cast<uint8_t>(r.pcm[2 * i + 1]);
                samples[i] = static_cast<float>(static_cast<int16_t>(static_cast<uint16_t>(lo | (hi << 8)))) / 32768.0f;
              }
            }
            // Not listening: dropped, as a paused microphone hears nothing (`listening` says so).
            const size_t delivered = ready_ ? capture_.push(samples.data(), samples.size(), r.sample_rate) : 0;
            server.reply_ok(h, {{"listening", listening_ && ready_}, {"samples_16k", delivered}});
          },
      },
      in.request.command);
}

void Daemon::apply_then_reply(const omni::ipc::ReplyHandle& h, std::function<void(omni::Session&)> job,
                              const std::string& what) {
  // A speculation runs on the conversation as it was; take it back before changing the conversation.
  if (spec_) drop_speculation(what);
  worker_->submit_control(
      std::move(job),
      [this, h, what](const std::string& e) {
        loop_.post([this, h, what, e] {
          publish_error("internal", what + " failed: " + e);
          if (server_) server_->reply_error(h, ErrorCode::internal, what + " failed: " + e);
        });
      },
      [this, h] {
        loop_.post([this, h] {
          if (server_) server_->reply_ok(h);
        });
      });
}

// Applied between turns on the engine thread (a running answer finishes first), so callers do not wait for it.
// Should the engine fail, an error event says so and the old prompt stays.
void Daemon::change_system_prompt(const std::string& prompt) {
  const std::string old_prompt = system_prompt_;
  system_prompt_ = prompt;
  if (spec_) drop_speculation("the system prompt changed");
  worker_->submit_control([prompt](omni::Session& s) { s.set_system_prompt(prompt); },
                          [this, old_prompt, prompt](const std::string& e) {
                            loop_.post([this, old_prompt, prompt, e] {
                              if (system_prompt_ == prompt) system_prompt_ = old_prompt;
                              publish_error("internal", "set system_prompt failed: " + e);
                            });
                          });
}

std::optional<omni::ipc::Error> Daemon::check_system_prompt(const std::string& prompt, int max_new_tokens) const {
  if (!model_) return std::nullopt;
  const size_t tokens = model_->render_prompt(prompt, omni::UserTurn{}).size();
  const size_t context = static_cast<size_t>(config_.model.context_tokens);
  const size_t answer = static_cast<size_t>(max_new_tokens);
  if (tokens + answer <= context) return std::nullopt;
  return omni::ipc::Error{ErrorCode::bad_request,
                          "the system prompt takes " + std::to_string(tokens) + " tokens (with an empty turn's " +
                              "prompt); with model.max_new_tokens " + std::to_string(answer) +
                              " for the answer that leaves no room in model.context_tokens " +
                              std::to_string(context) + "; shorten it to at most " +
                              std::to_string(context > answer ? context - answer : 0) + " tokens"};
}

void Daemon::take_ask(const omni::ipc::ReplyHandle& h, TurnJob job, bool queue, bool preempt) {
  auto& server = *server_;
  if (turn_ && queue && ready_ && !stopping_) {
    if (queued_asks_.size() >= kMaxQueuedAsks)
      return server.reply_error(h, ErrorCode::busy,
                                "turn " + std::to_string(turn_->id) + " is running and " +
                                    std::to_string(kMaxQueuedAsks) +
                                    " asks already wait (the queue is full); try again later");
    if (!job.prepare)
      if (auto err = check_turn_fits(job.input)) return server.reply_error(h, err->code, err->message);
    const uint64_t queued_id = next_turn_id_++;
    job.turn_id = queued_id;
    queued_asks_.push_back({queued_id, std::move(job)});
    const auto position = static_cast<int64_t>(queued_asks_.size());
    publish("turn.queued", {{"turn_id", queued_id}, {"position", position}});
    return server.reply_ok(h, {{"turn_id", queued_id}, {"queued", true}, {"position", position}});
  }
  if (turn_ && preempt) cancel_turn("preempt");
  uint64_t id = 0;
  if (auto err = start_turn("ask", std::move(job), id)) return server.reply_error(h, err->code, err->message);
  server.reply_ok(h, {{"turn_id", id}});
}

void Daemon::check_images_then_take_ask(const omni::ipc::ReplyHandle& h, TurnJob job, bool queue, bool preempt) {
  auto& server = *server_;
  if (!ready_ || !model_) return server.reply_error(h, ErrorCode::unavailable, "the model is still loading");
  if (stopping_) return server.reply_error(h, ErrorCode::unavailable, "omnid is stopping");
  if (!vision_refusal_.empty()) return server.reply_error(h, ErrorCode::bad_request, "images: " + vision_refusal_);
  // Busy now is busy: no decoding for an ask that could not start (the check runs again when it is taken).
  if (turn_ && !queue && !preempt)
    return server.reply_error(h, ErrorCode::busy, "turn " + std::to_string(turn_->id) +
                                                      " is running; cancel it, wait for its end, or ask with queue: true");
  if (!image_checker_) image_checker_ = std::make_unique<ImageChecker>();
  // What the check needs travels with it: the model outlives the checker (daemon.h), the rest is copied.
  auto pending = std::make_shared<TurnJob>(std::move(job));
  const bool taken = image_checker_->submit([this, h, pending, queue, preempt, model = model_.get(),
                                             system = system_prompt_, context = config_.model.context_tokens] {
    auto error = check_turn_images(*model, system, pending->input, context);
    loop_.post([this, h, pending, queue, preempt, error = std::move(error)] {
      if (!server_) return;
      if (error) return server_->reply_error(h, error->code, error->message);
      // The ask is taken now, as if it had just arrived: a turn that started meanwhile makes it busy (or queued).
      take_ask(h, std::move(*pending), queue, preempt);
    });
  });
  if (!taken)
    server.reply_error(h, ErrorCode::busy,
                       std::to_string(ImageChecker::kMaxPending) +
                           " asks with images are already being decoded; try again when one has been answered");
}

std::optional<omni::ipc::Error> Daemon::check_turn_fits(const omni::UserTurn& input) const {
  if (!model_) return std::nullopt;
  // A turn with images was counted by check_turn_images off the loop, a spoken turn's camera clip is counted by the
  // engine (bounded by camera.clip); counting them here would decode them on the loop.
  if (!input.images.empty() || !input.videos.empty()) return std::nullopt;
  const size_t tokens = model_->render_prompt(system_prompt_, input).size();
  const size_t context = static_cast<size_t>(config_.model.context_tokens);
  if (tokens < context) return std::nullopt;  // at least one token of answer
  return omni::ipc::Error{ErrorCode::context_full,
                          "this turn's prompt is " + std::to_string(tokens) +
                              " tokens with the system prompt; model.context_tokens is " + std::to_string(context) +
                              " (older turns are dropped to make room, but this one alone does not fit)"};
}

bool Daemon::reload(std::string& error, nlohmann::json& details, ErrorCode* code) {
  notifier_.reloading("reloading " + config_path_);
  Config next;
  try {
    next = load_config_file(config_path_);
  } catch (const ConfigError& e) {
    error = std::string("the configuration was not reloaded; the running one stays: ") + e.what();
    log_error("%s", error.c_str());
    publish_error("unavailable", error);
    notifier_.ready(std::string(to_string(state_)) + "; reload failed, running configuration kept");
    return false;
  }
  {
    // Against the running context_tokens (a restart key) and the file's max_new_tokens.
    const auto err = check_system_prompt(next.model.system_prompt, next.model.max_new_tokens);
    if (err) {
      error = "the configuration was not reloaded; the running one stays: model.system_prompt: " + err->message;
      if (code) *code = err->code;
      log_error("%s", error.c_str());
      publish_error(std::string(omni::ipc::to_string(err->code)), error);
      notifier_.ready(std::string(to_string(state_)) + "; reload refused, running configuration kept");
      return false;
    }
  }
  const auto restart = restart_required_changes(config_, next);
  for (const auto& key : restart) log_warning("reload: %s changed; it takes effect at the next restart", key.c_str());
  try {
    apply_live_settings(next);
  } catch (const std::exception& e) {
    error = std::string("reload could not apply the new audio settings: ") + e.what();
    log_error("%s", error.c_str());
    publish_error("unavailable", error);
    notifier_.ready(std::string(to_string(state_)) + "; reload failed");
    return false;
  }
  details["restart_required"] = restart;
  log_info("configuration reloaded from %s", config_path_.c_str());
  notifier_.ready(std::string(to_string(state_)) + "; configuration reloaded");
  return true;
}

// Applies what can change while running; keys that need a restart keep their running values.
void Daemon::apply_live_settings(const Config& next) {
  Config applied = next;
  applied.model.path = config_.model.path;
  applied.model.device = config_.model.device;
  applied.model.dtype = config_.model.dtype;
  applied.model.weights = config_.model.weights;
  applied.model.context_tokens = config_.model.context_tokens;
  applied.ipc = config_.ipc;
  const Config previous = config_;
  const bool output_changed = previous.audio.output.backend != applied.audio.output.backend ||
                              previous.audio.output.device != applied.audio.output.device ||
                              previous.audio.output.path != applied.audio.output.path;
  config_ = applied;
  try {
    if (output_changed && ready_) {
      if (turn_) cancel_turn("reload");
      speech_.open(config_.audio.output);
    }
    if (ready_) rebuild_endpointer();
    if (ready_) capture_.apply(capture_settings());
    if (ready_ && camera_) camera_->apply(config_.camera.pipeline);  // throws before changing anything
    if (ready_ && camera_) camera_->set_clip_seconds(config_.camera.clip);
  } catch (...) {
    config_ = previous;
    if (ready_ && output_changed) speech_.open(config_.audio.output);
    if (ready_ && !capture_.running()) capture_.start(capture_settings(), listening_);
    else if (ready_) capture_.apply(capture_settings());
    throw;
  }
  speaker_ = applied.model.speaker;
  sampling_ = applied.model.sampling;
  speech_.set_volume(applied.audio.output.volume);
  install_speech_publisher();
  // The file's prompt wins over one `set` at run time; the engine hears of it only when it differs from the
  // prompt in effect (a new prompt starts a new conversation).
  if (worker_ && system_prompt_ != applied.model.system_prompt) change_system_prompt(applied.model.system_prompt);
  else system_prompt_ = applied.model.system_prompt;
  update_state();
}

}  // namespace omnid
