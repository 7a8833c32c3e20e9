// Speech output: streamed playback of chunks as the engine makes them.
//
// Backends: "portaudio" (a PortAudio device chosen by name, e.g. an ALSA card), "wav-file" (each
// answer written to a 16-bit WAV file; "{turn}" in the path becomes the turn id) and "null"
// (discards audio; playback ends as soon as the answer does).
//
// Threads: begin/write/end are called by the producer (the engine worker), abort() by anyone
// (barge-in, cancel). on_drained runs on a backend thread or inside end().
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace omni::audio {

struct OutputParams {
  std::string backend = "portaudio";  // portaudio | wav-file | null
  std::string device = "default";     // PortAudio device name (exact, else a unique substring)
  std::string path;                   // wav-file target; "{turn}" is replaced by the label
  double volume = 1.0;
};

class AudioOutput {
 public:
  // `label`: the utterance that finished playing (as given to begin).
  using DrainedFn = std::function<void(const std::string& label)>;
  // The far-end tap: what goes to the loudspeaker, after volume, as it is played: `count` samples at
  // `sample_rate`, the first heard at monotonic `play_time_ms` (monotonic_ms_precise's clock). PortAudio calls it
  // from its callback with the output latency it reports, silence included: its stream keeps running from one
  // utterance to the next. The file and null outputs play each chunk on a clock that runs on from their first
  // utterance in 10 ms periods, as a device without latency that keeps running would, and tap an underrun's
  // silence as well. Either way what a device plays is one stream on one sample grid, which the echo
  // canceller's alignment needs: a shift of one sample between answers lets the next answer's echo through.
  // Runs on the thread that plays or writes.
  using TapFn = std::function<void(const float* samples, size_t count, int sample_rate, double play_time_ms)>;
  virtual ~AudioOutput() = default;
  // Installs (or, with an empty function, removes) the tap; any thread.
  void set_tap(TapFn tap) {
    std::lock_guard lock(tap_mu_);
    tap_ = std::move(tap);
  }
  // Starts an utterance of mono float audio at `sample_rate`. Throws std::runtime_error when the
  // device or file cannot be opened.
  virtual void begin(int sample_rate, const std::string& label) = 0;
  // Returns when the chunk's first sample will be heard (monotonic ms), as far as the output knows when it is
  // queued: the file and null outputs exactly (the time their tap gets), PortAudio from what is queued ahead of
  // it and the latency its stream reports; -1 when nothing was queued (no utterance open, aborted).
  virtual double write(const float* samples, size_t count) = 0;
  // No more samples: on_drained follows once everything queued has been played.
  virtual void end() = 0;
  // Stops now and drops what is queued; no on_drained for this utterance. Later writes are
  // ignored until the next begin().
  virtual void abort() = 0;
  virtual void set_volume(double volume) = 0;
  // Where the latest utterance went: a device name or a file path.
  virtual std::string destination() const = 0;

 protected:
  void tap(const float* samples, size_t count, int sample_rate, double play_time_ms) {
    std::lock_guard lock(tap_mu_);
    if (tap_ && count > 0) tap_(samples, count, sample_rate, play_time_ms);
  }

 private:
  std::mutex tap_mu_;
  TapFn tap_;
};

// Throws std::runtime_error naming the backend or device when it is not usable; for portaudio
// the message lists the output devices that exist.
std::unique_ptr<AudioOutput> make_audio_output(const OutputParams& params, AudioOutput::DrainedFn on_drained);

// PortAudio output device names, for error messages and `omnid --list-devices`.
std::vector<std::string> list_output_devices();

}  // namespace omni::audio
