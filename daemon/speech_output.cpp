#include "daemon/speech_output.h"

#include <cmath>
#include <cstdlib>

namespace omnid {

void SpeechOutput::open(const OutputConfig& config) {
  omni::audio::OutputParams p{config.backend, config.device, config.path, volume_};
  auto out = omni::audio::make_audio_output(p, [this](const std::string& label) {
    if (on_drained_) on_drained_(std::strtoull(label.c_str(), nullptr, 10));
  });
  out->set_tap([this](const float* samples, size_t count, int rate, double play_time_ms) {
    on_played(samples, count, rate, play_time_ms);
  });
  std::lock_guard lock(mu_);
  output_ = std::move(out);
  config_ = config;
}

void SpeechOutput::close() {
  std::lock_guard lock(mu_);
  turn_ = 0;
  output_.reset();
}

bool SpeechOutput::reopen_if_lost(std::string& error) {
  if (!lost_) return true;
  try {
    open(config_);
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
  lost_ = false;
  return true;
}

bool SpeechOutput::mark_lost() {
  const bool first = !lost_;
  lost_ = true;
  return first;
}

void SpeechOutput::set_echo_reference(std::shared_ptr<omni::audio::EchoCanceller> canceller) {
  std::lock_guard lock(echo_mu_);
  echo_ = std::move(canceller);
  echo_rate_ = 0;  // the next played chunk starts a new stream
}

void SpeechOutput::on_played(const float* samples, size_t count, int rate, double play_time_ms) {
  using omni::audio::EchoCanceller;
  std::lock_guard lock(echo_mu_);
  if (!echo_ || count == 0 || rate <= 0) return;
  // A chunk that does not continue the stream (another rate, a gap or jump beyond the canceller's resync
  // tolerance: a new answer, a restarted device) starts a new one, with a fresh resampler.
  const double expected = echo_start_ms_ + static_cast<double>(echo_in_) * 1000.0 / echo_rate_;
  if (rate != echo_rate_ || !echo_clock_.continues(play_time_ms - expected)) {
    echo_clock_ = omni::audio::StreamClock{};
    echo_rate_ = rate;
    echo_start_ms_ = play_time_ms;
    echo_in_ = echo_out_ = 0;
    echo_resampler_.reset();
    if (rate != EchoCanceller::kSampleRate)
      echo_resampler_ = std::make_unique<omni::audio::StreamResampler>(rate, EchoCanceller::kSampleRate);
  }
  echo_in_ += count;
  // The resampler's output is aligned with its input: output sample k plays at start + k / 16 kHz.
  const double at = echo_start_ms_ + static_cast<double>(echo_out_) * 1000.0 / EchoCanceller::kSampleRate;
  if (!echo_resampler_) {
    echo_->push_reference(samples, count, at);
    echo_out_ += count;
    return;
  }
  const std::vector<float> resampled = echo_resampler_->process(samples, count);
  echo_->push_reference(resampled.data(), resampled.size(), at);
  echo_out_ += resampled.size();
}

void SpeechOutput::set_publisher(PublishFn publish) {
  std::lock_guard lock(mu_);
  publish_ = std::move(publish);
}

void SpeechOutput::set_volume(double volume) {
  volume_ = volume;
  std::lock_guard lock(mu_);
  if (output_) output_->set_volume(volume_);
}

void SpeechOutput::allow(uint64_t job, uint64_t turn_id) {
  std::lock_guard lock(mu_);
  turn_ = job;
  label_ = turn_id;
}

void SpeechOutput::hold(uint64_t job) {
  std::lock_guard lock(mu_);
  held_job_ = job;
  held_.clear();
}

void SpeechOutput::drop_held(uint64_t job) {
  std::lock_guard lock(mu_);
  if (held_job_ == job) held_job_ = 0;
  held_.clear();
}

void SpeechOutput::release() {
  std::lock_guard lock(mu_);
  turn_ = 0;
}

void SpeechOutput::abort() {
  std::lock_guard lock(mu_);
  turn_ = 0;
  if (output_) output_->abort();
}

SpeechOutput::WriteResult SpeechOutput::write(uint64_t job, int sample_rate, const float* samples, size_t count) {
  std::lock_guard lock(mu_);
  if (held_job_ != 0 && held_job_ == job) {
    held_.insert(held_.end(), samples, samples + count);
    WriteResult r;
    r.held = true;
    return r;
  }
  return write_locked(job, sample_rate, samples, count);
}

SpeechOutput::WriteResult SpeechOutput::commit_held(uint64_t job, uint64_t turn_id, int sample_rate,
                                                    size_t& held_samples) {
  std::lock_guard lock(mu_);
  turn_ = job;
  label_ = turn_id;
  std::vector<float> audio = std::move(held_);
  held_.clear();
  held_job_ = 0;
  held_samples = audio.size();
  if (audio.empty()) return {};
  return write_locked(job, sample_rate, audio.data(), audio.size());
}

SpeechOutput::WriteResult SpeechOutput::write_locked(uint64_t job, int sample_rate, const float* samples,
                                                     size_t count) {
  WriteResult r;
  if (turn_ != job || !output_) {  // cancelled: drop the rest of its audio
    r.dropped = true;
    return r;
  }
  try {
    if (begun_turn_ != job) {
      begun_turn_ = job;
      begun_samples_ = 0;
      r.first = true;
      output_->begin(sample_rate, std::to_string(label_));
    }
    const double at = output_->write(samples, count);
    if (r.first) r.play_ms = at;
    if (publish_ && count > 0) publish_(label_, sample_rate, begun_samples_, samples, count);
    begun_samples_ += count;
  } catch (const std::exception& e) {
    r.error = e.what();
    turn_ = 0;
  }
  return r;
}

std::string SpeechOutput::finish(uint64_t job) {
  std::lock_guard lock(mu_);
  // end() reports on_drained once the device has played everything queued.
  if (!output_ || begun_turn_ != job || turn_ != job) return "";
  try {
    output_->end();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string SpeechOutput::destination() {
  std::lock_guard lock(mu_);
  return output_ ? output_->destination() : "";
}

}  // namespace omnid
