// Acoustic echo cancellation: removes what omnid plays through its loudspeaker from what the microphone hears.
//
// The far end (reference) is exactly what omnid played, after volume, at 16 kHz, each chunk stamped with the
// monotonic time at which its first sample leaves the loudspeaker (the playback backend derives it from the
// output latency PortAudio reports). The near end (microphone) is stamped with the monotonic time its first
// sample was captured. The canceller keeps the reference on that common clock and, for every 10 ms microphone
// frame, hands the engine the reference frame played at the same moment; the engine then only has to find the
// acoustic delay (20..300 ms on a robot, plus whatever the latency reports miss) and the room's response.
//
// A timestamp that jumps by more than StreamClock::kResyncMs (40 ms) from where the stream should be (a device
// restart, a gap in playback) starts that side's stream afresh at the new time; the engine's adaptive filter and
// delay estimate are kept, so it goes on converging across answers and restarts. Within a stream the samples
// follow each other exactly, whatever the stamps' jitter, and a device clock's slow drift against the monotonic
// one (StreamClock) never restarts it: a stream that runs for hours keeps one alignment.
//
// Engines (docs/architecture.md, "Echo cancellation", says why webrtc is the default):
//   webrtc  WebRTC audio processing's echo canceller with delay-agnostic mode and the extended filter, its
//           non-linear suppressor at `suppression`, the high-pass filter, optionally noise suppression.
//   speex   speexdsp's MDF canceller (filter length `filter_ms`) with its residual echo suppressor.
//
// Threads: push_reference (playback thread) and process (capture thread) may run concurrently; each side is
// called from one thread at a time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "audio/device/vad.h"

namespace omni::audio {

struct EchoCancelParams {
  bool enabled = false;
  std::string engine = "webrtc";      // webrtc | speex
  std::string suppression = "moderate";  // webrtc non-linear suppression: low | moderate | high
  bool noise_suppression = false;     // webrtc: also suppress stationary noise
  int delay_ms = 0;                   // acoustic + unreported delay to start from (webrtc then follows its estimate)
  int filter_ms = 500;                // speex: echo tail the adaptive filter covers
  bool operator==(const EchoCancelParams&) const = default;
};

// Throws std::runtime_error naming the field when a value is out of range.
void validate(const EchoCancelParams& params);

// The library behind `engine` in this build, for logs: "webrtc-audio-processing 0.3 (AEC2)",
// "webrtc-audio-processing 1.x (AEC3)" or "speexdsp".
std::string echo_library(const std::string& engine);
// Whether `engine`, as built, met the goals on the simulated rooms (docs/performance.md, "Echo cancellation"):
// only webrtc on 0.3. On 1.x (Debian 13, Ubuntu 24.04) and with speex the user may be suppressed while both talk
// and the VAD may fire on echo alone, so with barge-in omnid may interrupt itself.
bool echo_goals_met(const std::string& engine);

// Whether the chunks of a timestamped stream continue it. `deviation_ms` is how far a chunk's stamp is from
// where the samples before it put it. Stamps jitter (a callback's scheduling) and drift slowly (a sound card's
// clock against the monotonic one: tens of ppm, a second in hours); within kResyncMs of the drift followed so
// far the chunk continues the stream, and its samples follow the last ones exactly. Further off, the stream
// restarted (a new device stream, a device restart).
class StreamClock {
 public:
  static constexpr double kResyncMs = 40.0;
  // true: the chunk continues the stream; false: the stream starts afresh at the chunk.
  bool continues(double deviation_ms);

 private:
  double drift_ms_ = 0;
};

class EchoCanceller {
 public:
  static constexpr int kSampleRate = 16000;
  static constexpr size_t kFrameSamples = 160;  // 10 ms
  // Reference kept ahead of the microphone at most (older samples are dropped first).
  static constexpr double kMaxReferenceMs = 20000.0;

  // Throws std::runtime_error when the engine is unknown, not built in, or cannot be created.
  explicit EchoCanceller(const EchoCancelParams& params);
  ~EchoCanceller();
  EchoCanceller(const EchoCanceller&) = delete;
  EchoCanceller& operator=(const EchoCanceller&) = delete;

  // Samples omnid plays (16 kHz, after volume); the first is heard at `play_time_ms` (monotonic ms).
  void push_reference(const float* samples, size_t count, double play_time_ms);
  // Microphone samples (16 kHz) whose first was captured at `capture_time_ms` (monotonic ms). Returns the
  // cleaned samples that are ready: whole 10 ms frames, so up to 159 samples are held back until the next call.
  // `echo_frames`, when given, gets one flag per returned frame: true while the canceller has not converged
  // and omnid's voice may still ring, i.e. the frame may hold echo; the VAD must not count it as speech.
  // `audible_frames`, when given, gets one flag per returned frame: omnid's voice may ring in it (it played in
  // the frame's reference or less than kEchoTailFrames before), for Endpointer::set_echo_audible.
  std::vector<float> process(const float* samples, size_t count, double capture_time_ms,
                             std::vector<bool>* echo_frames = nullptr, std::vector<bool>* audible_frames = nullptr);

  // The reference frames handed to the engine so far (for measurements and tests), and the number of times
  // either stream was restarted at a new time.
  uint64_t frames_processed() const { return frames_; }
  int reference_resyncs() const { return ref_resyncs_; }
  int capture_resyncs() const { return cap_resyncs_; }
  // How often the engine produced non-finite samples and was started afresh (that frame passed uncancelled).
  int engine_resets() const { return engine_resets_; }
  // The latest delay measured between the reference and its echo's direct path (ms); -1 before the first.
  int estimated_delay_ms();
  const EchoCancelParams& params() const { return params_; }
  // Whether the engine has converged (see echo_may_remain), how often it did, and the frames marked as
  // possibly echo while it had not.
  bool converged() const { return converged_; }
  int convergences() const { return convergences_; }
  uint64_t gated_frames() const { return gated_frames_; }
  // How much earlier than the microphone's time the reference is fed now, and how often that changed.
  double lead_ms() const { return lead_ms_; }
  int lead_changes() const { return lead_changes_; }

  struct Engine;

 private:
  static std::unique_ptr<Engine> make_engine(const EchoCancelParams& params);
  void reference_frame(int64_t start, float* out);
  void drop_reference_before(int64_t index);
  void follow_delay(const float* mic_frame, const float* ref_frame);
  bool echo_may_remain(const float* mic, const float* ref, const float* out);

  // Convergence: the engine has converged once it removed kConvergedErleDb of the microphone's energy over
  // the last kConvergeFrames frames in which omnid played. Until then (at the start, after a new alignment)
  // the output is muted while omnid's voice may still ring (kEchoTailFrames after the reference falls silent).
  static constexpr size_t kConvergeFrames = 100;
  static constexpr double kConvergedErleDb = 30.0;
  static constexpr int kEchoTailFrames = 80;
  bool converged_ = false;
  int convergences_ = 0, echo_tail_frames_ = 0;
  uint64_t gated_frames_ = 0;
  std::deque<double> conv_mic_, conv_out_;

  // Delay following: the reference is fed `lead_ms_` earlier than the microphone frame's time, the measured
  // delay of the echo's direct path less kLeadTargetMs (speex: fixed at delay_ms).
  static constexpr double kMaxLeadMs = 500.0;
  static constexpr double kLeadTargetMs = 20.0;
  static constexpr double kLeadSpanMs = 100.0;
  static constexpr int kDelayCheckFrames = 10;     // estimate every 100 ms
  static constexpr size_t kEstimateWindowMs = 800;
  double lead_ms_ = 0;
  int lead_changes_ = 0;
  int frames_since_check_ = 0, active_frames_ = 0;
  std::deque<float> est_mic_, est_ref_;
  float est_prev_mic_ = 0, est_prev_ref_ = 0;
  std::vector<double> corr_avg_;
  int estimated_delay_ms_ = -1;

  EchoCancelParams params_;
  std::unique_ptr<Engine> engine_;

  std::mutex ref_mu_;               // guards the reference timeline (playback and capture threads)
  std::deque<float> ref_;           // reference samples from absolute sample index ref_origin_
  int64_t ref_origin_ = 0;
  int64_t ref_next_ = INT64_MIN;    // where the next pushed chunk continues the stream
  StreamClock ref_clock_;
  int ref_resyncs_ = 0;

  std::vector<float> pending_;      // microphone samples not yet forming a frame
  int64_t cap_next_ = INT64_MIN;    // absolute index of the next microphone sample
  StreamClock cap_clock_;
  int cap_resyncs_ = 0;
  int engine_resets_ = 0;
  std::vector<float> ref_frame_, now_frame_, out_frame_;
  uint64_t frames_ = 0;
};

// A recording run through the canceller as the daemon runs it: the reference pushed 10 ms at a time just ahead
// of the microphone frame captured at the same moment (sample i of `ref` was played while sample i of `mic` was
// captured). `ref` shorter than `mic` is silence after its end. Then the daemon's VAD and endpointer with
// `vad` over the cleaned signal.
struct CancelledRecording {
  std::vector<float> cleaned;                         // mic.size() samples
  std::vector<std::pair<double, double>> vad_segments;  // [start_ms, end_ms] of each utterance found in it
  std::vector<double> vad_confirmed_ms;                 // when each was confirmed (the daemon's barge-in moment)
  int estimated_delay_ms = -1;
  double converged_ms = -1;  // when the canceller first converged (the output stops being muted); -1: never
  double gated_ms = 0;       // microphone time marked as possibly echo while it had not
  double lead_ms = 0;        // the final alignment lead
};
CancelledRecording cancel_recording(const std::vector<float>& mic, const std::vector<float>& ref,
                                    const EchoCancelParams& params, const VadParams& vad = VadParams{});
// The utterances the daemon's endpointer finds in 16 kHz `samples`; one still open at the end is closed there.
// Frames flagged in `echo_frames` (EchoCanceller::process) never count as voiced; frames flagged in
// `audible_frames` are pushed with Endpointer::set_echo_audible, as the daemon pushes them.
// `confirmed_ms`, when given, gets the stream time at which each was confirmed (Endpointer's on_start).
std::vector<std::pair<double, double>> vad_segments(const std::vector<float>& samples, const VadParams& vad,
                                                    const std::vector<bool>* echo_frames = nullptr,
                                                    std::vector<double>* confirmed_ms = nullptr,
                                                    const std::vector<bool>* audible_frames = nullptr);

// Echo return loss enhancement of `out` against `mic` (equal lengths) over [begin, end) samples:
// 10·log10(Σ mic² / Σ out²). Returns 0 for an empty or silent range.
double erle_db(const float* mic, const float* out, size_t begin, size_t end);

}  // namespace omni::audio
