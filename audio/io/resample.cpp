#include "audio/io/resample.h"

#include <soxr.h>

#include <cmath>
#include <string>

#include "audio/io/wav.h"

namespace omni::audio {
namespace {

void check_rates(int in_rate, int out_rate, int channels) {
  if (in_rate <= 0 || out_rate <= 0)
    throw AudioError("resample: sample rates must be positive (got " + std::to_string(in_rate) + " -> " +
                     std::to_string(out_rate) + ")");
  if (channels <= 0) throw AudioError("resample: channel count must be positive");
}

// Runs soxr until it has consumed `frames` input frames (in == nullptr: flush) and appends the output.
void drain(soxr_t s, const float* in, size_t frames, int channels, double ratio, std::vector<float>& out) {
  const size_t chunk = size_t(std::ceil(double(frames) * ratio)) + 1024;
  std::vector<float> buf(chunk * size_t(channels));
  size_t consumed = 0;
  for (;;) {
    size_t idone = 0, odone = 0;
    const float* src = in ? in + consumed * size_t(channels) : nullptr;
    soxr_error_t err = soxr_process(s, src, in ? frames - consumed : 0, &idone, buf.data(), chunk, &odone);
    if (err) throw AudioError(std::string("resample: libsoxr failed: ") + err);
    consumed += idone;
    out.insert(out.end(), buf.begin(), buf.begin() + long(odone * size_t(channels)));
    if (in ? (consumed >= frames && odone < chunk) : odone == 0) break;
  }
}

}  // namespace

std::vector<float> resample(const float* in, size_t n, int in_rate, int out_rate) {
  check_rates(in_rate, out_rate, 1);
  if (in_rate == out_rate || n == 0) return std::vector<float>(in, in + n);
  StreamResampler r(in_rate, out_rate, 1);
  std::vector<float> out = r.process(in, n);
  std::vector<float> tail = r.flush();
  out.insert(out.end(), tail.begin(), tail.end());
  // soxr's total output can differ from the ideal length by a sample; pin it so that the
  // duration (and with it the audio token count) is the input's.
  const size_t want = size_t(std::llround(double(n) * out_rate / in_rate));
  out.resize(want, 0.f);
  return out;
}

StreamResampler::StreamResampler(int in_rate, int out_rate, int channels)
    : in_rate_(in_rate), out_rate_(out_rate), channels_(channels) {
  check_rates(in_rate, out_rate, channels);
  create();
}

StreamResampler::~StreamResampler() {
  if (soxr_) soxr_delete(static_cast<soxr_t>(soxr_));
}

void StreamResampler::create() {
  soxr_error_t err = nullptr;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  const soxr_runtime_spec_t rt = soxr_runtime_spec(1);  // one thread: deterministic, no oversubscription
  soxr_t s = soxr_create(double(in_rate_), double(out_rate_), unsigned(channels_), &err, &io, &q, &rt);
  if (err || !s)
    throw AudioError("resample: cannot create a " + std::to_string(in_rate_) + " -> " + std::to_string(out_rate_) +
                     " Hz resampler: " + (err ? err : "unknown error"));
  soxr_ = s;
}

std::vector<float> StreamResampler::process(const float* in, size_t frames) {
  std::vector<float> out;
  if (frames == 0) return out;
  drain(static_cast<soxr_t>(soxr_), in, frames, channels_, double(out_rate_) / in_rate_, out);
  return out;
}

std::vector<float> StreamResampler::flush() {
  std::vector<float> out;
  drain(static_cast<soxr_t>(soxr_), nullptr, 0, channels_, double(out_rate_) / in_rate_, out);
  soxr_delete(static_cast<soxr_t>(soxr_));
  soxr_ = nullptr;
  create();
  return out;
}

}  // namespace omni::audio
