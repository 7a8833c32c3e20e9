// PortAudio speech output (ALSA on Linux). The device is chosen by name, never by index:
// indices move when a USB card is plugged in, names do not.
#include <portaudio.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <stdexcept>

#include "audio/device/capture.h"
#include "audio/device/playback.h"

namespace omni::audio {
namespace {

class PortAudioLibrary {
 public:
  PortAudioLibrary() {
    const PaError err = Pa_Initialize();
    if (err != paNoError) throw std::runtime_error(std::string("PortAudio: ") + Pa_GetErrorText(err));
  }
  ~PortAudioLibrary() { Pa_Terminate(); }
};

std::vector<std::pair<PaDeviceIndex, std::string>> output_devices() {
  std::vector<std::pair<PaDeviceIndex, std::string>> out;
  const PaDeviceIndex n = Pa_GetDeviceCount();
  for (PaDeviceIndex i = 0; i < n; ++i) {
    const PaDeviceInfo* info = Pa_GetDeviceInfo(i);
    if (info && info->maxOutputChannels > 0) out.emplace_back(i, info->name);
  }
  return out;
}

PaDeviceIndex find_device(const std::string& name) {
  const auto devices = output_devices();
  std::string known;
  for (const auto& d : devices) known += (known.empty() ? "" : ", ") + ("'" + d.second + "'");
  if (known.empty()) known = "none";
  if (name == "default") {
    const PaDeviceIndex d = Pa_GetDefaultOutputDevice();
    if (d == paNoDevice) throw std::runtime_error("audio.output.device 'default': no default output device (devices: " + known + ")");
    return d;
  }
  for (const auto& d : devices)
    if (d.second == name) return d.first;
  PaDeviceIndex match = paNoDevice;
  int matches = 0;
  for (const auto& d : devices)
    if (d.second.find(name) != std::string::npos) match = d.first, ++matches;
  if (matches == 1) return match;
  throw std::runtime_error("audio.output.device '" + name + "': " +
                           (matches ? "matches several devices" : "no such output device") + " (devices: " + known + ")");
}

class PortAudioOutput final : public AudioOutput {
 public:
  PortAudioOutput(const OutputParams& p, DrainedFn on_drained)
      : params_(p), on_drained_(std::move(on_drained)), volume_(p.volume) {
    device_ = find_device(p.device);  // fail at start-up, not at the first answer
    device_name_ = Pa_GetDeviceInfo(device_)->name;
  }
  ~PortAudioOutput() override { close_stream(); }

  void begin(int sample_rate, const std::string& label) override {
    close_stream();
    std::lock_guard lock(mu_);
    queue_.clear();
    ended_ = false;
    label_ = label;
    rate_ = sample_rate;
    PaStreamParameters out{};
    out.device = device_;
    out.channelCount = 1;
    out.sampleFormat = paFloat32;
    out.suggestedLatency = Pa_GetDeviceInfo(device_)->defaultLowOutputLatency;
    PaError err = Pa_OpenStream(&stream_, nullptr, &out, sample_rate, paFramesPerBufferUnspecified, paClipOff,
                                &PortAudioOutput::callback, this);
    if (err == paNoError) err = Pa_SetStreamFinishedCallback(stream_, &PortAudioOutput::finished);
    if (err == paNoError) err = Pa_StartStream(stream_);
    if (err != paNoError) {
      if (stream_) Pa_CloseStream(stream_);
      stream_ = nullptr;
      throw std::runtime_error("PortAudio device '" + device_name_ + "': " + Pa_GetErrorText(err));
    }
  }

  void write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!stream_ || ended_) return;
    queue_.insert(queue_.end(), samples, samples + count);
  }

  void end() override {
    std::lock_guard lock(mu_);
    ended_ = true;  // the callback completes the stream once the queue is empty
  }

  void abort() override {
    PaStream* s = nullptr;
    {
      std::lock_guard lock(mu_);
      s = stream_;
      aborted_ = true;
      queue_.clear();
    }
    if (s) Pa_AbortStream(s);
  }

  void set_volume(double volume) override {
    std::lock_guard lock(mu_);
    volume_ = volume;
  }

  std::string destination() const override { return device_name_; }

 private:
  void close_stream() {
    PaStream* s = nullptr;
    {
      std::lock_guard lock(mu_);
      s = stream_;
      stream_ = nullptr;
      aborted_ = true;
    }
    if (s) {
      Pa_AbortStream(s);
      Pa_CloseStream(s);
    }
    std::lock_guard lock(mu_);
    aborted_ = false;
  }

  static int callback(const void*, void* output, unsigned long frames, const PaStreamCallbackTimeInfo* time,
                      PaStreamCallbackFlags, void* user) {
    auto* self = static_cast<PortAudioOutput*>(user);
    auto* out = static_cast<float*>(output);
    std::lock_guard lock(self->mu_);
    const size_t n = std::min<size_t>(frames, self->queue_.size());
    const float gain = static_cast<float>(self->volume_);
    for (size_t i = 0; i < n; ++i) out[i] = self->queue_[i] * gain;
    self->queue_.erase(self->queue_.begin(), self->queue_.begin() + static_cast<std::ptrdiff_t>(n));
    // An underrun (the engine is behind real time) plays silence and keeps the stream open.
    std::fill(out + n, out + frames, 0.0f);
    // This buffer reaches the DAC at outputBufferDacTime (PortAudio's stream clock); its distance from the
    // callback's currentTime is the output latency, which puts it on the monotonic clock. Hosts that report no
    // DAC time get the stream's reported output latency.
    double latency_s = time && time->outputBufferDacTime > 0 ? time->outputBufferDacTime - time->currentTime : -1;
    if (latency_s < 0 || latency_s > 2.0) {
      const PaStreamInfo* info = self->stream_ ? Pa_GetStreamInfo(self->stream_) : nullptr;
      latency_s = info ? info->outputLatency : 0.0;
    }
    self->tap(out, frames, self->rate_, monotonic_ms_precise() + latency_s * 1000.0);
    return (self->ended_ && self->queue_.empty()) ? paComplete : paContinue;
  }

  static void finished(void* user) {
    auto* self = static_cast<PortAudioOutput*>(user);
    std::string label;
    {
      std::lock_guard lock(self->mu_);
      if (self->aborted_) return;
      label = self->label_;
    }
    if (self->on_drained_) self->on_drained_(label);
  }

  PortAudioLibrary library_;
  OutputParams params_;
  DrainedFn on_drained_;
  PaDeviceIndex device_ = paNoDevice;
  std::string device_name_;
  std::mutex mu_;
  PaStream* stream_ = nullptr;
  std::deque<float> queue_;
  bool ended_ = false;
  bool aborted_ = false;
  double volume_;
  int rate_ = 24000;
  std::string label_;
};

}  // namespace

std::unique_ptr<AudioOutput> make_portaudio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained) {
  return std::make_unique<PortAudioOutput>(params, std::move(on_drained));
}

std::vector<std::string> list_output_devices() {
  PortAudioLibrary library;
  std::vector<std::string> names;
  for (auto& d : output_devices()) names.push_back(d.second);
  return names;
}

}  // namespace omni::audio
