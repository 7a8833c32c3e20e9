// libFuzzer target: WAV decoding (omni::audio::decode_wav, audio/io/wav.cpp).
// Properties: AudioError or a decode whose sample count is a whole number of frames, with a positive
// channel count and sample rate, and (for PCM) every sample inside [-1, 1].
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "audio/io/wav.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace omni::audio;
  try {
    WavData w = decode_wav(data, size, "<fuzz>");
    if (w.channels <= 0 || w.sample_rate <= 0) std::abort();
    if (w.interleaved.size() % size_t(w.channels) != 0) std::abort();
    if (w.interleaved.size() * size_t(w.bits_per_sample / 8) > size) std::abort();
    if (w.encoding == SampleEncoding::Pcm)
      for (float s : w.interleaved)
        if (!(s >= -1.0f && s <= 1.0f)) std::abort();
    std::vector<float> mono = downmix_to_mono(w);
    if (mono.size() != w.frames()) std::abort();
  } catch (const AudioError&) {
  }
  return 0;
}
