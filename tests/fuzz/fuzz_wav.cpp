// libFuzzer target: WAV decoding (omni::audio::decode_wav, audio/io/wav.cpp) and the model's input path
// (probe_wav + load_wav_mono under the bounds of a spoken question, with resampling to 16 kHz).
// Properties: AudioError or a decode whose sample count is a whole number of frames, with a positive
// channel count and sample rate, and (for PCM) every sample inside [-1, 1]; probe_wav agrees with the
// decode; the model path refuses exactly the clips outside the bounds and otherwise returns
// round(frames * 16000 / rate) samples.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "audio/io/question_limits.h"
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
    const WavInfo info = probe_wav(data, size, "<fuzz>");
    if (info.frames != w.frames() || info.sample_rate != w.sample_rate || info.channels != w.channels) std::abort();
    const ClipLimits limits = question_clip_limits();
    bool within = true;
    try {
      check_clip(info, limits, "<fuzz>");
    } catch (const AudioError&) {
      within = false;
    }
    try {
      const std::vector<float> in16k = load_wav_mono(data, size, 16000, "<fuzz>", limits);
      if (!within) std::abort();
      if (in16k.size() != size_t(std::llround(double(info.frames) * 16000.0 / info.sample_rate))) std::abort();
    } catch (const AudioError&) {
      if (within) std::abort();
    }
  } catch (const AudioError&) {
  }
  return 0;
}
