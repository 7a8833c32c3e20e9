// Reference sampling, in the order transformers applies its logits processors:
// repetition penalty → token suppression → temperature → top-k → top-p → softmax → draw. Greedy is argmax after the
// penalty (ties go to the lowest id, as torch.argmax does).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/cpu_backend.h"
#include "omni/errors.h"

namespace omni {

int32_t CpuBackend::sample(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history,
                           float uniform) {
  const int64_t V = logits.numel();
  std::vector<float> l(static_cast<size_t>(V));
  download_f32(l.data(), logits);
  if (p.repetition_penalty != 1.0f) {
    std::vector<char> seen(size_t(V), 0);
    for (int32_t id : history)
      if (id >= 0 && id < V && !seen[size_t(id)]) {
        seen[size_t(id)] = 1;
        float& x = l[size_t(id)];
        x = x < 0 ? x * p.repetition_penalty : x / p.repetition_penalty;
      }
  }
  if (p.suppress_end > p.suppress_begin) {
    for (int64_t id = std::max<int64_t>(0, p.suppress_begin); id < std::min<int64_t>(V, p.suppress_end); ++id)
      if (id != p.suppress_except) l[size_t(id)] = -INFINITY;
  }
  if (p.greedy) return int32_t(std::max_element(l.begin(), l.end()) - l.begin());
  const float t = p.temperature > 0 ? p.temperature : 1.0f;
  for (float& x : l) x /= t;
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  // Descending by logit, ties by id, so the draw is reproducible.
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return l[size_t(a)] > l[size_t(b)]; });
  size_t keep = size_t(V);
  if (p.top_k > 0) keep = std::min(keep, size_t(p.top_k));
  const float mx = l[size_t(idx[0])];
  std::vector<double> prob(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += (prob[i] = std::exp(double(l[size_t(idx[i])] - mx)));
  if (p.top_p < 1.0f) {
    // Keep the smallest prefix whose probability reaches top_p (at least one token).
    double cum = 0;
    size_t n = 0;
    while (n < keep && (n == 0 || cum < double(p.top_p) * sum)) cum += prob[n++];
    keep = n;
    sum = cum;
  }
  const double target = double(uniform) * sum;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (target < cum) return idx[i];
  }
  return idx[keep - 1];
}

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

#ifndef OMNI_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(int, bool) {
  throw DeviceError("this build of omnid has no CUDA backend (nvcc was not found at build time)");
}
bool cuda_backend_available() { return false; }
#endif

}  // namespace omni
