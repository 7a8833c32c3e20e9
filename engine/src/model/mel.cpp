#include "model/mel.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "io/json_file.h"
#include "omni/errors.h"
#include "omni/limits.h"

namespace omni {
namespace {

// FFTW's planner is not thread-safe; executing a finished plan on new arrays is.
std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}

double hz_to_mel_slaney(double hz) {
  const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / std::log(6.4);
  if (hz >= min_log_hz) return min_log_mel + std::log(hz / min_log_hz) * logstep;
  return 3.0 * hz / 200.0;
}

double mel_to_hz_slaney(double mel) {
  const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = std::log(6.4) / 27.0;
  if (mel >= min_log_mel) return min_log_hz * std::exp(logstep * (mel - min_log_mel));
  return 200.0 * mel / 3.0;
}

// transformers audio_utils.mel_filter_bank(n_freq, n_mels, 0, 8000, sr, norm="slaney",
// mel_scale="slaney"): triangles between mel-spaced centre frequencies over the linear FFT
// bin frequencies, each scaled by 2 / (right edge - left edge).
std::vector<float> slaney_mel_filters(int n_freq, int n_mels, double fmin, double fmax, int sampling_rate) {
  const double mel_min = hz_to_mel_slaney(fmin), mel_max = hz_to_mel_slaney(fmax);
  std::vector<double> edges(size_t(n_mels) + 2);
  for (size_t i = 0; i < edges.size(); ++i) {
    // np.linspace: start + i * step, with the last point exactly `stop`.
    const double step = (mel_max - mel_min) / double(n_mels + 1);
    const double mel = i + 1 == edges.size() ? mel_max : double(i) * step + mel_min;
    edges[i] = mel_to_hz_slaney(mel);
  }
  std::vector<float> out(size_t(n_freq) * size_t(n_mels));
  const double nyquist = double(sampling_rate / 2);  // HF: sampling_rate // 2
  for (int f = 0; f < n_freq; ++f) {
    const double hz = f + 1 == n_freq ? nyquist : double(f) * (nyquist / double(n_freq - 1));
    for (int m = 0; m < n_mels; ++m) {
      const double down = -(edges[size_t(m)] - hz) / (edges[size_t(m) + 1] - edges[size_t(m)]);
      const double up = (edges[size_t(m) + 2] - hz) / (edges[size_t(m) + 2] - edges[size_t(m) + 1]);
      const double tri = std::max(0.0, std::min(down, up));
      const double enorm = 2.0 / (edges[size_t(m) + 2] - edges[size_t(m)]);
      out[size_t(f) * size_t(n_mels) + size_t(m)] = float(tri * enorm);
    }
  }
  return out;
}

// `max` keeps what the front end allocates from these (the filter bank is (n_fft/2+1) x feature_size
// floats) small: the release uses 128 bins, n_fft 400, hop 160 at 16 kHz.
int positive_int(const nlohmann::json& j, const char* key, const std::string& path, long long max) {
  if (!j.contains(key)) throw ConfigError(path + ": missing key \"" + key + "\"");
  const auto& v = j.at(key);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<unsigned long long>() > (1ull << 62)) ||
      v.get<long long>() <= 0 || v.get<long long>() > max)
    throw ConfigError(path + ": \"" + key + "\" must be a positive integer of at most " + std::to_string(max) +
                      " (got " + v.dump() + ")");
  return v.get<int>();
}

}  // namespace

MelConfig MelConfig::load(const std::string& path) {
  const nlohmann::json j = read_json_object(path, "the preprocessor config");
  MelConfig c;
  c.feature_size = positive_int(j, "feature_size", path, 1024);
  c.sampling_rate = positive_int(j, "sampling_rate", path, limits::kMaxInputSampleRate);
  c.hop_length = positive_int(j, "hop_length", path, 1 << 13);
  c.n_fft = positive_int(j, "n_fft", path, 1 << 13);
  if (j.contains("dither")) {
    const auto& d = j.at("dither");
    if (!d.is_number()) throw ConfigError(path + ": \"dither\" must be a number");
    if (d.get<double>() != 0.0)
      throw ConfigError(path + ": \"dither\" is " + d.dump() + "; only 0.0 (deterministic features) is supported");
  }
  if (c.n_fft % 2 != 0) throw ConfigError(path + ": \"n_fft\" must be even");
  if (c.sampling_rate < 16000)
    throw ConfigError(path + ": \"sampling_rate\" " + std::to_string(c.sampling_rate) +
                      " is below the 16000 needed for the 0..8000 Hz mel bank");
  return c;
}

struct MelFrontend::Plan {
  fftw_plan plan = nullptr;
};

MelFrontend::MelFrontend(const MelConfig& cfg) : cfg_(cfg), plan_(std::make_unique<Plan>()) {
  if (cfg.n_fft <= 0 || cfg.n_fft % 2 || cfg.hop_length <= 0 || cfg.feature_size <= 0 || cfg.sampling_rate < 16000)
    throw ConfigError("mel front end: invalid configuration (n_fft " + std::to_string(cfg.n_fft) + ", hop " +
                      std::to_string(cfg.hop_length) + ", bins " + std::to_string(cfg.feature_size) + ", rate " +
                      std::to_string(cfg.sampling_rate) + ")");
  const int n = cfg.n_fft;
  window_.resize(size_t(n));
  for (int i = 0; i < n; ++i)  // torch.hann_window(n), periodic
    window_[size_t(i)] = float(0.5 - 0.5 * std::cos(2.0 * M_PI * double(i) / double(n)));
  filters_ = slaney_mel_filters(n / 2 + 1, cfg.feature_size, 0.0, 8000.0, cfg.sampling_rate);

  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  double* in = fftw_alloc_real(size_t(n));
  fftw_complex* out = fftw_alloc_complex(size_t(n / 2 + 1));
  plan_->plan = fftw_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE);
  fftw_free(in);
  fftw_free(out);
  if (!plan_->plan) throw Error("mel front end: FFTW could not plan a " + std::to_string(n) + "-point FFT");
}

MelFrontend::~MelFrontend() {
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  if (plan_ && plan_->plan) fftw_destroy_plan(plan_->plan);
}

int MelFrontend::frame_count(size_t num_samples) const { return int(num_samples / size_t(cfg_.hop_length)); }

size_t MelFrontend::min_samples() const { return size_t(std::max(cfg_.n_fft / 2 + 1, cfg_.hop_length)); }

MelFeatures MelFrontend::compute(const float* wave, size_t num_samples) const {
  if (num_samples < min_samples())
    throw Error("mel front end: the clip has " + std::to_string(num_samples) + " samples; at least " +
                std::to_string(min_samples()) + " (" + std::to_string(1000.0 * double(min_samples()) / cfg_.sampling_rate) +
                " ms) are needed");
  for (size_t i = 0; i < num_samples; ++i)
    if (!std::isfinite(wave[i]))
      throw Error("mel front end: sample " + std::to_string(i) + " of the clip is not a finite number");

  const int n_fft = cfg_.n_fft, half = n_fft / 2, n_freq = half + 1, hop = cfg_.hop_length;
  const int bins = cfg_.feature_size;
  const int frames = frame_count(num_samples);  // torch.stft gives frames+1; HF drops the last
  const int64_t len = int64_t(num_samples);

  // Each mel filter is non-zero over a contiguous range of FFT bins; skip the zeros.
  std::vector<int> lo(size_t(bins), n_freq), hi(size_t(bins), -1);
  for (int f = 0; f < n_freq; ++f)
    for (int m = 0; m < bins; ++m)
      if (filters_[size_t(f) * size_t(bins) + size_t(m)] != 0.f) {
        lo[size_t(m)] = std::min(lo[size_t(m)], f);
        hi[size_t(m)] = std::max(hi[size_t(m)], f);
      }

  MelFeatures out;
  out.bins = bins;
  out.frames = frames;
  out.data.resize(size_t(bins) * size_t(frames));
  double* in = fftw_alloc_real(size_t(n_fft));
  fftw_complex* spec = fftw_alloc_complex(size_t(n_freq));
  std::vector<double> power(static_cast<size_t>(n_freq));
  float max_log = -INFINITY;
  for (int t = 0; t < frames; ++t) {
    // Sample index i of the reflect-padded signal (pad n_fft/2 on both sides, edge excluded).
    for (int k = 0; k < n_fft; ++k) {
      int64_t i = int64_t(t) * hop + k - half;
      if (i < 0) i = -i;
      else if (i >= len) i = 2 * (len - 1) - i;
      in[k] = double(wave[i]) * double(window_[size_t(k)]);
    }
    fftw_execute_dft_r2c(plan_->plan, in, spec);
    for (int f = 0; f < n_freq; ++f) power[size_t(f)] = spec[f][0] * spec[f][0] + spec[f][1] * spec[f][1];
    for (int m = 0; m < bins; ++m) {
      double acc = 0.0;
      for (int f = lo[size_t(m)]; f <= hi[size_t(m)]; ++f)
        acc += double(filters_[size_t(f) * size_t(bins) + size_t(m)]) * power[size_t(f)];
      const float v = std::log10(std::max(float(acc), 1e-10f));
      out.data[size_t(m) * size_t(frames) + size_t(t)] = v;
      max_log = std::max(max_log, v);
    }
  }
  fftw_free(in);
  fftw_free(spec);
  const float floor = max_log - 8.0f;
  for (float& v : out.data) v = (std::max(v, floor) + 4.0f) / 4.0f;
  return out;
}

}  // namespace omni
