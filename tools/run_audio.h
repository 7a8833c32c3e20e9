// omni-run's audio files: WAV input of any rate/width/channels resampled to 16 kHz mono, and
// the 24 kHz mono WAV written as speech arrives.
#pragma once
#include <string>
#include <vector>

#include "audio/io/question_limits.h"
#include "audio/io/wav.h"

// Held to the bounds of a spoken question (duration, rate, channels) before anything is decoded.
inline std::vector<float> read_audio_16k(const std::string& path) {
  return omni::audio::load_wav_mono(path, 16000, omni::audio::question_clip_limits());
}

class SpeechWriter {
 public:
  void open(const std::string& path, int rate) { wav_.open(path, rate, omni::audio::WavSampleFormat::Float32); }
  void write(const float* s, size_t n) { wav_.append(s, n); }
  void close() { wav_.close(); }

 private:
  omni::audio::WavWriter wav_;
};
