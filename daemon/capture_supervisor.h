// Capture supervision: the microphone pipeline survives its device. When the GStreamer pipeline fails
// (device unplugged, sound server gone) or ends (a source that stops delivering), the supervisor reports the
// loss and rebuilds the pipeline with exponential backoff (0.5 s doubling to 30 s; back to 0.5 s after a
// pipeline that ran 10 s). It reports the input restored once a rebuilt pipeline delivers samples.
//
// Echo cancellation (audio.echo_cancel): the supervisor owns the echo canceller, so that it outlives the
// pipelines it rebuilds and keeps converging across device restarts. With it on, the microphone's samples go
// through it (with their capture timestamps) before `on_samples`, which then gets whole 10 ms frames and one
// flag per frame for frames that may still hold omnid's own voice (the canceller has not converged yet); the
// far end is fed by the speech output's tap (on_echo_canceller hands the canceller out whenever it changes).
//
// Source ipc (audio.input.source): no pipeline; push() brings the samples of push_audio requests, on the event
// loop, through the same canceller to `on_samples`.
//
// Threads: samples arrive on the capture thread (source ipc: the event loop) and go to `on_samples` there; everything else runs on the
// daemon's event loop (the pipeline's errors are posted there) and its listener is called there.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "audio/device/capture.h"
#include "audio/device/echo_canceller.h"
#include "audio/io/resample.h"
#include "daemon/rebuild_backoff.h"
#include "daemon/event_loop.h"

namespace omnid {

class CaptureSupervisor {
 public:
  struct Listener {
    // Capture thread. `echo_frames`, `audible_frames`: null without echo cancellation, else one flag per 10 ms
    // frame of `samples` each (EchoCanceller::process).
    std::function<void(const float* samples, size_t count, const std::vector<bool>* echo_frames,
                       const std::vector<bool>* audible_frames)>
        on_samples;
    // The echo canceller was made, replaced or removed (null: echo cancellation off). Event loop.
    std::function<void(std::shared_ptr<omni::audio::EchoCanceller> canceller)> on_echo_canceller;
    // The input was lost (`first`: a new loss, not a failed rebuild); the next rebuild is in `retry_in_ms`.
    std::function<void(const std::string& reason, int retry_in_ms, bool first)> on_lost;
    // A rebuilt pipeline delivers samples again, `down_ms` after the loss, after `attempts` rebuilds.
    std::function<void(int64_t down_ms, int attempts)> on_restored;
    // The input ended and stays closed (restart_on_end off): the microphone state changed.
    std::function<void()> on_closed;
  };
  struct Settings {
    // ipc: no pipeline; the samples come from push() (push_audio requests), through the same echo canceller and
    // listener as a pipeline's. Nothing to lose or rebuild then.
    bool ipc = false;
    std::string pipeline = "autoaudiosrc";  // GStreamer source description
    bool restart_on_end = true;             // an input that ends is lost like one that fails: rebuilt
    omni::audio::EchoCancelParams echo_cancel;  // audio.echo_cancel
  };

  CaptureSupervisor(EventLoop& loop, Listener listener) : loop_(loop), listener_(std::move(listener)) {}
  ~CaptureSupervisor() { stop(); }
  CaptureSupervisor(const CaptureSupervisor&) = delete;
  CaptureSupervisor& operator=(const CaptureSupervisor&) = delete;

  // Builds and starts the pipeline (paused unless `playing`). Throws std::runtime_error when GStreamer
  // rejects it or the echo canceller cannot be made; nothing is supervised then.
  void start(const Settings& settings, bool playing);
  // New settings: a changed pipeline is rebuilt now (throws as start does); restart_on_end applies at once;
  // changed echo-cancellation settings make a new canceller (throws, keeping the old one, when it cannot be
  // made).
  void apply(const Settings& settings);
  // The canceller in use; null when echo cancellation is off.
  std::shared_ptr<omni::audio::EchoCanceller> echo_canceller() const;
  void set_playing(bool playing);
  // Source ipc (event loop): `count` samples at `sample_rate`, resampled to 16 kHz as one continuous stream (a new
  // rate starts a new one) and delivered as a pipeline's would be, stamped as captured just now. Dropped while not
  // playing (the microphone is off), as a paused pipeline delivers nothing. Returns the 16 kHz samples delivered.
  size_t push(const float* samples, size_t count, int sample_rate);
  // Stops the pipeline; no listener call follows until the next start().
  void stop();
  // Every 100 ms from the loop while omnid runs: rebuilds a lost input when its backoff has passed and
  // reports a restored one.
  void tick();

  bool running() const { return capture_ != nullptr || ipc_started_; }
  bool lost() const { return failed_; }
  // The microphone delivers (or will deliver) samples: a pipeline runs, not lost, not at its end; or source ipc.
  bool open() const { return ipc_started_ || (capture_ && !failed_ && !capture_->end_of_stream()); }
  // Empty when healthy, else what the watchdog reports. A lost input is being rebuilt: restarting omnid
  // would not bring it back sooner, so that is healthy.
  std::string health_problem(int64_t now_ms) const;

 private:
  void build();
  void on_lost(uint64_t generation, const std::string& reason);
  void set_echo_canceller(const omni::audio::EchoCancelParams& params);  // throws as EchoCanceller does
  void deliver(const float* samples, size_t count, double capture_time_ms);  // capture thread (ipc: loop)

  EventLoop& loop_;
  Listener listener_;
  Settings settings_;
  bool playing_ = true;
  std::unique_ptr<omni::audio::AudioCapture> capture_;
  bool ipc_started_ = false;  // source ipc: started (push() delivers)
  std::unique_ptr<omni::audio::StreamResampler> push_resampler_;  // source ipc: push_rate_ -> 16 kHz
  int push_rate_ = 0;
  uint64_t generation_ = 0;          // callbacks of an older pipeline are ignored
  bool failed_ = false;              // lost; being rebuilt
  std::atomic<bool> heard_{false};   // the current pipeline delivered samples
  RebuildBackoff backoff_;           // restored once a rebuilt pipeline delivers samples
  int64_t started_ms_ = 0;

  mutable std::mutex echo_mu_;  // the capture thread runs the canceller, the loop replaces it
  std::shared_ptr<omni::audio::EchoCanceller> echo_;
  std::vector<bool> echo_frames_, audible_frames_;  // capture thread
  struct EchoState {
    bool converged = false;
    int lead_changes = 0, engine_resets = 0;
  } echo_state_;  // as last logged
};

}  // namespace omnid
