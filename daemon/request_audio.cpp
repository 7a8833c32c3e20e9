#include "daemon/request_audio.h"

#include <cmath>

#include "audio/io/question_limits.h"

namespace omnid {
namespace {
const char* const kOrigin = "the request's WAV frame";
}

bool check_request_wav(const std::string& bytes, omni::audio::WavInfo& info, std::string& error) {
  try {
    info = omni::audio::probe_wav(bytes.data(), bytes.size(), kOrigin);
    omni::audio::check_clip(info, omni::audio::question_clip_limits(), kOrigin);
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
  if (std::llround(double(info.frames) * 16000.0 / info.sample_rate) < 1) {
    error = std::string("WAV ") + kOrigin + ": " + std::to_string(info.frames) + " frames at " +
            std::to_string(info.sample_rate) + " Hz make no sample at 16 kHz";
    return false;
  }
  return true;
}

std::vector<float> convert_request_wav(const std::string& bytes) {
  std::vector<float> audio_16k = omni::audio::load_wav_mono(bytes.data(), bytes.size(), 16000, kOrigin,
                                                            omni::audio::question_clip_limits());
  if (audio_16k.empty()) throw omni::audio::AudioError("the WAV frame holds no samples");
  return audio_16k;
}

bool decode_request_wav(const std::string& bytes, std::vector<float>& audio_16k, std::string& error) {
  try {
    audio_16k = convert_request_wav(bytes);
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
  return true;
}

}  // namespace omnid
