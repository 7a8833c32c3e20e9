// The file and null speech outputs, and the backend factory. PortAudio: playback_portaudio.cpp.
#include "audio/device/playback.h"

#include "audio/io/wav.h"

#include <mutex>
#include <stdexcept>

namespace omni::audio {

std::unique_ptr<AudioOutput> make_portaudio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained);

namespace {

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
  }

  void write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!writer_.is_open()) return;
    scaled_.resize(count);
    for (size_t i = 0; i < count; ++i) scaled_[i] = samples[i] * static_cast<float>(volume_);
    writer_.append(scaled_.data(), count);
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

class NullOutput final : public AudioOutput {
 public:
  explicit NullOutput(DrainedFn on_drained) : on_drained_(std::move(on_drained)) {}
  void begin(int, const std::string& label) override {
    std::lock_guard lock(mu_);
    label_ = label;
    open_ = true;
  }
  void write(const float*, size_t) override {}
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
  void set_volume(double) override {}
  std::string destination() const override { return "null"; }

 private:
  DrainedFn on_drained_;
  std::mutex mu_;
  std::string label_;
  bool open_ = false;
};

}  // namespace

std::unique_ptr<AudioOutput> make_audio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained) {
  if (params.backend == "null") return std::make_unique<NullOutput>(std::move(on_drained));
  if (params.backend == "wav-file") {
    if (params.path.empty()) throw std::runtime_error("audio.output: backend wav-file needs a path");
    return std::make_unique<WavFileOutput>(params, std::move(on_drained));
  }
  if (params.backend == "portaudio") return make_portaudio_output(params, std::move(on_drained));
  throw std::runtime_error("audio.output.backend '" + params.backend + "' is not portaudio, wav-file or null");
}

}  // namespace omni::audio
