#include "audio/device/echo_canceller.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "audio/device/webrtc_compat.h"
#ifdef OMNI_HAVE_SPEEXDSP
#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>
#endif

namespace omni::audio {

void validate(const EchoCancelParams& p) {
  if (p.engine != "webrtc" && p.engine != "speex")
    throw std::runtime_error("audio.echo_cancel.engine '" + p.engine + "' is not webrtc or speex");
  if (p.suppression != "low" && p.suppression != "moderate" && p.suppression != "high")
    throw std::runtime_error("audio.echo_cancel.suppression '" + p.suppression + "' is not low, moderate or high");
  if (p.delay_ms < 0 || p.delay_ms > 500)
    throw std::runtime_error("audio.echo_cancel.delay_ms " + std::to_string(p.delay_ms) + " is not in 0..500");
  if (p.filter_ms < 20 || p.filter_ms > 2000)
    throw std::runtime_error("audio.echo_cancel.filter_ms " + std::to_string(p.filter_ms) + " is not in 20..2000");
}

std::string echo_library(const std::string& engine) {
  if (engine == "speex") return "speexdsp";
  return webrtc_compat::kApiGeneration >= 1 ? "webrtc-audio-processing 1.x (AEC3)" : "webrtc-audio-processing 0.3 (AEC2)";
}

bool echo_goals_met(const std::string& engine) { return engine == "webrtc" && webrtc_compat::kApiGeneration == 0; }

// One engine processes aligned 10 ms frames: `ref` was played while `mic` was captured.
struct EchoCanceller::Engine {
  virtual ~Engine() = default;
  virtual void process(const float* ref, const float* mic, float* out) = 0;
  virtual int estimated_delay_ms() { return -1; }
};

namespace {

// Either WebRTC generation through webrtc_compat.h (AEC2 on 0.3, AEC3 on 1.x).
class WebRtcEngine final : public EchoCanceller::Engine {
 public:
  explicit WebRtcEngine(const EchoCancelParams& p) : apm_(settings(p)) {}

  void process(const float* ref, const float* mic, float* out) override { apm_.process(ref, mic, out); }
  int estimated_delay_ms() override { return apm_.delay_ms(); }

 private:
  static webrtc_compat::EchoSettings settings(const EchoCancelParams& p) {
    using S = webrtc_compat::EchoSettings::Suppression;
    webrtc_compat::EchoSettings s;
    s.suppression = p.suppression == "low" ? S::low : p.suppression == "moderate" ? S::moderate : S::high;
    s.noise_suppression = p.noise_suppression;
    return s;
  }
  static_assert(webrtc_compat::EchoProcessing::kEchoRate == EchoCanceller::kSampleRate &&
                webrtc_compat::EchoProcessing::kEchoFrame == EchoCanceller::kFrameSamples);
  webrtc_compat::EchoProcessing apm_;
};

#ifdef OMNI_HAVE_SPEEXDSP
class SpeexEngine final : public EchoCanceller::Engine {
 public:
  explicit SpeexEngine(const EchoCancelParams& p) {
    int rate = EchoCanceller::kSampleRate;
    echo_ = speex_echo_state_init(kFrame, p.filter_ms * rate / 1000);
    pre_ = speex_preprocess_state_init(kFrame, rate);
    if (!echo_ || !pre_) throw std::runtime_error("cannot create the speexdsp echo canceller");
    speex_echo_ctl(echo_, SPEEX_ECHO_SET_SAMPLING_RATE, &rate);
    speex_preprocess_ctl(pre_, SPEEX_PREPROCESS_SET_ECHO_STATE, echo_);
    int denoise = p.noise_suppression ? 1 : 0;
    speex_preprocess_ctl(pre_, SPEEX_PREPROCESS_SET_DENOISE, &denoise);
  }
  ~SpeexEngine() override {
    if (pre_) speex_preprocess_state_destroy(pre_);
    if (echo_) speex_echo_state_destroy(echo_);
  }

  void process(const float* ref, const float* mic, float* out) override {
    spx_int16_t r[kFrame], m[kFrame], o[kFrame];
    for (size_t i = 0; i < kFrame; ++i) r[i] = to16(ref[i]), m[i] = to16(mic[i]);
    speex_echo_cancellation(echo_, m, r, o);
    speex_preprocess_run(pre_, o);
    for (size_t i = 0; i < kFrame; ++i) out[i] = o[i] / 32768.0f;
  }

 private:
  static spx_int16_t to16(float x) {
    return static_cast<spx_int16_t>(std::lrint(std::clamp(x, -1.0f, 32767.0f / 32768.0f) * 32768.0f));
  }
  static constexpr size_t kFrame = EchoCanceller::kFrameSamples;
  SpeexEchoState* echo_ = nullptr;
  SpeexPreprocessState* pre_ = nullptr;
};
#endif

int64_t to_index(double ms) { return std::llround(ms * EchoCanceller::kSampleRate / 1000.0); }

}  // namespace

bool StreamClock::continues(double deviation_ms) {
  if (std::fabs(deviation_ms - drift_ms_) > kResyncMs) {
    drift_ms_ = 0;
    return false;
  }
  // Followed slowly: jitter averages out, a clock's drift (under a millisecond a minute) is kept up with.
  drift_ms_ += 0.01 * (deviation_ms - drift_ms_);
  return true;
}

std::unique_ptr<EchoCanceller::Engine> EchoCanceller::make_engine(const EchoCancelParams& params) {
  if (params.engine == "webrtc") {
    return std::make_unique<WebRtcEngine>(params);
  }
#ifdef OMNI_HAVE_SPEEXDSP
  return std::make_unique<SpeexEngine>(params);
#else
  throw std::runtime_error("audio.echo_cancel.engine speex: omnid was built without libspeexdsp");
#endif
}

EchoCanceller::EchoCanceller(const EchoCancelParams& params)
    : params_(params), ref_frame_(kFrameSamples), now_frame_(kFrameSamples), out_frame_(kFrameSamples) {
  validate(params_);
  lead_ms_ = params_.delay_ms;
  engine_ = make_engine(params_);
}

EchoCanceller::~EchoCanceller() = default;

int EchoCanceller::estimated_delay_ms() {
  const int engine = engine_->estimated_delay_ms();
  return estimated_delay_ms_ >= 0 ? estimated_delay_ms_ : engine;
}

void EchoCanceller::push_reference(const float* samples, size_t count, double play_time_ms) {
  if (count == 0) return;
  std::lock_guard lock(ref_mu_);
  int64_t at = to_index(play_time_ms);
  // Chunks of one stream continue where the last one ended (StreamClock), so the reference has no gaps or
  // overlaps. A larger jump is a new stream (a new answer, a restarted device).
  if (ref_next_ != INT64_MIN) {
    if (ref_clock_.continues(static_cast<double>(at - ref_next_) * 1000.0 / kSampleRate)) at = ref_next_;
    else ++ref_resyncs_;
  }
  ref_next_ = at + static_cast<int64_t>(count);
  if (ref_.empty()) ref_origin_ = at;
  if (at < ref_origin_) {  // starts before what the microphone has already consumed: that part is late
    const int64_t skip = std::min<int64_t>(ref_origin_ - at, static_cast<int64_t>(count));
    samples += skip, count -= static_cast<size_t>(skip), at += skip;
  }
  const int64_t end = ref_origin_ + static_cast<int64_t>(ref_.size());
  if (at > end) ref_.insert(ref_.end(), static_cast<size_t>(at - end), 0.0f);  // silence between streams
  // An overlap (a restarted stream re-timed earlier than the last one's end) is overwritten by the newer audio.
  size_t offset = static_cast<size_t>(at - ref_origin_);
  for (size_t i = 0; i < count; ++i, ++offset) {
    if (offset < ref_.size()) ref_[offset] = samples[i];
    else ref_.push_back(samples[i]);
  }
  const size_t max_samples = static_cast<size_t>(to_index(kMaxReferenceMs));
  if (ref_.size() > max_samples) {
    const size_t drop = ref_.size() - max_samples;
    ref_.erase(ref_.begin(), ref_.begin() + static_cast<std::ptrdiff_t>(drop));
    ref_origin_ += static_cast<int64_t>(drop);
  }
}

void EchoCanceller::reference_frame(int64_t start, float* out) {
  std::lock_guard lock(ref_mu_);
  for (size_t i = 0; i < kFrameSamples; ++i) {
    const int64_t k = start + static_cast<int64_t>(i) - ref_origin_;
    out[i] = (k >= 0 && k < static_cast<int64_t>(ref_.size())) ? ref_[static_cast<size_t>(k)] : 0.0f;
  }
}

void EchoCanceller::drop_reference_before(int64_t index) {
  std::lock_guard lock(ref_mu_);
  const int64_t consumed = index - ref_origin_;
  if (consumed > 0) {
    const size_t drop = std::min(static_cast<size_t>(consumed), ref_.size());
    ref_.erase(ref_.begin(), ref_.begin() + static_cast<std::ptrdiff_t>(drop));
    ref_origin_ += static_cast<int64_t>(consumed);
  }
}

// The delay estimator works on 4 kHz signals (mean of 4 samples), pre-emphasised (first difference) so that
// speech's strong low frequencies do not smear the correlation peak over tens of milliseconds.
void EchoCanceller::follow_delay(const float* mic_frame, const float* ref_frame) {
  constexpr size_t kDecim = 4;
  constexpr size_t kMicKeep = kEstimateWindowMs * (kSampleRate / kDecim) / 1000;
  constexpr size_t kLags = static_cast<size_t>(kMaxLeadMs) * (kSampleRate / kDecim) / 1000;
  double ref_energy = 0;
  for (size_t i = 0; i < kFrameSamples; i += kDecim) {
    float m = 0, r = 0;
    for (size_t j = 0; j < kDecim; ++j) m += mic_frame[i + j], r += ref_frame[i + j];
    m /= kDecim, r /= kDecim;
    est_mic_.push_back(m - est_prev_mic_), est_ref_.push_back(r - est_prev_ref_);
    est_prev_mic_ = m, est_prev_ref_ = r;
  }
  for (size_t i = 0; i < kFrameSamples; ++i) ref_energy += double(ref_frame[i]) * ref_frame[i];
  // Both histories start as silence, so the first estimate needs only enough of omnid's voice.
  if (est_mic_.size() < kMicKeep) est_mic_.resize(kMicKeep, 0.0f), est_ref_.resize(kMicKeep + kLags, 0.0f);
  while (est_mic_.size() > kMicKeep) est_mic_.pop_front();
  while (est_ref_.size() > kMicKeep + kLags) est_ref_.pop_front();
  // Omnid audible in this frame (above -50 dBFS): only such stretches say anything about the echo's delay.
  active_frames_ = ref_energy > 1e-5 * kFrameSamples ? active_frames_ + 1 : 0;
  if (++frames_since_check_ < kDelayCheckFrames) return;
  frames_since_check_ = 0;
  if (active_frames_ < kDelayCheckFrames) return;
  // Normalised cross-correlation of the last kEstimateWindowMs of microphone against the reference at
  // every lag in [0, kMaxLeadMs).
  const size_t n = kMicKeep, off = kLags;  // est_ref_[off + t - lag] pairs with est_mic_[t]
  double mic_energy = 0;
  for (size_t t = 0; t < n; ++t) mic_energy += double(est_mic_[t]) * est_mic_[t];
  if (mic_energy <= 0) return;
  double window_ref = 0;  // reference energy over [off - lag, off - lag + n), slid as lag grows
  for (size_t t = 0; t < n; ++t) window_ref += double(est_ref_[off + t]) * est_ref_[off + t];
  if (corr_avg_.size() != kLags) corr_avg_.assign(kLags, 0.0);
  for (size_t lag = 0; lag < kLags; ++lag) {
    if (lag > 0) {
      const double enter = est_ref_[off - lag], leave = est_ref_[off - lag + n];
      window_ref += enter * enter - leave * leave;
    }
    double c = 0;
    for (size_t t = 0; t < n; ++t) c += double(est_mic_[t]) * est_ref_[off + t - lag];
    const double norm = std::fabs(c) / std::sqrt(mic_energy * std::max(window_ref, 1e-12));
    // Averaged over the recent estimates: a room's delay stays put, chance peaks (the user talking over
    // omnid, repeated sounds in the answer) do not.
    corr_avg_[lag] = 0.7 * corr_avg_[lag] + 0.3 * norm;
  }
  double best = 0, sum = 0;
  for (double c : corr_avg_) best = std::max(best, c), sum += c;
  const double mean = sum / kLags;
  if (best < 0.12 || best < 5.0 * mean) return;  // no clear peak (yet)
  // The direct path is the earliest strong arrival; reflections come later and may correlate as well.
  size_t first = 0;
  while (corr_avg_[first] < 0.8 * best) ++first;
  const double delay_ms = static_cast<double>(first) * 1000.0 / (kSampleRate / kDecim);
  estimated_delay_ms_ = static_cast<int>(delay_ms);
  // The engine's adaptive filter covers a short tail: the reference is fed early enough that the direct path
  // arrives kLeadTargetMs after it, and it is moved only when the echo leaves [lead, lead + kLeadSpanMs] (a
  // move makes the filter converge again).
  const double offset = delay_ms - lead_ms_;
  if (offset < 0 || offset > kLeadSpanMs) {
    lead_ms_ = std::clamp(delay_ms - kLeadTargetMs, 0.0, kMaxLeadMs);
    ++lead_changes_;
  }
}

bool EchoCanceller::echo_may_remain(const float* mic, const float* ref, const float* out) {
  bool unsafe = false;
  double ref_e = 0, mic_e = 0, out_e = 0;
  for (size_t i = 0; i < kFrameSamples; ++i)
    ref_e += double(ref[i]) * ref[i], mic_e += double(mic[i]) * mic[i], out_e += double(out[i]) * out[i];
  const bool playing = ref_e > 1e-5 * kFrameSamples;  // above -50 dBFS
  if (playing) echo_tail_frames_ = kEchoTailFrames;
  else if (echo_tail_frames_ > 0) --echo_tail_frames_;
  if (converged_) return false;
  if (playing) {
    conv_mic_.push_back(mic_e), conv_out_.push_back(out_e);
    if (conv_mic_.size() > kConvergeFrames) conv_mic_.pop_front(), conv_out_.pop_front();
    double m = 0, o = 0;
    for (size_t i = 0; i < conv_mic_.size(); ++i) m += conv_mic_[i], o += conv_out_[i];
    if (conv_mic_.size() == kConvergeFrames && m > 0 && 10.0 * std::log10(m / std::max(o, 1e-20)) >= kConvergedErleDb) {
      converged_ = true;
      conv_mic_.clear(), conv_out_.clear();
      ++convergences_;
      return false;
    }
  }
  // Until the filter has converged, what comes out while omnid's voice may still ring is its echo as much as
  // anyone's speech: the frame is marked so that the VAD does not take it for speech (omnid is half duplex for
  // that long). The samples themselves pass, so the VAD's noise model keeps seeing the real signal.
  if (echo_tail_frames_ > 0) {
    unsafe = true;
    ++gated_frames_;
  }
  return unsafe;
}

std::vector<float> EchoCanceller::process(const float* samples, size_t count, double capture_time_ms,
                                          std::vector<bool>* echo_frames, std::vector<bool>* audible_frames) {
  std::vector<float> out;
  if (count == 0) return out;
  const int64_t at = to_index(capture_time_ms);
  const int64_t expected = cap_next_ == INT64_MIN ? at : cap_next_ + static_cast<int64_t>(pending_.size());
  if (cap_next_ == INT64_MIN) {
    cap_next_ = at;
  } else if (!cap_clock_.continues(static_cast<double>(at - expected) * 1000.0 / kSampleRate)) {
    // The capture restarted (or lost samples): the held partial frame (under 10 ms) belongs to the old
    // timeline and is dropped rather than cancelled against the wrong reference, so that the output stays
    // whole frames.
    pending_.clear();
    cap_next_ = at;
    ++cap_resyncs_;
  }
  pending_.insert(pending_.end(), samples, samples + count);
  size_t used = 0;
  out.reserve(out.size() + pending_.size());
  while (pending_.size() - used >= kFrameSamples) {
    reference_frame(cap_next_ - to_index(lead_ms_), ref_frame_.data());
    engine_->process(ref_frame_.data(), pending_.data() + used, out_frame_.data());
    if (!std::all_of(out_frame_.begin(), out_frame_.end(), [](float x) { return std::isfinite(x); })) {
      // The engine's state went bad (WebRTC's canceller can, e.g. after digital silence): nothing non-finite
      // may reach the VAD or the model. The frame passes uncancelled and the engine starts afresh.
      std::copy(pending_.data() + used, pending_.data() + used + kFrameSamples, out_frame_.begin());
      engine_ = make_engine(params_);
      converged_ = false;
      ++engine_resets_;
    }
    reference_frame(cap_next_, now_frame_.data());
    const int changes = lead_changes_;
    follow_delay(pending_.data() + used, now_frame_.data());
    if (lead_changes_ != changes) converged_ = false;  // a new alignment: the filter starts over
    const bool unsafe = echo_may_remain(pending_.data() + used, ref_frame_.data(), out_frame_.data());
    if (echo_frames) echo_frames->push_back(unsafe);
    if (audible_frames) audible_frames->push_back(echo_tail_frames_ > 0);
    // The next frame needs nothing older than its own time less the longest lead.
    drop_reference_before(cap_next_ + static_cast<int64_t>(kFrameSamples) - to_index(kMaxLeadMs));
    out.insert(out.end(), out_frame_.begin(), out_frame_.end());
    used += kFrameSamples;
    cap_next_ += static_cast<int64_t>(kFrameSamples);
    ++frames_;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
  return out;
}

CancelledRecording cancel_recording(const std::vector<float>& mic, const std::vector<float>& ref,
                                    const EchoCancelParams& params, const VadParams& vad) {
  EchoCanceller canceller(params);
  CancelledRecording result;
  result.cleaned.reserve(mic.size() + EchoCanceller::kFrameSamples);
  constexpr size_t kChunk = EchoCanceller::kFrameSamples;
  std::vector<float> ref_chunk(kChunk), mic_chunk(kChunk);
  std::vector<bool> echo_frames, audible_frames;
  for (size_t at = 0; at < mic.size(); at += kChunk) {
    // The last chunk is padded with silence so that every microphone sample goes through the canceller.
    for (size_t i = 0; i < kChunk; ++i) {
      ref_chunk[i] = at + i < ref.size() ? ref[at + i] : 0.0f;
      mic_chunk[i] = at + i < mic.size() ? mic[at + i] : 0.0f;
    }
    const double t_ms = static_cast<double>(at) * 1000.0 / EchoCanceller::kSampleRate;
    canceller.push_reference(ref_chunk.data(), kChunk, t_ms);
    const std::vector<float> out = canceller.process(mic_chunk.data(), kChunk, t_ms, &echo_frames, &audible_frames);
    result.cleaned.insert(result.cleaned.end(), out.begin(), out.end());
    if (result.converged_ms < 0 && canceller.converged()) result.converged_ms = t_ms + 10.0;
  }
  result.gated_ms = static_cast<double>(canceller.gated_frames()) * 10.0;
  result.lead_ms = canceller.lead_ms();
  result.cleaned.resize(mic.size());
  result.estimated_delay_ms = canceller.estimated_delay_ms();
  result.vad_segments =
      vad_segments(result.cleaned, vad, &echo_frames, &result.vad_confirmed_ms, &audible_frames);
  return result;
}

std::vector<std::pair<double, double>> vad_segments(const std::vector<float>& samples, const VadParams& vad,
                                                    const std::vector<bool>* echo_frames,
                                                    std::vector<double>* confirmed_ms,
                                                    const std::vector<bool>* audible_frames) {
  std::vector<std::pair<double, double>> segments;
  VoiceDetector detector(vad.aggressiveness);
  size_t frame = 0;
  auto classify = [&](const float* f) {
    const bool voiced = detector.is_voiced(f);  // always run: the detector adapts to what it hears
    const bool echo = echo_frames && frame < echo_frames->size() && (*echo_frames)[frame];
    ++frame;
    return voiced && !echo;
  };
  Endpointer* self = nullptr;
  Endpointer endpointer(vad, classify,
                        {[&](double) {
                           if (confirmed_ms) confirmed_ms->push_back(self->stream_ms());
                         },
                         [&](Utterance&& u) { segments.emplace_back(u.start_ms, u.end_ms); },
                         {},
                         {}});
  self = &endpointer;
  if (!audible_frames) {
    endpointer.push(samples.data(), samples.size());
  } else {
    for (size_t i = 0; i * kVadFrameSamples < samples.size(); ++i) {
      endpointer.set_echo_audible(i < audible_frames->size() && (*audible_frames)[i]);
      endpointer.push(samples.data() + i * kVadFrameSamples, std::min(kVadFrameSamples, samples.size() - i * kVadFrameSamples));
    }
    endpointer.set_echo_audible(false);
  }
  if (endpointer.in_speech()) {
    // Close the open utterance with silence; its end is the end of the recording at most.
    const double end_ms = static_cast<double>(samples.size()) * 1000.0 / kVadSampleRate;
    const std::vector<float> silence(static_cast<size_t>(vad.end_silence_ms + vad.window_ms + 10) *
                                     kVadSampleRate / 1000, 0.0f);
    endpointer.push(silence.data(), silence.size());
    if (!segments.empty()) segments.back().second = std::min(segments.back().second, end_ms);
  }
  return segments;
}

double erle_db(const float* mic, const float* out, size_t begin, size_t end) {
  double in_energy = 0, out_energy = 0;
  for (size_t i = begin; i < end; ++i) {
    in_energy += double(mic[i]) * mic[i];
    out_energy += double(out[i]) * out[i];
  }
  if (in_energy <= 0) return 0;
  return 10.0 * std::log10(in_energy / std::max(out_energy, 1e-20));
}

}  // namespace omni::audio
