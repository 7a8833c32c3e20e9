// Microphone input through GStreamer: any source description (autoaudiosrc, alsasrc device=...,
// filesrc location=x.wav ! wavparse), converted to 16 kHz mono float32 and pulled from an appsink
// on a capture thread. The appsink syncs to the pipeline clock, so a file plays in real time,
// exactly like a microphone.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

struct _GstBuffer;  // GstBuffer

namespace omni::audio {

class AudioCapture {
 public:
  struct Callbacks {
    // `capture_time_ms`: when the first sample was captured (monotonic_ms_precise's clock), from the buffer's
    // timestamp on the pipeline clock; a buffer without one is taken as just captured.
    std::function<void(const float* samples, size_t count, double capture_time_ms)> on_samples;  // capture thread
    std::function<void(const std::string& message)> on_error;          // capture thread
    std::function<void()> on_end_of_stream;                            // capture thread, once
  };

  // Parses the pipeline; throws std::runtime_error naming the problem when GStreamer rejects it.
  AudioCapture(const std::string& source_description, Callbacks callbacks);
  ~AudioCapture();
  AudioCapture(const AudioCapture&) = delete;
  AudioCapture& operator=(const AudioCapture&) = delete;

  // Brings the pipeline up (source opened, prerolled) and starts the capture thread. With
  // `playing` false the pipeline stays paused: a file keeps its position, a microphone is not read.
  // Throws std::runtime_error with GStreamer's message when the source cannot start.
  void start(bool playing);
  void set_playing(bool playing);
  void stop();

  // Monotonic milliseconds of the capture thread's latest loop turn; the watchdog uses it.
  int64_t last_alive_ms() const { return last_alive_ms_.load(); }
  bool thread_running() const { return thread_running_.load(); }
  bool end_of_stream() const { return eos_.load(); }
  // The full description GStreamer runs.
  const std::string& pipeline_description() const { return description_; }

 private:
  void run();
  std::string take_bus_error(int timeout_ms);
  double capture_time_ms(::_GstBuffer* buffer, size_t count);

  struct Gst;
  std::unique_ptr<Gst> gst_;
  std::string description_;
  Callbacks callbacks_;
  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> thread_running_{false};
  std::atomic<bool> eos_{false};
  std::atomic<int64_t> last_alive_ms_{0};
};

int64_t monotonic_ms();
// The same clock with sub-millisecond resolution (echo-cancellation timestamps).
double monotonic_ms_precise();

}  // namespace omni::audio
