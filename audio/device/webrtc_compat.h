// WebRTC audio processing across the two API generations that Debian and Ubuntu ship, for the VAD and the echo
// canceller. CMake (cmake/webrtc_audio_processing.cmake) finds one and defines OMNI_WEBRTC_APM_MAJOR:
//   0  webrtc-audio-processing 0.3 (Debian 12): pkg-config `webrtc-audio-processing`, headers under webrtc/,
//      AudioProcessing::Create(), the VoiceDetection component;
//   1  webrtc-audio-processing 1.x (Debian 13, Ubuntu 24.04): pkg-config `webrtc-audio-processing-1`, headers
//      under modules/, AudioProcessingBuilder, AudioProcessing::Config, no VoiceDetection component.
// Both build WebRTC's voice activity detector (common_audio/vad) into the library and export its C API, with the
// same functions and modes; neither -dev package installs its header, so it is declared below as WebRTC defines
// it, and CMake checks at configure time that it links (the daemon does not build without it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#if OMNI_WEBRTC_APM_MAJOR >= 1
#include <modules/audio_processing/include/audio_processing.h>
#else
#include <webrtc/modules/audio_processing/include/audio_processing.h>
#endif

extern "C" {
// common_audio/vad/include/webrtc_vad.h
typedef struct WebRtcVadInst VadInst;
VadInst* WebRtcVad_Create(void);                       // nullptr when out of memory
void WebRtcVad_Free(VadInst* handle);
int WebRtcVad_Init(VadInst* handle);                   // 0 or -1
int WebRtcVad_set_mode(VadInst* handle, int mode);     // 0 (least aggressive) .. 3 (most); 0 or -1
// 10, 20 or 30 ms of 16-bit audio at 8, 16, 32 or 48 kHz: 1 voiced, 0 not, -1 bad arguments.
int WebRtcVad_Process(VadInst* handle, int fs, const int16_t* audio_frame, size_t frame_length);
}

namespace omni::audio::webrtc_compat {

// A new audio processing module with the library's defaults; nullptr when the library cannot make one. Both
// generations give the caller the only reference (1.x's ref-counted object is deleted through its virtual
// destructor like 0.3's).
inline std::unique_ptr<webrtc::AudioProcessing> create_audio_processing() {
#if OMNI_WEBRTC_APM_MAJOR >= 1
  return std::unique_ptr<webrtc::AudioProcessing>(webrtc::AudioProcessingBuilder().Create());
#else
  return std::unique_ptr<webrtc::AudioProcessing>(webrtc::AudioProcessing::Create());
#endif
}

// The echo canceller of either generation, driven one aligned 10 ms mono frame at a time at `kEchoRate`:
//   0.3  the AEC (AEC2) with the extended filter and delay-agnostic mode, its non-linear suppressor at the
//        requested level, the high-pass filter, optionally noise suppression;
//   1.x  AEC3 (Config::echo_canceller, desktop mode), the high-pass filter, optionally noise suppression. AEC3
//        has no suppression levels in AudioProcessing::Config and the -dev package does not install the
//        factory that would take an EchoCanceller3Config, so `suppression` has no effect there
//        (suppression_applies() says so, for logs).
// The caller aligns the reference itself (EchoCanceller's lead), so the stream delay is set to 0 for both.
struct EchoSettings {
  enum class Suppression { low, moderate, high };
  Suppression suppression = Suppression::moderate;
  bool noise_suppression = false;
};

class EchoProcessing {
 public:
  static constexpr int kEchoRate = 16000;
  static constexpr size_t kEchoFrame = 160;

  // Throws std::runtime_error naming what the library refused.
  explicit EchoProcessing(const EchoSettings& s) {
#if OMNI_WEBRTC_APM_MAJOR >= 1
    apm_ = create_audio_processing();
    if (!apm_) throw std::runtime_error("cannot create the WebRTC audio processing module for echo cancellation");
    webrtc::AudioProcessing::Config config;
    config.echo_canceller.enabled = true;
    config.echo_canceller.mobile_mode = false;
    config.high_pass_filter.enabled = true;
    config.noise_suppression.enabled = s.noise_suppression;
    config.noise_suppression.level = webrtc::AudioProcessing::Config::NoiseSuppression::kModerate;
    apm_->ApplyConfig(config);
#else
    webrtc::Config config;
    // The extended filter covers a longer echo tail (reverberant rooms); delay-agnostic mode estimates the
    // acoustic delay itself instead of trusting the reported one.
    config.Set<webrtc::ExtendedFilter>(new webrtc::ExtendedFilter(true));
    config.Set<webrtc::DelayAgnostic>(new webrtc::DelayAgnostic(true));
    apm_.reset(webrtc::AudioProcessing::Create(config));
    if (!apm_) throw std::runtime_error("cannot create the WebRTC audio processing module for echo cancellation");
    apm_->SetExtraOptions(config);
    webrtc::EchoCancellation* aec = apm_->echo_cancellation();
    const auto level = s.suppression == EchoSettings::Suppression::low        ? webrtc::EchoCancellation::kLowSuppression
                       : s.suppression == EchoSettings::Suppression::moderate ? webrtc::EchoCancellation::kModerateSuppression
                                                                               : webrtc::EchoCancellation::kHighSuppression;
    if (aec->enable_drift_compensation(false) != 0 || aec->set_suppression_level(level) != 0 ||
        aec->enable_delay_logging(true) != 0 || aec->Enable(true) != 0)
      throw std::runtime_error("cannot configure the WebRTC echo canceller");
    if (apm_->high_pass_filter()->Enable(true) != 0)
      throw std::runtime_error("cannot enable the WebRTC high-pass filter");
    if (s.noise_suppression &&
        (apm_->noise_suppression()->set_level(webrtc::NoiseSuppression::kModerate) != 0 ||
         apm_->noise_suppression()->Enable(true) != 0))
      throw std::runtime_error("cannot enable the WebRTC noise suppressor");
#endif
  }

  // `ref` was played while `mic` was captured (kEchoFrame samples each, [-1, 1]); `out` gets the cleaned frame.
  void process(const float* ref, const float* mic, float* out) {
    const float* far[1] = {ref};
    const float* src[1] = {mic};
    float* dst[1] = {out};
#if OMNI_WEBRTC_APM_MAJOR >= 1
    const webrtc::StreamConfig mono(kEchoRate, 1);
    float* far_out[1] = {far_copy_};  // ProcessReverseStream writes the render frame back (unchanged here)
    int rc = apm_->ProcessReverseStream(far, mono, mono, far_out);
    if (rc != 0) throw std::runtime_error("WebRTC echo canceller rejected a reference frame (error " + std::to_string(rc) + ")");
    apm_->set_stream_delay_ms(0);
    rc = apm_->ProcessStream(src, mono, mono, dst);
#else
    int rc = apm_->AnalyzeReverseStream(far, kEchoFrame, kEchoRate, webrtc::AudioProcessing::kMono);
    if (rc != 0) throw std::runtime_error("WebRTC echo canceller rejected a reference frame (error " + std::to_string(rc) + ")");
    apm_->set_stream_delay_ms(0);
    rc = apm_->ProcessStream(src, kEchoFrame, kEchoRate, webrtc::AudioProcessing::kMono, kEchoRate,
                             webrtc::AudioProcessing::kMono, dst);
#endif
    // kBadStreamParameterWarning (-13) reports a delay it clamped; the frame is processed.
    if (rc != 0 && rc != webrtc::AudioProcessing::kBadStreamParameterWarning)
      throw std::runtime_error("WebRTC echo canceller failed on a frame (error " + std::to_string(rc) + ")");
  }

  // The delay the library itself measured between reference and echo (ms); -1 when it has none.
  int delay_ms() {
#if OMNI_WEBRTC_APM_MAJOR >= 1
    const webrtc::AudioProcessingStats stats = apm_->GetStatistics();
    return stats.delay_ms ? static_cast<int>(*stats.delay_ms) : -1;
#else
    int median = -1, std_dev = -1;
    float poor = 0;
    if (apm_->echo_cancellation()->GetDelayMetrics(&median, &std_dev, &poor) != 0) return -1;
    return median;
#endif
  }

  static constexpr bool suppression_applies() { return OMNI_WEBRTC_APM_MAJOR == 0; }

 private:
  std::unique_ptr<webrtc::AudioProcessing> apm_;
#if OMNI_WEBRTC_APM_MAJOR >= 1
  float far_copy_[kEchoFrame] = {};
#endif
};

// The library generation this build uses (0 or 1), for logs.
constexpr int kApiGeneration = OMNI_WEBRTC_APM_MAJOR;

}  // namespace omni::audio::webrtc_compat
