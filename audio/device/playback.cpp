// The file and null speech outputs, and the backend factory. PortAudio: playback_portaudio.cpp.
#include "device/playback.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <stdexcept>

namespace omni::audio {

std::unique_ptr<AudioOutput> make_portaudio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained);

namespace {

void put_le(std::FILE* f, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) std::fputc(static_cast<int>((v >> (8 * i)) & 0xff), f);
}

// Writes one WAV file per utterance, 16-bit PCM mono. The header is rewritten after every chunk,
// so the file is a valid WAV at all times (a reader may open it mid-answer).
class WavFileOutput final : public AudioOutput {
 public:
  WavFileOutput(const OutputParams& p, DrainedFn on_drained) : params_(p), on_drained_(std::move(on_drained)) {}
  ~WavFileOutput() override { close(); }

  void begin(int sample_rate, const std::string& label) override {
    std::lock_guard lock(mu_);
    close();
    path_ = params_.path;
    if (auto pos = path_.find("{turn}"); pos != std::string::npos) path_.replace(pos, 6, label);
    file_ = std::fopen(path_.c_str(), "wb");
    if (!file_) throw std::runtime_error("audio.output.path '" + path_ + "': cannot open for writing");
    label_ = label;
    rate_ = sample_rate;
    samples_ = 0;
    write_header();
  }

  void write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!file_) return;
    for (size_t i = 0; i < count; ++i) {
      const float v = std::clamp(samples[i] * static_cast<float>(volume_), -1.0f, 1.0f);
      const auto s = static_cast<int16_t>(std::lrint(v * 32767.0f));
      put_le(file_, static_cast<uint16_t>(s), 2);
    }
    samples_ += count;
    write_header();
  }

  void end() override {
    std::string label;
    {
      std::lock_guard lock(mu_);
      if (!file_) return;
      close();
      label = label_;
    }
    if (on_drained_) on_drained_(label);
  }

  void abort() override {
    std::lock_guard lock(mu_);
    close();
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
  void write_header() {
    const uint32_t data_bytes = static_cast<uint32_t>(samples_ * 2);
    std::fseek(file_, 0, SEEK_SET);
    std::fwrite("RIFF", 1, 4, file_);
    put_le(file_, 36 + data_bytes, 4);
    std::fwrite("WAVEfmt ", 1, 8, file_);
    put_le(file_, 16, 4);
    put_le(file_, 1, 2);  // PCM
    put_le(file_, 1, 2);  // mono
    put_le(file_, static_cast<uint32_t>(rate_), 4);
    put_le(file_, static_cast<uint32_t>(rate_ * 2), 4);
    put_le(file_, 2, 2);
    put_le(file_, 16, 2);
    std::fwrite("data", 1, 4, file_);
    put_le(file_, data_bytes, 4);
    std::fseek(file_, 0, SEEK_END);
    std::fflush(file_);
  }

  void close() {
    if (file_) std::fclose(file_);
    file_ = nullptr;
  }

  OutputParams params_;
  DrainedFn on_drained_;
  mutable std::mutex mu_;
  std::FILE* file_ = nullptr;
  std::string path_, label_;
  int rate_ = 24000;
  size_t samples_ = 0;
  double volume_ = params_.volume;
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
