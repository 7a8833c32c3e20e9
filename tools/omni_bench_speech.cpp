#include "omni_bench_speech.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "model/audio_encoder.h"
#include "model/code2wav.h"
#include "model/mel.h"
#include "synthetic_weights.h"

namespace omni {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double median3(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

EncoderTiming bench_audio_encoder(Backend& be, const AudioEncoderConfig& cfg, double seconds) {
  MelFrontend mel;
  const size_t samples = size_t(seconds * mel.config().sampling_rate);
  std::vector<float> wave(samples);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> amp(-0.3f, 0.3f);
  for (float& s : wave) s = amp(rng);
  AudioEncoder enc(be, cfg, synthetic_audio_encoder_weights(be, cfg, 41));
  EncoderTiming t;
  std::vector<double> mel_ms, enc_ms;
  MelFeatures f;
  for (int r = 0; r < 4; ++r) {  // the first is a warm-up (plans, cuBLAS handles)
    auto t0 = Clock::now();
    f = mel.compute(wave.data(), wave.size());
    const double m = ms_since(t0);
    Tensor out = be.alloc({enc.token_count(f.frames), int64_t(cfg.output_dim)});
    be.synchronize();
    t0 = Clock::now();
    enc.encode(f, out);
    be.synchronize();
    if (r > 0) {
      mel_ms.push_back(m);
      enc_ms.push_back(ms_since(t0));
    }
  }
  t.mel_frames = f.frames;
  t.tokens = enc.token_count(f.frames);
  t.mel_ms = median3(mel_ms);
  t.encode_ms = median3(enc_ms);
  return t;
}

Code2WavTiming bench_code2wav(Backend& be, const Code2WavConfig& cfg, int push_frames, int frames) {
  constexpr int kChunk = 300, kLeftContext = 25;  // as speech.cpp streams (HF chunked_decode)
  Code2Wav model(be, cfg, 31);
  Code2WavDecoder dec(model, push_frames, kChunk + kLeftContext);
  Code2WavStream stream(dec, kChunk, kLeftContext, push_frames);
  const int Q = cfg.num_quantizers;
  std::mt19937 rng(9);
  std::vector<int32_t> codes(size_t(frames) * Q);
  for (int32_t& c : codes) c = int32_t(rng() % uint32_t(cfg.codebook_size));
  std::vector<float> wav;
  for (int f = 0; f < std::min(frames, 2 * push_frames + 2); ++f) stream.add_frame(&codes[size_t(f) * Q], wav);
  stream.flush(wav);  // warm-up, then a fresh stream
  stream.reset();
  wav.clear();
  Code2WavTiming t;
  t.push_frames = push_frames;
  t.frames = frames;
  const auto t0 = Clock::now();
  for (int f = 0; f < frames; ++f) {
    stream.add_frame(&codes[size_t(f) * Q], wav);
    if (t.first_audio_ms == 0 && !wav.empty()) t.first_audio_ms = ms_since(t0);
  }
  stream.flush(wav);
  t.rtf = ms_since(t0) / (frames * 80.0);
  return t;
}

}  // namespace omni
