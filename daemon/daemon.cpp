// Daemon start-up, device loss and recovery reports, the watchdog, signals and shutdown. Requests: commands.cpp;
// turns: turns.cpp.
#include "daemon/daemon.h"

#include <signal.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "audio/io/wav.h"
#include "daemon/log.h"

namespace omnid {

namespace {

// " (12.30 GB read at 4.1 GB/s)" for the load log line: what an operator compares against the disk's speed.
std::string load_rate(const omni::Model& m) {
  if (m.load_bytes() == 0 || m.load_ms() <= 0) return "";
  char buf[96];
  std::snprintf(buf, sizeof(buf), " (%.2f GB read at %.2f GB/s)", double(m.load_bytes()) * 1e-9,
                double(m.load_bytes()) * 1e-6 / m.load_ms());
  return buf;
}

}  // namespace

using omni::audio::monotonic_ms;

Daemon::Daemon(Config config, std::string config_path, ModelLoader loader)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      loader_(std::move(loader)),
      capture_(loop_, capture_listener()),
      speech_(config_.audio.output.volume,
              [this](uint64_t turn_id) { loop_.post([this, turn_id] { on_playback_drained(turn_id); }); }) {
  listening_ = config_.audio.input.listen;
  speaker_ = config_.model.speaker;
  system_prompt_ = config_.model.system_prompt;
  sampling_ = config_.model.sampling;
}

Daemon::~Daemon() {
  if (loader_thread_.joinable()) loader_thread_.detach();  // only when exiting mid-load
}

int Daemon::run() {
  started_ms_ = monotonic_ms();
  {
    std::random_device rd;
    char id[17];
    std::snprintf(id, sizeof id, "%08x%08x", rd(), rd());
    instance_ = id;
  }
  // Turn ids begin at the start's Unix time in ms: a restarted omnid never reuses an id its predecessor gave
  // (that would take more than one turn per millisecond of its life), and ids stay below 2^53 (exact in JSON).
  next_turn_id_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  omni::ipc::ServerConfig sc;
  sc.instance = instance_;
  sc.control_endpoint = config_.ipc.control;
  sc.events_endpoint = config_.ipc.events;
  sc.max_message_bytes = static_cast<size_t>(config_.ipc.max_message_bytes);
  // Access control: only the listed users/groups, by default the daemon's own uid and group.
  for (unsigned u : config_.ipc.allow_uids) sc.allowed_uids.push_back(static_cast<uid_t>(u));
  for (unsigned g : config_.ipc.allow_gids) sc.allowed_gids.push_back(static_cast<gid_t>(g));
  if (sc.allowed_uids.empty() && sc.allowed_gids.empty()) {
    sc.allowed_uids.push_back(::getuid());
    sc.allowed_gids.push_back(::getgid());
  }
  if (!config_.ipc.curve_secret_key.empty())
    sc.curve = omni::ipc::CurveServerKeys{config_.ipc.curve_secret_key, config_.ipc.curve_client_keys};
  sc.on_denied = [](const std::string& reason, const std::string& peer) {
    log_warning("ipc: refused a connection from %s: %s", peer.c_str(), reason.c_str());
  };
  try {
    server_ = std::make_unique<omni::ipc::ControlServer>(sc);
  } catch (const std::exception& e) {
    log_error("cannot open the control sockets: %s", e.what());
    notifier_.status(std::string("failed: ") + e.what());
    return 1;
  }
  log_info("control %s, events %s", config_.ipc.control.c_str(), config_.ipc.events.c_str());

  loop_.on_signal([this](int signo) { on_signal(signo); });
  loop_.watch_fd(server_->fd(), [this] { drain_requests(); });
  loop_.after_each([this] { drain_requests(); });
  loop_.every(std::chrono::milliseconds(config_.ipc.heartbeat_ms), [this] { publish("heartbeat", {{"state", to_string(state_)}, {"instance", instance_}}); });
  const uint64_t wd = notifier_.watchdog_usec();
  // Ping at a third of WatchdogSec; with no watchdog, still check health (it feeds the logs).
  loop_.every(std::chrono::milliseconds(wd ? std::max<uint64_t>(wd / 3000, 50) : 1000), [this] { watchdog_tick(); });
  loop_.every(std::chrono::milliseconds(100), [this] {
    if (ready_ && !stopping_) capture_.tick();
    if (ready_ && !stopping_ && camera_) camera_->tick();
  });
  loop_.every(std::chrono::milliseconds(50), [this] { tools_tick(); });
  loop_.every(std::chrono::seconds(5), [this] {
    if (ready_ || stopping_) return;
    // Keep extending the start timeout while the loader shows signs of life (progress in the last minute).
    if (monotonic_ms() - load_progress_ms_.load() < 60000) {
      char status[160];
      std::snprintf(status, sizeof status, "loading model %s: %.0f%%", config_.model.path.c_str(),
                    100.0 * load_fraction_.load());
      notifier_.extend_timeout(30'000'000, status);
    }
  });
  start_loading();
  loop_.run();
  return exit_code_;
}

void Daemon::start_loading() {
  omni::LoadOptions opt;
  opt.model_dir = config_.model.path;
  opt.device = config_.model.device;
  opt.dtype = config_.model.dtype;
  opt.weights = config_.model.weights;
  opt.context_tokens = config_.model.context_tokens;
  opt.load_talker = true;
  // Published from the start (fraction 0), so that `events since 0` always begins with the load.
  publish("daemon.loading", {{"fraction", 0.0}, {"what", "loading " + config_.model.path}, {"instance", instance_}});
  opt.on_progress = [this, published = 0.0](double fraction, const std::string& what) mutable {
    load_fraction_ = fraction;
    load_progress_ms_ = monotonic_ms();
    // Loader thread; publish() is thread-safe. One event per percent at most.
    if (fraction - published >= 0.01 || fraction >= 1.0) {
      published = fraction;
      publish("daemon.loading", {{"fraction", fraction}, {"what", what}, {"instance", instance_}});
    }
  };
  load_progress_ms_ = monotonic_ms();
  notifier_.extend_timeout(30'000'000, "loading model " + config_.model.path);
  log_info("loading model %s on %s", config_.model.path.c_str(), config_.model.device.c_str());
  loader_thread_ = std::thread([this, opt] {
    try {
      auto model = loader_(opt);
      // The vision tower loads now, beside nothing: later it would load inside the first ask with images, on the
      // thread that checks them, while a turn may run. A tower that cannot load makes images refused, not the
      // daemon fail: voice and text work without it.
      std::string vision_refusal;
      if (!model->has_vision()) {
        vision_refusal = "the model " + opt.model_dir + " has no vision tower: it cannot take images";
      } else {
        try {
          if (opt.on_progress) opt.on_progress(1.0, "loading the vision tower");  // progress for the watchdog too
          model->load_vision();
        } catch (const std::exception& e) {
          vision_refusal = std::string("the model's vision tower could not be loaded, so images are refused: ") +
                           e.what();
        }
      }
      // The loop owns the model from here; shared_ptr only to carry it through std::function.
      auto holder = std::make_shared<std::unique_ptr<omni::Model>>(std::move(model));
      loop_.post([this, holder, vision_refusal] {
        vision_refusal_ = vision_refusal;
        on_model_loaded(std::move(*holder));
      });
    } catch (const std::exception& e) {
      std::string msg = e.what();
      loop_.post([this, msg] {
        if (loader_thread_.joinable()) loader_thread_.join();  // it ends right after this post
        fail("cannot load the model: " + msg);
      });
    }
  });
}

void Daemon::fail(const std::string& message) {
  log_error("%s", message.c_str());
  notifier_.status("failed: " + message);
  shutdown(1);
}

void Daemon::on_model_loaded(std::unique_ptr<omni::Model> model) {
  if (loader_thread_.joinable()) loader_thread_.join();
  if (stopping_) return;
  model_ = std::move(model);
  log_info("model loaded in %.0f ms%s on %s (talker: %s)", model_->load_ms(), load_rate(*model_).c_str(),
           model_->device_name().c_str(),
           model_->has_talker() ? "yes" : "no");
  if (vision_refusal_.empty()) log_info("vision tower loaded: asks may carry images");
  else if (model_->has_vision()) log_warning("%s", vision_refusal_.c_str());
  if (model_->has_talker()) {
    const auto names = model_->speakers();
    bool known = false;
    std::string list;
    for (const auto& n : names) {
      known = known || strcasecmp(n.c_str(), speaker_.c_str()) == 0;
      list += (list.empty() ? "" : ", ") + n;
    }
    if (!known) return fail("model.speaker '" + speaker_ + "' is not a voice of this model (it has: " + list + ")");
  }
  try {
    auto session = model_->new_session({.system_prompt = system_prompt_, .tools = tools_.engine_json()});
    EngineListener l;
    l.on_text = [this](uint64_t id, std::string_view t) {
      loop_.post([this, id, t = std::string(t)] { on_engine_text(id, t); });
    };
    l.on_audio = [this](uint64_t id, const float* p, size_t n) { engine_audio(id, p, n); };
    l.on_done = [this](uint64_t id, omni::TurnResult&& r) {
      auto holder = std::make_shared<omni::TurnResult>(std::move(r));
      loop_.post([this, id, holder] { on_engine_done(id, std::move(*holder)); });
    };
    l.on_context_full = [this](uint64_t id, const std::string& e) {
      loop_.post([this, id, e] { on_engine_context_full(id, e); });
    };
    l.on_failed = [this](uint64_t id, const std::string& e, bool device_lost) {
      loop_.post([this, id, e, device_lost] { on_engine_failed(id, e, device_lost); });
    };
    worker_ = std::make_unique<EngineWorker>(std::move(session), std::move(l));
    speech_.open(config_.audio.output);
    install_speech_publisher();
    rebuild_endpointer();
    capture_.start(capture_settings(), listening_);
    camera_ = std::make_unique<Camera>(loop_, camera_listener());
    camera_->set_clip_seconds(config_.camera.clip);
    camera_->start(config_.camera.pipeline);  // throws only for a description GStreamer cannot parse
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  ready_ = true;
  update_state();
  const std::string status = std::string(to_string(state_)) + "; model " + config_.model.path + " on " + model_->device_name() +
                             "; speech to " + config_.audio.output.backend;
  notifier_.ready(status);
  publish("daemon.ready", {{"instance", instance_},
                           {"load_ms", model_->load_ms()},
                           {"device", model_->device_name()},
                           {"state", std::string(to_string(state_))}});
  log_info("ready: %s", status.c_str());
}

CaptureSupervisor::Listener Daemon::capture_listener() {
  CaptureSupervisor::Listener l;
  l.on_samples = [this](const float* p, size_t n, const std::vector<bool>* echo_frames,
                        const std::vector<bool>* audible_frames) {
    if (!mic_open_) return;
    std::lock_guard lock(endpointer_mu_);
    if (!endpointer_) return;
    if (!echo_frames || !audible_frames) return endpointer_->push(p, n);
    // Echo-cancelled: whole 10 ms frames, each flagged when it may hold only omnid's voice (the VAD classifier,
    // rebuild_endpointer, reads the flag of the frame it is given) and when omnid's voice may ring in it.
    const size_t frame = omni::audio::kVadFrameSamples;
    for (size_t i = 0; i * frame < n; ++i) {
      mic_frame_is_echo_ = i < echo_frames->size() && (*echo_frames)[i];
      endpointer_->set_echo_audible(i < audible_frames->size() && (*audible_frames)[i]);
      endpointer_->push(p + i * frame, std::min(frame, n - i * frame));
    }
    mic_frame_is_echo_ = false;
    endpointer_->set_echo_audible(false);
  };
  l.on_echo_canceller = [this](std::shared_ptr<omni::audio::EchoCanceller> canceller) {
    speech_.set_echo_reference(std::move(canceller));
  };
  l.on_lost = [this](const std::string& reason, int retry_in_ms, bool first) {
    on_capture_lost(reason, retry_in_ms, first);
  };
  l.on_restored = [this](int64_t down_ms, int attempts) { on_capture_restored(down_ms, attempts); };
  l.on_closed = [this] { update_state(); };
  return l;
}

CaptureSupervisor::Settings Daemon::capture_settings() const {
  return {config_.audio.input.source == "ipc", config_.audio.input.pipeline, config_.audio.input.restart_on_end,
          config_.audio.echo_cancel};
}

void Daemon::on_capture_lost(const std::string& reason, int retry_in_ms, bool first) {
  if (stopping_) return;
  if (first) {
    publish("device.lost", {{"device", "input"}, {"reason", reason}, {"retry_in_ms", retry_in_ms}});
    publish_error("unavailable", reason);
  }
  notifier_.status("audio input lost (" + reason + "); retrying in " + std::to_string(retry_in_ms) + " ms");
  update_state();
}

void Daemon::on_capture_restored(int64_t down_ms, int attempts) {
  publish("device.restored", {{"device", "input"}, {"down_ms", down_ms}, {"attempts", attempts}});
  notifier_.status(std::string(to_string(current_state())) + "; audio input restored");
  update_state();
}

Camera::Listener Daemon::camera_listener() {
  Camera::Listener l;
  l.on_lost = [this](const std::string& reason, int retry_in_ms, bool first) {
    if (stopping_ || !first) return;
    publish("device.lost", {{"device", "camera"}, {"reason", reason}, {"retry_in_ms", retry_in_ms}});
  };
  l.on_restored = [this](int64_t down_ms, int attempts) {
    publish("device.restored", {{"device", "camera"}, {"down_ms", down_ms}, {"attempts", attempts}});
  };
  return l;
}

bool Daemon::attach_camera_frame(omni::UserTurn& input) const {
  const auto frame = camera_ ? camera_->latest() : nullptr;
  if (!frame) return false;
  input.images.push_back(frame->image(config_.camera.max_pixels));
  return true;
}

void Daemon::attach_camera_by_config(const std::string& source, omni::UserTurn& input) const {
  const std::string& attach = config_.camera.attach;
  if (!camera_ || !camera_->configured() || attach == "never" || (attach == "voice" && source != "voice")) return;
  if (!model_ || !model_->has_vision() || !vision_refusal_.empty()) return;  // the frame could not be used
  // camera.clip: a spoken turn gets the last seconds of frames as a video whose soundtrack is the utterance
  // (transformers' use_audio_in_video), when at least a pair of frames is kept; else the still frame.
  if (config_.camera.clip > 0 && source == "voice" && !input.audio_16k.empty()) {
    const auto frames = camera_->recent(config_.camera.clip);
    if (frames.size() >= 2) {
      omni::VideoInput video;
      video.fps = Camera::kClipFps;
      for (const auto& f : frames) video.frames.push_back(f->image());
      video.audio_16k = std::move(input.audio_16k);
      input.audio_16k.clear();
      input.videos.push_back(std::move(video));
      return;
    }
  }
  if (!attach_camera_frame(input)) log_info("camera.attach is %s but the camera has no frame: this %s turn goes without", attach.c_str(), source.c_str());
}

void Daemon::on_output_failed(uint64_t job, const std::string& error) {
  const uint64_t turn_id = turn_ && turn_->job == job ? turn_->id : job;
  log_error("speech output failed: %s; it is reopened before the next turn", error.c_str());
  publish_error("unavailable", "speech output failed: " + error, turn_id);
  if (speech_.mark_lost()) {
    publish("device.lost", {{"device", "output"}, {"reason", error}});
    notifier_.status(std::string(to_string(current_state())) + "; speech output lost (" + error + ")");
  }
  // The turn's speech cannot finish playing (no speech.end would come): end the turn now, so that it is
  // not left running forever and the next request is not answered `busy`.
  if (turn_ && turn_->job == job) cancel_turn("error");
}

void Daemon::install_speech_publisher() {
  const OutputConfig& out = config_.audio.output;
  if (!out.publish) return speech_.set_publisher(nullptr);
  const std::string format = out.publish_format;
  const auto encoding = format == "f32le" ? omni::audio::WavSampleFormat::Float32 : omni::audio::WavSampleFormat::Int16;
  // Runs on the engine worker (or the loop, for a committed speculation) under the output's lock; server_
  // outlives every write (shutdown aborts the output before it resets the server).
  speech_.set_publisher([this, format, encoding](uint64_t turn_id, int rate, uint64_t offset, const float* samples,
                                                 size_t count) {
    if (!server_) return;
    server_->events().publish_binary(
        omni::ipc::event::kSpeechAudio,
        {{"turn_id", turn_id}, {"sample_rate", rate}, {"format", format}, {"offset", offset}, {"samples", count}},
        omni::audio::encode_pcm(samples, count, encoding));
  });
}

void Daemon::reopen_output_if_lost() {
  if (!speech_.lost()) return;
  std::string error;
  if (!speech_.reopen_if_lost(error)) {
    log_error("speech output cannot be reopened: %s", error.c_str());
    return;  // still lost; the turn's audio will fail and say why
  }
  log_info("speech output reopened");
  publish("device.restored", {{"device", "output"}});
  notifier_.status(std::string(to_string(current_state())) + "; speech output reopened");
}

void Daemon::watchdog_tick() {
  if (stopping_) return;
  const int64_t now = monotonic_ms();
  const uint64_t wd_ms = notifier_.watchdog_usec() / 1000;
  // The engine must show progress (a token, an audio chunk, an idle tick) within one WatchdogSec.
  const int64_t stall_ms = wd_ms ? static_cast<int64_t>(wd_ms) : 30000;
  std::string problem;
  if (!ready_) {
    if (now - load_progress_ms_.load() > 10 * 60 * 1000) problem = "model loading made no progress for 10 minutes";
  } else {
    if (worker_ && now - worker_->last_progress_ms() > stall_ms)
      problem = "engine made no progress for " + std::to_string((now - worker_->last_progress_ms()) / 1000) + " s";
    if (auto p = capture_.health_problem(now); !p.empty()) problem = p;
  }
  if (problem.empty()) {
    if (wd_ms) notifier_.watchdog_ping();
    return;
  }
  static int64_t last_logged = 0;
  if (now - last_logged > 5000) {
    log_error("watchdog: %s; not pinging systemd", problem.c_str());
    notifier_.status("unhealthy: " + problem);
    last_logged = now;
  }
}

void Daemon::on_signal(int signo) {
  if (signo == SIGHUP) {
    std::string error;
    nlohmann::json details;
    if (!reload(error, details)) log_error("reload (SIGHUP) failed: %s", error.c_str());
    return;
  }
  log_info("%s: stopping", signo == SIGTERM ? "SIGTERM" : "SIGINT");
  shutdown(0);
}

void Daemon::shutdown(int exit_code) {
  if (stopping_) return;
  stopping_ = true;
  exit_code_ = exit_code;
  notifier_.stopping(exit_code ? "stopping after a failure" : "stopping");
  publish("daemon.stopping", {{"instance", instance_}, {"exit_code", exit_code}});
  while (!queued_asks_.empty()) cancel_queued(queued_asks_.front().turn_id, "shutdown");
  if (turn_) cancel_turn("shutdown");
  speech_.abort();
  capture_.stop();
  if (image_checker_) image_checker_->stop();  // an image check under way ends first; those waiting are dropped
  if (worker_ && !worker_->shutdown(std::chrono::milliseconds(3000))) {
    // The engine did not return from a step within 3 s: leave without it rather than hang past
    // systemd's stop timeout.
    log_error("engine did not stop within 3 s; exiting without waiting for it");
    server_.reset();
    std::fflush(nullptr);
    std::_Exit(exit_code ? exit_code : 1);
  }
  if (loader_thread_.joinable()) {
    log_info("stopping while the model loads; not waiting for the loader");
    server_.reset();
    std::fflush(nullptr);
    std::_Exit(exit_code);
  }
  worker_.reset();
  speech_.close();
  loop_.stop();
}

}  // namespace omnid
