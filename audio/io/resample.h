// Sample-rate conversion with libsoxr (SOXR_HQ: 20-bit quality, linear phase), float samples.
#pragma once
#include <cstddef>
#include <vector>

namespace omni::audio {

// Converts a whole mono signal. The output has round(n * out_rate / in_rate) samples.
// Throws AudioError on invalid rates.
std::vector<float> resample(const float* in, size_t n, int in_rate, int out_rate);

// Converts a stream chunk by chunk (capture and playback paths). `channels` interleaved.
class StreamResampler {
 public:
  StreamResampler(int in_rate, int out_rate, int channels = 1);
  ~StreamResampler();
  StreamResampler(const StreamResampler&) = delete;
  StreamResampler& operator=(const StreamResampler&) = delete;

  // Feeds `frames` frames and returns whatever output is ready (may be empty: the filter delays).
  std::vector<float> process(const float* in, size_t frames);
  // Ends the stream: returns the delayed tail. The resampler can then be reused from scratch.
  std::vector<float> flush();
  int in_rate() const { return in_rate_; }
  int out_rate() const { return out_rate_; }

 private:
  void create();
  void* soxr_ = nullptr;
  int in_rate_, out_rate_, channels_;
};

}  // namespace omni::audio
