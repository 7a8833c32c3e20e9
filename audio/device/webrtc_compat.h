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

// The library generation this build uses (0 or 1), for logs.
constexpr int kApiGeneration = OMNI_WEBRTC_APM_MAJOR;

}  // namespace omni::audio::webrtc_compat
