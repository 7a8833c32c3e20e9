// The file and null speech outputs, and the backend factory. PortAudio: playback_portaudio.cpp.
#include "audio/device/playback.h"

#include "audio/device/capture.h"
#include "audio/io/wav.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <stdexcept>

namespace omni::audio {

std::unique_ptr<AudioOutput> make_portaudio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained);

namespace {

// The play times of an output without a device clock (file, null), as those of a device that runs on from its
// first utterance: in whole kPeriodMs periods from that moment, so that its sample grid never moves and the echo
// canceller's alignment holds from one answer to the next, as it does with a device that keeps its stream running.
// An utterance starts at the first period boundary after its first chunk is written; a chunk written after the
// previous one finished playing (an underrun) plays at the first boundary after that, periods of silence between.
class VirtualPlayClock {
 public:
  static constexpr double kPeriodMs = 10.0;
  struct Slot {
    double at_ms;    // the chunk's first sample plays then (monotonic ms)
    size_t silence;  // samples of silence played just before it (an underrun within the utterance)
  };
  void begin(int sample_rate) { rate_ = sample_rate, next_ms_ = -1; }
  Slot play(size_t count) {
    const double now = monotonic_ms_precise();
    if (origin_ms_ < 0) origin_ms_ = now;
    Slot slot{next_ms_, 0};
    if (next_ms_ < 0 || now > next_ms_) {
      const double from = next_ms_ < 0 ? origin_ms_ : next_ms_;
      slot.at_ms = from + std::ceil((now - from) / kPeriodMs) * kPeriodMs;
      if (next_ms_ >= 0) slot.silence = static_cast<size_t>(std::llround((slot.at_ms - next_ms_) * rate_ / 1000.0));
    }
    next_ms_ = slot.at_ms + static_cast<double>(count) * 1000.0 / rate_;
    return slot;
  }
  int rate() const { return rate_; }

 private:
  int rate_ = 16000;
  double origin_ms_ = -1;
  double next_ms_ = -1;
};

// An output that plays on a VirtualPlayClock: the tap hears each chunk at its slot, and an underrun's silence
// before it, so that the far end stays one continuous stream.
class VirtualClockOutput : public AudioOutput {
 protected:
  // Plays `count` samples (after volume) now; returns when the first is heard.
  double play(const float* samples, size_t count) {
    const VirtualPlayClock::Slot slot = clock_.play(count);
    constexpr size_t kMaxTappedSilence = 16000;  // longer gaps: the far end starts a new stream anyway
    if (slot.silence > 0 && slot.silence <= kMaxTappedSilence) {
      silence_.assign(slot.silence, 0.0f);
      tap(silence_.data(), silence_.size(), clock_.rate(),
          slot.at_ms - static_cast<double>(slot.silence) * 1000.0 / clock_.rate());
    }
    tap(samples, count, clock_.rate(), slot.at_ms);
    return slot.at_ms;
  }
  VirtualPlayClock clock_;

 private:
  std::vector<float> silence_;
};

// Writes one 16-bit WAV file per utterance (audio/io's WavWriter); the header's sizes are final
// when the utterance ends (end() or abort()).
class WavFileOutput final : public VirtualClockOutput {
 public:
  WavFileOutput(const OutputParams& p, DrainedFn on_drained)
      : params_(p), on_drained_(std::move(on_drained)), volume_(p.volume) {}

  void begin(int sample_rate, const std::string& label) override {
    std::lock_guard lock(mu_);
    close_quietly();
    path_ = params_.path;
    if (auto pos = path_.find("{turn}"); pos != std::string::npos) path_.replace(pos, 6, label);
    try {
      writer_.open(path_, sample_rate, WavSampleFormat::Int16);
    } catch (const AudioError& e) {
      throw std::runtime_error("audio.output.path: " + std::string(e.what()));
    }
    label_ = label;
    clock_.begin(sample_rate);
  }

  double write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!writer_.is_open()) return -1;
    scaled_.resize(count);
    for (size_t i = 0; i < count; ++i) scaled_[i] = samples[i] * static_cast<float>(volume_);
    writer_.append(scaled_.data(), count);
    return play(scaled_.data(), count);
  }

  void end() override {
    std::string label;
    {
      std::lock_guard lock(mu_);
      if (!writer_.is_open()) return;
      writer_.close();  // throws on a full disk: the daemon reports it as an error event
      label = label_;
    }
    if (on_drained_) on_drained_(label);
  }

  void abort() override {
    std::lock_guard lock(mu_);
    close_quietly();
  }

  void set_volume(double volume) override {
    std::lock_guard lock(mu_);
    volume_ = volume;
  }

  std::string destination() const override {
    std::lock_guard lock(mu_);
    return path_;
  }

 private:
  void close_quietly() {
    try {
      writer_.close();
    } catch (const AudioError&) {
      // An aborted answer's file is incomplete anyway.
    }
  }

  OutputParams params_;
  DrainedFn on_drained_;
  mutable std::mutex mu_;
  WavWriter writer_;
  std::vector<float> scaled_;
  std::string path_, label_;
  double volume_;
};

class NullOutput final : public VirtualClockOutput {
 public:
  NullOutput(DrainedFn on_drained, double volume) : on_drained_(std::move(on_drained)), volume_(volume) {}
  void begin(int sample_rate, const std::string& label) override {
    std::lock_guard lock(mu_);
    label_ = label;
    open_ = true;
    clock_.begin(sample_rate);
  }
  // Nothing is kept; the tap still hears what a loudspeaker would have played.
  double write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!open_) return -1;
    scaled_.resize(count);
    for (size_t i = 0; i < count; ++i) scaled_[i] = samples[i] * static_cast<float>(volume_);
    return play(scaled_.data(), count);
  }
  void end() override {
    std::string label;
    {
      std::lock_guard lock(mu_);
      if (!open_) return;
      open_ = false;
      label = label_;
    }
    if (on_drained_) on_drained_(label);
  }
  void abort() override {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void set_volume(double volume) override {
    std::lock_guard lock(mu_);
    volume_ = volume;
  }
  std::string destination() const override { return "null"; }

 private:
  DrainedFn on_drained_;
  std::mutex mu_;
  std::string label_;
  bool open_ = false;
  double volume_;
  std::vector<float> scaled_;
};

}  // namespace

std::unique_ptr<AudioOutput> make_audio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained) {
  if (params.backend == "null") return std::make_unique<NullOutput>(std::move(on_drained), params.volume);
  if (params.backend == "wav-file") {
    if (params.path.empty()) throw std::runtime_error("audio.output: backend wav-file needs a path");
    return std::make_unique<WavFileOutput>(params, std::move(on_drained));
  }
  if (params.backend == "portaudio") return make_portaudio_output(params, std::move(on_drained));
  throw std::runtime_error("audio.output.backend '" + params.backend + "' is not portaudio, wav-file or null");
}

}  // namespace omni::audio
