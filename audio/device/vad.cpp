#include "audio/device/vad.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "audio/device/webrtc_compat.h"

namespace omni::audio {

struct VoiceDetector::Impl {
  VadInst* vad = nullptr;
  int16_t pcm[kVadFrameSamples] = {};
  ~Impl() {
    if (vad) WebRtcVad_Free(vad);
  }
};

VoiceDetector::VoiceDetector(int aggressiveness) : impl_(std::make_unique<Impl>()) {
  if (aggressiveness < 0 || aggressiveness > 3)
    throw std::runtime_error("VAD aggressiveness " + std::to_string(aggressiveness) + " is not in 0..3");
  impl_->vad = WebRtcVad_Create();
  if (!impl_->vad) throw std::runtime_error("cannot create the WebRTC voice detector (out of memory)");
  if (WebRtcVad_Init(impl_->vad) != 0 || WebRtcVad_set_mode(impl_->vad, aggressiveness) != 0)
    throw std::runtime_error("cannot configure the WebRTC voice detector (mode " + std::to_string(aggressiveness) +
                             ")");
}

VoiceDetector::~VoiceDetector() = default;

bool VoiceDetector::is_voiced(const float* frame) {
  // [-1, 1] floats to 16-bit samples as WebRTC's audio processing module converts them (FloatToFloatS16 then
  // FloatS16ToS16: positive values scaled by 32767, negative by 32768, saturated, rounded half away from zero).
  for (size_t i = 0; i < kVadFrameSamples; ++i) {
    const float v = frame[i] > 0 ? frame[i] * 32767.0f : frame[i] * 32768.0f;
    const float clamped = std::min(32767.0f, std::max(-32768.0f, v));
    impl_->pcm[i] = static_cast<int16_t>(clamped + std::copysign(0.5f, clamped));
  }
  const int rc = WebRtcVad_Process(impl_->vad, kVadSampleRate, impl_->pcm, kVadFrameSamples);
  if (rc < 0) throw std::runtime_error("WebRTC VAD failed on a frame (error " + std::to_string(rc) + ")");
  return rc == 1;
}

// Kept after the last speech window: word endings fade below the VAD's threshold.
constexpr size_t kTailSamples = kVadSampleRate / 5;  // 200 ms

Endpointer::Endpointer(const VadParams& params, FrameClassifier classify, Callbacks callbacks)
    : params_(params), classify_(std::move(classify)), callbacks_(std::move(callbacks)) {}

void Endpointer::push(const float* samples, size_t count) {
  pending_.insert(pending_.end(), samples, samples + count);
  size_t used = 0;
  while (pending_.size() - used >= kVadFrameSamples) {
    process_frame(pending_.data() + used);
    used += kVadFrameSamples;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
}

void Endpointer::reset() {
  pending_.clear();
  window_.clear();
  window_voiced_ = 0;
  pre_roll_.clear();
  utterance_.clear();
  in_candidate_ = confirmed_ = paused_ = false;
  voiced_frames_ = silence_frames_ = 0;
  last_voiced_end_ = 0;
}

void Endpointer::process_frame(const float* frame) {
  const bool voiced = classify_(frame);
  ++frames_seen_;
  const size_t window_frames = static_cast<size_t>(std::max(1, params_.window_ms / 10));
  window_.push_back(voiced);
  window_voiced_ += voiced;
  if (window_.size() > window_frames) {
    window_voiced_ -= window_.front();
    window_.pop_front();
  }
  const bool speech = window_voiced_ >= params_.threshold * static_cast<double>(window_frames);

  if (!in_candidate_) {
    pre_roll_.insert(pre_roll_.end(), frame, frame + kVadFrameSamples);
    const size_t keep = std::max<size_t>(static_cast<size_t>(params_.pre_roll_ms) * kVadSampleRate / 1000,
                                         window_frames * kVadFrameSamples);
    while (pre_roll_.size() > keep) pre_roll_.pop_front();
    if (!speech) return;
    in_candidate_ = true;
    start_ms_ = std::max(0.0, static_cast<double>(frames_seen_ - static_cast<long long>(window_.size())) * 10.0);
    utterance_.assign(pre_roll_.begin(), pre_roll_.end());
    pre_roll_.clear();
    voiced_frames_ = window_voiced_;
    silence_frames_ = 0;
    last_voiced_end_ = utterance_.size();
  } else {
    utterance_.insert(utterance_.end(), frame, frame + kVadFrameSamples);
    voiced_frames_ += voiced;
    if (speech) {
      silence_frames_ = 0;
      last_voiced_end_ = utterance_.size();
      if (paused_) {
        paused_ = false;
        if (callbacks_.on_resume) callbacks_.on_resume();
      }
    } else {
      ++silence_frames_;
    }
  }

  if (echo_audible_ && in_candidate_ && !confirmed_ && silence_frames_ * 10 >= kEchoCandidateSilenceMs) {
    // A burst of residual echo, not the start of an utterance: dropped without a callback.
    utterance_.clear();
    in_candidate_ = false;
    voiced_frames_ = silence_frames_ = 0;
    last_voiced_end_ = 0;
    return;
  }
  if (!confirmed_ && voiced_frames_ * 10 >= params_.min_speech_ms) {
    confirmed_ = true;
    if (callbacks_.on_start) callbacks_.on_start(start_ms_);
  }
  const size_t max_samples = static_cast<size_t>(params_.max_utterance_ms) * kVadSampleRate / 1000;
  if (silence_frames_ * 10 >= params_.end_silence_ms || utterance_.size() >= max_samples) return finish_utterance();
  if (confirmed_ && !paused_ && params_.speculate_after_ms > 0 && silence_frames_ * 10 >= params_.speculate_after_ms &&
      utterance_.size() >= last_voiced_end_ + kTailSamples) {
    paused_ = true;
    if (callbacks_.on_pause) callbacks_.on_pause(current_utterance());
  }
}

Utterance Endpointer::current_utterance() const {
  const size_t max_samples = static_cast<size_t>(params_.max_utterance_ms) * kVadSampleRate / 1000;
  Utterance u;
  u.truncated = utterance_.size() >= max_samples && silence_frames_ * 10 < params_.end_silence_ms;
  const size_t keep = std::min(utterance_.size(), last_voiced_end_ + kTailSamples);
  u.samples.assign(utterance_.begin(), utterance_.begin() + static_cast<std::ptrdiff_t>(keep));
  u.start_ms = start_ms_;
  u.end_ms = static_cast<double>(frames_seen_ - silence_frames_) * 10.0;
  u.detected_ms = static_cast<double>(frames_seen_) * 10.0;
  return u;
}

void Endpointer::finish_utterance() {
  Utterance u = current_utterance();
  const bool announce = confirmed_;
  utterance_.clear();
  in_candidate_ = confirmed_ = paused_ = false;
  voiced_frames_ = silence_frames_ = 0;
  last_voiced_end_ = 0;
  if (announce && callbacks_.on_end) callbacks_.on_end(std::move(u));
}

}  // namespace omni::audio
