#include "daemon/request_audio.h"

#include "audio/io/wav.h"

namespace omnid {

bool decode_request_wav(const std::string& bytes, std::vector<float>& audio_16k, std::string& error) {
  try {
    audio_16k = omni::audio::load_wav_mono(bytes.data(), bytes.size(), 16000, "the request's WAV frame");
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
  if (audio_16k.empty()) {
    error = "the WAV frame holds no samples";
    return false;
  }
  return true;
}

}  // namespace omnid
