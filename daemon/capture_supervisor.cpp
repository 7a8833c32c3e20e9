#include "daemon/capture_supervisor.h"

#include <algorithm>

#include "daemon/log.h"

namespace omnid {

using omni::audio::monotonic_ms;

void CaptureSupervisor::start(const Settings& settings, bool playing) {
  set_echo_canceller(settings.echo_cancel);
  settings_ = settings;
  playing_ = playing;
  build();
}

void CaptureSupervisor::set_echo_canceller(const omni::audio::EchoCancelParams& params) {
  std::shared_ptr<omni::audio::EchoCanceller> next;
  if (params.enabled) {
    next = std::make_shared<omni::audio::EchoCanceller>(params);
    const std::string library = omni::audio::echo_library(params.engine);
    log_info("echo cancellation: %s (%s), suppression %s%s, starting delay %d ms", params.engine.c_str(),
             library.c_str(), params.suppression.c_str(), params.noise_suppression ? ", noise suppression" : "",
             params.delay_ms);
    if (!omni::audio::echo_goals_met(params.engine))
      log_warning("echo cancellation with %s does not meet its goals on the test rooms: the user's voice over an "
                  "answer may be suppressed and omnid's own echo may be taken for speech (with audio.barge_in, "
                  "omnid may interrupt itself); see docs/performance.md, \"Echo cancellation\"",
                  library.c_str());
  }
  {
    std::lock_guard lock(echo_mu_);
    echo_ = next;
    echo_frames_.clear();
    audible_frames_.clear();
    echo_state_ = {};
  }
  if (listener_.on_echo_canceller) listener_.on_echo_canceller(next);
}

std::shared_ptr<omni::audio::EchoCanceller> CaptureSupervisor::echo_canceller() const {
  std::lock_guard lock(echo_mu_);
  return echo_;
}

void CaptureSupervisor::deliver(const float* samples, size_t count, double capture_time_ms) {
  if (!listener_.on_samples) return;
  std::unique_lock lock(echo_mu_);
  if (!echo_) {
    lock.unlock();
    return listener_.on_samples(samples, count, nullptr, nullptr);
  }
  // Every sample goes through the canceller, listening or not, so that it keeps converging.
  echo_frames_.clear();
  audible_frames_.clear();
  const std::vector<float> cleaned = echo_->process(samples, count, capture_time_ms, &echo_frames_, &audible_frames_);
  if (!cleaned.empty()) listener_.on_samples(cleaned.data(), cleaned.size(), &echo_frames_, &audible_frames_);
  // The canceller's state changes go to the journal: an operator sees when omnid became full duplex, and why it
  // went back to half duplex for a while (a new alignment, an engine reset).
  const EchoState now{echo_->converged(), echo_->lead_changes(), echo_->engine_resets()};
  if (now.converged != echo_state_.converged || now.lead_changes != echo_state_.lead_changes ||
      now.engine_resets != echo_state_.engine_resets) {
    log_info("echo cancellation: %s; echo delay %d ms, reference lead %.0f ms, %d realignments, %d engine resets",
             now.converged ? "converged (full duplex)" : "converging (half duplex while omnid talks)",
             echo_->estimated_delay_ms(), echo_->lead_ms(), now.lead_changes, now.engine_resets);
    echo_state_ = now;
  }
}

void CaptureSupervisor::build() {
  const uint64_t generation = ++generation_;
  heard_ = false;
  if (settings_.ipc) {
    ipc_started_ = true;
    push_resampler_.reset();
    push_rate_ = 0;
    failed_ = false;
    started_ms_ = monotonic_ms();
    log_info("audio input: push_audio requests (audio.input.source: ipc)");
    return;
  }
  omni::audio::AudioCapture::Callbacks cb;
  cb.on_samples = [this](const float* p, size_t n, double capture_time_ms) {
    heard_ = true;
    deliver(p, n, capture_time_ms);
  };
  cb.on_error = [this, generation](const std::string& msg) {
    loop_.post([this, generation, msg] { on_lost(generation, "audio input failed: " + msg); });
  };
  cb.on_end_of_stream = [this, generation] {
    loop_.post([this, generation] {
      if (generation != generation_) return;
      if (settings_.restart_on_end) return on_lost(generation, "audio input ended");
      log_info("audio input reached its end; audio.input.restart_on_end is off, the microphone stays closed");
      if (listener_.on_closed) listener_.on_closed();
    });
  };
  auto capture = std::make_unique<omni::audio::AudioCapture>(settings_.pipeline, std::move(cb));
  capture->start(playing_);
  capture_ = std::move(capture);
  failed_ = false;
  started_ms_ = monotonic_ms();
  log_info("audio input: %s", capture_->pipeline_description().c_str());
}

size_t CaptureSupervisor::push(const float* samples, size_t count, int sample_rate) {
  if (!ipc_started_ || !playing_ || count == 0) return 0;
  if (sample_rate != push_rate_) {
    push_rate_ = sample_rate;
    push_resampler_.reset();
    if (sample_rate != 16000) push_resampler_ = std::make_unique<omni::audio::StreamResampler>(sample_rate, 16000);
  }
  std::vector<float> resampled;
  const float* p = samples;
  size_t n = count;
  if (push_resampler_) {
    resampled = push_resampler_->process(samples, count);
    p = resampled.data();
    n = resampled.size();
  }
  if (n == 0) return 0;
  const double now = omni::audio::monotonic_ms_precise();
  deliver(p, n, now - static_cast<double>(n) * 1000.0 / 16000.0);
  return n;
}

void CaptureSupervisor::apply(const Settings& settings) {
  const bool rebuild = settings.pipeline != settings_.pipeline || settings.ipc != settings_.ipc;
  if (settings.echo_cancel != settings_.echo_cancel) set_echo_canceller(settings.echo_cancel);
  settings_ = settings;
  if (!rebuild || !running()) return;
  stop();
  build();
}

void CaptureSupervisor::set_playing(bool playing) {
  playing_ = playing;
  if (capture_) capture_->set_playing(playing);
}

void CaptureSupervisor::stop() {
  ++generation_;  // whatever the old pipeline posted is stale now
  if (capture_) capture_->stop();
  capture_.reset();
  ipc_started_ = false;
  failed_ = false;
  backoff_.clear();
}

void CaptureSupervisor::on_lost(uint64_t generation, const std::string& reason) {
  if (generation != generation_ || failed_) return;  // stale or already handled
  const bool first = backoff_.lost(monotonic_ms(), started_ms_);
  failed_ = true;
  log_error("%s; rebuilding the pipeline in %d ms", reason.c_str(), backoff_.backoff_ms());
  if (listener_.on_lost) listener_.on_lost(reason, backoff_.backoff_ms(), first);
}

void CaptureSupervisor::tick() {
  const int64_t now = monotonic_ms();
  if (backoff_.restoring() && !failed_ && heard_) {
    const int64_t down_ms = backoff_.restored(now);
    log_info("audio input restored after %lld ms (%d attempts)", static_cast<long long>(down_ms),
             backoff_.attempts());
    if (listener_.on_restored) listener_.on_restored(down_ms, backoff_.attempts());
    return;
  }
  if (!failed_ || !backoff_.due(now)) return;
  backoff_.attempt();
  if (capture_) capture_->stop();
  capture_.reset();
  try {
    build();
  } catch (const std::exception& e) {
    failed_ = false;  // let on_lost schedule the next attempt with a longer backoff
    on_lost(generation_, std::string("audio input cannot be rebuilt: ") + e.what());
  }
}

std::string CaptureSupervisor::health_problem(int64_t now_ms) const {
  if (!capture_ || failed_) return "";
  if (!capture_->thread_running() || now_ms - capture_->last_alive_ms() > 2000)
    return "audio capture thread is not running";
  return "";
}

}  // namespace omnid
