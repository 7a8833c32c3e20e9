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

  // The stream stays open from one utterance to the next, playing silence between them, so that the
  // loudspeaker's timeline (and with it the echo canceller's far end) keeps one sample grid; it is opened again
  // only for another rate or after it stopped (a device error).
  void begin(int sample_rate, const std::string& label) override {
    {
      std::lock_guard lock(mu_);
      queue_.clear();
      ended_ = false;
      drain_at_ms_ = -1;
      label_ = label;
      open_ = true;
      if (stream_ && rate_ == sample_rate && Pa_IsStreamActive(stream_) == 1) return;
    }
    close_stream();
    std::lock_guard lock(mu_);
    open_ = true;
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
      open_ = false;
      throw std::runtime_error("PortAudio device '" + device_name_ + "': " + Pa_GetErrorText(err));
    }
    const PaStreamInfo* info = Pa_GetStreamInfo(stream_);
    latency_ms_ = info ? info->outputLatency * 1000.0 : 0.0;
  }

  double write(const float* samples, size_t count) override {
    std::lock_guard lock(mu_);
    if (!stream_ || !open_ || ended_) return -1;
    const double at = monotonic_ms_precise() + static_cast<double>(queue_.size()) * 1000.0 / rate_ + latency_ms_;
    queue_.insert(queue_.end(), samples, samples + count);
    return at;
  }

  void end() override {
    std::lock_guard lock(mu_);
    ended_ = true;  // the callback reports on_drained once the queue has played
  }

  // The queue is dropped and the stream plays silence from its next buffer on.
  void abort() override {
    std::lock_guard lock(mu_);
    queue_.clear();
    open_ = ended_ = false;
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
    std::string drained;
    {
      std::lock_guard lock(self->mu_);
      const size_t n = std::min<size_t>(frames, self->queue_.size());
      const float gain = static_cast<float>(self->volume_);
      for (size_t i = 0; i < n; ++i) out[i] = self->queue_[i] * gain;
      self->queue_.erase(self->queue_.begin(), self->queue_.begin() + static_cast<std::ptrdiff_t>(n));
      // Between utterances, and in an underrun (the engine behind real time), the stream plays silence.
      std::fill(out + n, out + frames, 0.0f);
      // This buffer reaches the DAC at outputBufferDacTime (PortAudio's stream clock); its distance from the
      // callback's currentTime is the output latency, which puts it on the monotonic clock. Hosts that report
      // no DAC time get the stream's reported output latency.
      double latency_s = time && time->outputBufferDacTime > 0 ? time->outputBufferDacTime - time->currentTime : -1;
      if (latency_s < 0 || latency_s > 2.0) latency_s = self->latency_ms_ / 1000.0;
      const double now = monotonic_ms_precise();
      const double heard_ms = now + latency_s * 1000.0;
      self->tap(out, frames, self->rate_, heard_ms);
      // An ended utterance has drained once its last sample has been heard.
      if (self->open_ && self->ended_ && self->queue_.empty()) {
        if (self->drain_at_ms_ < 0) self->drain_at_ms_ = heard_ms + static_cast<double>(n) * 1000.0 / self->rate_;
        if (now >= self->drain_at_ms_) {
          self->open_ = self->ended_ = false;
          drained = self->label_;
        }
      }
    }
    // Outside the lock: the daemon's handler may call back into the output.
    if (!drained.empty() && self->on_drained_) self->on_drained_(drained);
    return paContinue;
  }

  // The stream stopped by itself (a device error): an utterance still open has ended there.
  static void finished(void* user) {
    auto* self = static_cast<PortAudioOutput*>(user);
    std::string label;
    {
      std::lock_guard lock(self->mu_);
      if (self->aborted_ || !self->open_) return;
      self->open_ = self->ended_ = false;
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
  bool open_ = false;      // an utterance is open: begin() and not yet drained or aborted
  bool ended_ = false;     // end() was called for it
  bool aborted_ = false;   // close_stream() is stopping the stream: no on_drained
  double drain_at_ms_ = -1;  // when the ended utterance's last sample is heard (known once the queue is empty)
  double latency_ms_ = 0;    // the stream's reported output latency
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
