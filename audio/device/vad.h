// Voice activity detection and endpointing for 16 kHz mono float audio.
//
// VoiceDetector classifies 10 ms frames with WebRTC's VAD (common_audio/vad, the GMM detector that
// libwebrtc-audio-processing builds in and exports in both API generations: audio/device/webrtc_compat.h).
// Endpointer turns the per-frame decisions into utterances: a start once enough of a short window
// is voiced for long enough, an end after a run of silence, with a little audio kept from before
// the start so the first syllable is not clipped.
#pragma once
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

namespace omni::audio {

constexpr int kVadSampleRate = 16000;
constexpr size_t kVadFrameSamples = 160;  // 10 ms

struct VadParams {
  int aggressiveness = 2;       // WebRTC VAD mode: 0 (lenient) .. 3 (strict)
  double threshold = 0.6;       // fraction of voiced frames in the window that counts as speech
  int window_ms = 100;          // smoothing window
  int min_speech_ms = 200;      // voiced time before an utterance is announced
  int end_silence_ms = 700;     // unvoiced time that ends an utterance
  int max_utterance_ms = 30000; // longer speech is cut here
  int pre_roll_ms = 300;        // audio kept from before the start
  // >0: after this much silence inside a confirmed utterance, on_pause hands out the utterance as it
  // will end if the silence lasts to end_silence_ms (speculative turns). Not before the 200 ms kept
  // after the last speech window are in, so that the paused utterance equals the final one.
  int speculate_after_ms = 0;
};

class VoiceDetector {
 public:
  // Throws std::runtime_error when the VAD cannot be created (bad mode, out of memory).
  explicit VoiceDetector(int aggressiveness);
  ~VoiceDetector();
  VoiceDetector(const VoiceDetector&) = delete;
  VoiceDetector& operator=(const VoiceDetector&) = delete;
  // One 10 ms frame (kVadFrameSamples samples in [-1, 1]).
  bool is_voiced(const float* frame);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Utterance {
  std::vector<float> samples;  // 16 kHz mono, pre-roll included
  double start_ms = 0;         // stream time of the detected start (before pre-roll)
  double end_ms = 0;           // stream time of the last voiced frame
  double detected_ms = 0;      // stream time when it was handed out (end_ms + the silence seen since)
  bool truncated = false;      // cut at max_utterance_ms
};

class Endpointer {
 public:
  struct Callbacks {
    std::function<void(double start_ms)> on_start;          // speech confirmed
    std::function<void(Utterance&& utterance)> on_end;      // a complete utterance
    // speculate_after_ms of silence: `utterance` is what on_end will hand out, sample for sample, if
    // the silence reaches end_silence_ms. At most once per run of silence.
    std::function<void(Utterance&& utterance)> on_pause;
    // Speech resumed after an on_pause: the paused utterance will not be the final one.
    std::function<void()> on_resume;
  };
  // `classify` decides one 10 ms frame; tests pass their own, the daemon a VoiceDetector.
  using FrameClassifier = std::function<bool(const float* frame)>;

  Endpointer(const VadParams& params, FrameClassifier classify, Callbacks callbacks);
  // Any number of samples; callbacks run inside push().
  void push(const float* samples, size_t count);
  // Drops a partial utterance (no callbacks), e.g. when the microphone is switched off.
  void reset();
  // Whether omnid's own voice may be ringing in the frames pushed from now on (echo cancellation on: what is
  // left of its echo comes in short bursts). While it is, a candidate not yet confirmed ends after
  // kEchoCandidateSilenceMs without speech instead of end_silence_ms, so that scattered bursts of residual echo
  // never add up to min_speech_ms; speech confirms as before.
  void set_echo_audible(bool audible) { echo_audible_ = audible; }
  static constexpr int kEchoCandidateSilenceMs = 100;
  bool in_speech() const { return confirmed_; }
  double stream_ms() const { return frames_seen_ * 10.0; }

 private:
  void process_frame(const float* frame);
  void finish_utterance();
  Utterance current_utterance() const;  // as finish_utterance() would hand it out now

  VadParams params_;
  FrameClassifier classify_;
  Callbacks callbacks_;
  std::vector<float> pending_;        // samples not yet forming a full frame
  std::deque<bool> window_;           // recent per-frame decisions
  int window_voiced_ = 0;
  std::deque<float> pre_roll_;        // audio before a candidate start
  bool in_candidate_ = false;         // window says speech, not yet long enough
  bool confirmed_ = false;            // on_start was called
  std::vector<float> utterance_;      // audio of the current candidate/utterance
  int voiced_frames_ = 0;             // voiced frames in the current utterance
  int silence_frames_ = 0;            // current run of non-speech windows
  size_t last_voiced_end_ = 0;        // utterance_ size after the last speech window
  bool paused_ = false;               // on_pause was called for the current run of silence
  bool echo_audible_ = false;         // set_echo_audible
  long long frames_seen_ = 0;
  double start_ms_ = 0;
};

}  // namespace omni::audio
