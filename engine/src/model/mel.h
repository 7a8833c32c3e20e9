// MelFrontend: the Whisper log-mel spectrogram exactly as transformers' WhisperFeatureExtractor
// computes it for Qwen3-Omni (docs/model.md §5.1): periodic Hann window, centred STFT with reflect
// padding, power spectrum without the last frame, Slaney mel filter bank over 0..8000 Hz,
// log10 clamped at 1e-10, per-clip floor at max - 8, then (x + 4) / 4.
// One clip per call (single-clip extraction; batching changes the last frame, docs/model.md §5.1).
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace omni {

struct MelConfig {
  int feature_size = 128;
  int sampling_rate = 16000;
  int hop_length = 160;
  int n_fft = 400;

  // Reads <path> (preprocessor_config.json). dither must be 0 (deterministic features);
  // throws ConfigError naming the file and key otherwise.
  static MelConfig load(const std::string& path);
};

// Log-mel features of one clip, [bins, frames] row-major (HF's input_features[0]).
struct MelFeatures {
  int bins = 0;
  int frames = 0;
  std::vector<float> data;
  float at(int bin, int frame) const { return data[size_t(bin) * size_t(frames) + size_t(frame)]; }
};

class MelFrontend {
 public:
  explicit MelFrontend(const MelConfig& cfg = MelConfig());
  ~MelFrontend();
  MelFrontend(const MelFrontend&) = delete;
  MelFrontend& operator=(const MelFrontend&) = delete;

  const MelConfig& config() const { return cfg_; }
  // Frames the features of `num_samples` samples will have (samples / hop).
  int frame_count(size_t num_samples) const;
  // Shortest clip compute() accepts (reflect padding needs more than n_fft/2 samples).
  size_t min_samples() const;
  // `wave`: mono float at config().sampling_rate. Throws omni::Error for a too-short clip or
  // non-finite samples. Thread-safe.
  MelFeatures compute(const float* wave, size_t num_samples) const;

  // The filter bank [n_fft/2+1, feature_size] as HF's mel_filter_bank(norm="slaney",
  // mel_scale="slaney") builds it (float64, then stored as float32).
  const std::vector<float>& filters() const { return filters_; }

 private:
  MelConfig cfg_;
  std::vector<float> window_;   // periodic Hann, n_fft
  std::vector<float> filters_;  // [n_freq, feature_size]
  struct Plan;
  std::unique_ptr<Plan> plan_;
};

}  // namespace omni
