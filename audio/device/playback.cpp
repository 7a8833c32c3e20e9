// The file and null speech outputs, and the backend factory. PortAudio: playback_portaudio.cpp.
#include "audio/device/playback.h"

#include "audio/device/capture.h"
#include "audio/io/wav.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace omni::audio {

std::unique_ptr<AudioOutput> make_portaudio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained);

namespace {

// The play times of an output without a device clock (file, null): a chunk plays when it is written, or when
// the previous one would have finished, whichever is later.
class VirtualPlayClock {
 public:
  void begin(int sample_rate) { rate_ = sample_rate, next_ms_ = -1; }
  double play(size_t count) {
    const double at = std::max(monotonic_ms_precise(), next_ms_);
    next_ms_ = at + static_cast<double>(count) * 1000.0 / rate_;
    return at;
  }
  int rate() const { return rate_; }

 private:
  int rate_ = 16000;
  double next_ms_ = -1;
};

// Writes one 16-bit WAV file per utterance (audio/io's WavWriter); the header's sizes are final
// when the utterance ends (end() or abort()).
class WavFileOutput final : public AudioOutput {
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

  void write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!writer_.is_open()) return;
    scaled_.resize(count);
    for (size_t i = 0; i < count; ++i) scaled_[i] = samples[i] * static_cast<float>(volume_);
    writer_.append(scaled_.data(), count);
    tap(scaled_.data(), count, clock_.rate(), clock_.play(count));
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
  VirtualPlayClock clock_;
};

class NullOutput final : public AudioOutput {
 public:
  NullOutput(DrainedFn on_drained, double volume) : on_drained_(std::move(on_drained)), volume_(volume) {}
  void begin(int sample_rate, const std::string& label) override {
    std::lock_guard lock(mu_);
    label_ = label;
    open_ = true;
    clock_.begin(sample_rate);
  }
  // Nothing is kept; the tap still hears what a loudspeaker would have played.
  void write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!open_) return;
    scaled_.resize(count);
    for (size_t i = 0; i < count; ++i) scaled_[i] = samples[i] * static_cast<float>(volume_);
    tap(scaled_.data(), count, clock_.rate(), clock_.play(count));
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
  VirtualPlayClock clock_;
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
