# WebRTC audio processing (the VAD, the echo canceller): either API generation (audio/device/webrtc_compat.h).
#   webrtc-audio-processing-1  1.x (Debian 13, Ubuntu 24.04)   -> OMNI_WEBRTC_APM_MAJOR=1
#   webrtc-audio-processing    0.3 (Debian 12)                 -> OMNI_WEBRTC_APM_MAJOR=0
# Debian names the -dev package libwebrtc-audio-processing-dev in both. Sets OMNI_WEBRTC_FOUND and the target
# omni_webrtc_apm (the library, its include path and OMNI_WEBRTC_APM_MAJOR); OMNI_WEBRTC_VAD_LINKS says whether
# WebRTC's VAD functions link from it.
pkg_check_modules(WEBRTC_APM1 IMPORTED_TARGET webrtc-audio-processing-1)
if(WEBRTC_APM1_FOUND)
  set(OMNI_WEBRTC_FOUND ON)
  set(omni_webrtc_major 1)
  set(omni_webrtc_pkg PkgConfig::WEBRTC_APM1)
  set(omni_webrtc_version ${WEBRTC_APM1_VERSION})
else()
  pkg_check_modules(WEBRTC_APM0 IMPORTED_TARGET webrtc-audio-processing)
  if(WEBRTC_APM0_FOUND)
    set(OMNI_WEBRTC_FOUND ON)
    set(omni_webrtc_major 0)
    set(omni_webrtc_pkg PkgConfig::WEBRTC_APM0)
    set(omni_webrtc_version ${WEBRTC_APM0_VERSION})
  else()
    set(OMNI_WEBRTC_FOUND OFF)
  endif()
endif()

set(OMNI_WEBRTC_VAD_LINKS OFF)
if(OMNI_WEBRTC_FOUND)
  add_library(omni_webrtc_apm INTERFACE)
  target_link_libraries(omni_webrtc_apm INTERFACE ${omni_webrtc_pkg})
  target_compile_definitions(omni_webrtc_apm INTERFACE OMNI_WEBRTC_APM_MAJOR=${omni_webrtc_major})
  # The VAD's C API is exported by both generations but declared by neither's headers: make sure it links, and
  # that the compatibility header compiles against this generation.
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_LIBRARIES ${omni_webrtc_pkg})
  set(CMAKE_REQUIRED_INCLUDES ${CMAKE_SOURCE_DIR})
  set(CMAKE_REQUIRED_DEFINITIONS -DOMNI_WEBRTC_APM_MAJOR=${omni_webrtc_major})
  check_cxx_source_compiles([[
#include "audio/device/webrtc_compat.h"
int main() {
  VadInst* vad = WebRtcVad_Create();
  int16_t frame[160] = {};
  int rc = vad ? WebRtcVad_Init(vad) + WebRtcVad_set_mode(vad, 2) + WebRtcVad_Process(vad, 16000, frame, 160) : -1;
  WebRtcVad_Free(vad);
  return rc == 0 && omni::audio::webrtc_compat::create_audio_processing() ? 0 : 1;
}]] OMNI_WEBRTC_VAD_LINKS_${omni_webrtc_major})
  unset(CMAKE_REQUIRED_LIBRARIES)
  unset(CMAKE_REQUIRED_INCLUDES)
  unset(CMAKE_REQUIRED_DEFINITIONS)
  set(OMNI_WEBRTC_VAD_LINKS ${OMNI_WEBRTC_VAD_LINKS_${omni_webrtc_major}})
  message(STATUS "omnid: webrtc-audio-processing ${omni_webrtc_version} (API generation ${omni_webrtc_major}), "
                 "VAD links: ${OMNI_WEBRTC_VAD_LINKS}")
endif()
