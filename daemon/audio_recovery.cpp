// The audio input survives its device: when the GStreamer pipeline fails (device unplugged, sound server
// gone) or ends (a source that stops delivering), the daemon publishes device.lost, says so in STATUS, and
// rebuilds the pipeline with exponential backoff (0.5 s doubling to 30 s; back to 0.5 s after a pipeline
// that ran 10 s). device.restored follows once a rebuilt pipeline delivers samples.
#include "daemon/daemon.h"
#include "daemon/log.h"

namespace omnid {

using omni::audio::monotonic_ms;

namespace {
constexpr int kFirstBackoffMs = 500;
constexpr int kMaxBackoffMs = 30000;
constexpr int64_t kHealthyRunMs = 10000;
}  // namespace

void Daemon::start_capture() {
  const uint64_t generation = ++capture_generation_;
  capture_heard_ = false;
  omni::audio::AudioCapture::Callbacks cb;
  cb.on_samples = [this](const float* p, size_t n) {
    capture_heard_ = true;
    if (!mic_open_) return;
    std::lock_guard lock(endpointer_mu_);
    if (endpointer_) endpointer_->push(p, n);
  };
  cb.on_error = [this, generation](const std::string& msg) {
    loop_.post([this, generation, msg] { on_capture_lost(generation, "audio input failed: " + msg); });
  };
  cb.on_end_of_stream = [this, generation] {
    loop_.post([this, generation] {
      if (config_.audio.input.restart_on_end) return on_capture_lost(generation, "audio input ended");
      log_info("audio input reached its end; audio.input.restart_on_end is off, the microphone stays closed");
      update_state();
    });
  };
  auto capture = std::make_unique<omni::audio::AudioCapture>(config_.audio.input.pipeline, std::move(cb));
  capture->start(listening_);
  capture_ = std::move(capture);
  capture_failed_ = false;
  capture_started_ms_ = monotonic_ms();
  log_info("audio input: %s", capture_->pipeline_description().c_str());
}

void Daemon::on_capture_lost(uint64_t generation, const std::string& reason) {
  if (generation != capture_generation_ || capture_failed_ || stopping_) return;  // stale or already handled
  const int64_t now = monotonic_ms();
  if (!capture_restoring_) {  // a new loss (not a failed rebuild)
    capture_lost_ms_ = now;
    capture_attempts_ = 0;
  }
  const bool ran_well = now - capture_started_ms_ >= kHealthyRunMs;
  capture_backoff_ms_ = (capture_backoff_ms_ == 0 || ran_well) ? kFirstBackoffMs
                                                                 : std::min(capture_backoff_ms_ * 2, kMaxBackoffMs);
  capture_failed_ = true;
  capture_lost_reason_ = reason;
  capture_retry_at_ms_ = now + capture_backoff_ms_;
  log_error("%s; rebuilding the pipeline in %d ms", reason.c_str(), capture_backoff_ms_);
  if (!capture_restoring_) {
    publish("device.lost", {{"device", "input"}, {"reason", reason}, {"retry_in_ms", capture_backoff_ms_}});
    publish_error("unavailable", reason);
  }
  notifier_.status("audio input lost (" + reason + "); retrying in " + std::to_string(capture_backoff_ms_) + " ms");
  update_state();
}

void Daemon::capture_recovery_tick() {
  if (stopping_ || !ready_) return;
  const int64_t now = monotonic_ms();
  if (capture_restoring_ && !capture_failed_ && capture_heard_) {
    capture_restoring_ = false;
    const int64_t down_ms = now - capture_lost_ms_;
    log_info("audio input restored after %lld ms (%d attempts)", static_cast<long long>(down_ms), capture_attempts_);
    publish("device.restored", {{"device", "input"}, {"down_ms", down_ms}, {"attempts", capture_attempts_}});
    notifier_.status(state_name() + "; audio input restored");
    update_state();
    return;
  }
  if (!capture_failed_ || now < capture_retry_at_ms_) return;
  ++capture_attempts_;
  capture_restoring_ = true;
  if (capture_) capture_->stop();
  capture_.reset();
  try {
    start_capture();
  } catch (const std::exception& e) {
    capture_failed_ = false;  // let on_capture_lost schedule the next attempt with a longer backoff
    on_capture_lost(capture_generation_, std::string("audio input cannot be rebuilt: ") + e.what());
  }
}

void Daemon::on_output_failed(uint64_t job, const std::string& error) {
  const uint64_t turn_id = turn_ && turn_->job == job ? turn_->id : job;
  log_error("speech output failed: %s; it is reopened before the next turn", error.c_str());
  publish_error("unavailable", "speech output failed: " + error, turn_id);
  if (!output_lost_) {
    output_lost_ = true;
    publish("device.lost", {{"device", "output"}, {"reason", error}});
    notifier_.status(state_name() + "; speech output lost (" + error + ")");
  }
  // The turn's speech cannot finish playing (no speech.end would come): end the turn now, so that it is
  // not left running forever and the next request is not answered `busy`.
  if (turn_ && turn_->job == job) cancel_turn("error");
}

void Daemon::reopen_output_if_lost() {
  if (!output_lost_) return;
  try {
    open_output();
  } catch (const std::exception& e) {
    log_error("speech output cannot be reopened: %s", e.what());
    return;  // still lost; the turn's audio will fail and say why
  }
  output_lost_ = false;
  log_info("speech output reopened");
  publish("device.restored", {{"device", "output"}});
  notifier_.status(state_name() + "; speech output reopened");
}

}  // namespace omnid
