// Helpers for the CUDA-vs-CPU tests: the same random bf16 weights and fp32 activations on both
// backends, poisoned GPU outputs, and the relative error ‖gpu − cpu‖ / ‖cpu‖.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda/cuda_backend.h"
#include "omni/errors.h"

namespace omni::test {

class Pair {
 public:
  // f32_activations: the CUDA backend's activation precision (make_cuda_backend).
  explicit Pair(bool f32_activations = true)
      : cpu(make_cpu_backend()), gpu(make_cuda_backend(0, f32_activations)), rng(std::random_device{}()) {}
  // A CUDA backend with the given kernel choices (cuda_tuning.h) instead of the environment's.
  Pair(bool f32_activations, const cuda::CudaTuning& tuning)
      : cpu(make_cpu_backend()),
        gpu(std::make_unique<CudaBackend>(0, f32_activations, tuning)),
        rng(std::random_device{}()) {}

  std::vector<float> random(int64_t n, float scale = 1.f) {
    std::uniform_real_distribution<float> d(-scale, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = d(rng);
    return v;
  }

  // A bf16 weight with the same values on both backends.
  struct W {
    Tensor c, g;
  };
  W weight(std::initializer_list<int64_t> shape, float scale) {
    Tensor t(nullptr, DType::BF16, shape);
    host_.emplace_back(static_cast<size_t>(t.numel()));
    std::vector<uint16_t>& h = host_.back();
    std::uniform_real_distribution<float> d(-scale, scale);
    for (uint16_t& x : h) x = f32_to_bf16(d(rng));
    t.data = h.data();
    return {cpu->weight(t), gpu->weight(t)};
  }

  // An fp32 activation with the same values on both backends.
  struct A {
    Tensor c, g;
  };
  A act(std::initializer_list<int64_t> shape, float scale = 1.f) {
    A a{cpu->alloc(shape), gpu->alloc(shape)};
    const std::vector<float> v = random(a.c.numel(), scale);
    cpu->upload(a.c, v.data());
    gpu->upload(a.g, v.data());
    return a;
  }
  A ints(std::initializer_list<int64_t> shape, const std::vector<int32_t>& v) {
    A a{cpu->alloc(shape, DType::I32), gpu->alloc(shape, DType::I32)};
    cpu->upload(a.c, v.data());
    gpu->upload(a.g, v.data());
    return a;
  }
  // An output: zero on the CPU, NaN on the GPU, so unwritten elements fail the comparison.
  A out(std::initializer_list<int64_t> shape) {
    A a{cpu->alloc(shape), gpu->alloc(shape)};
    poison(a.g);
    return a;
  }
  void poison(const Tensor& g) {
    std::vector<float> nan(static_cast<size_t>(g.numel()), std::numeric_limits<float>::quiet_NaN());
    gpu->upload(g, nan.data());
  }

  std::vector<float> get(Backend& be, const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    be.download_f32(v.data(), t);
    return v;
  }
  // ‖gpu − cpu‖ / ‖cpu‖; infinity when the GPU output holds a NaN or Inf.
  double rel_error(const A& a) { return rel_error(get(*cpu, a.c), get(*gpu, a.g)); }
  static double rel_error(const std::vector<float>& ref, const std::vector<float>& got) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
      num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
      den += double(ref[i]) * ref[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
  }

  std::unique_ptr<Backend> cpu, gpu;
  std::mt19937 rng;

 private:
  std::deque<std::vector<uint16_t>> host_;  // CPU weights are views of these
};

// Bounds (relative L2 error vs the fp32 CPU reference, identical bf16 weights on both sides):
// - kTolExact: fp32 activations end to end (GEMV decode paths, norms, embed; with f32
//   activations also the GEMMs, whose inputs go as bf16 hi + lo, and the fp32 KV cache): only
//   the summation order, the 2^-16 of the split and fast-math exp differ, so errors sit near
//   1e-6 to 1e-5; 1e-4 leaves margin.
// - kTolBf16: with bf16 activations, paths that round activations to bf16 (GEMMs of more than
//   8 rows) or read the bf16 KV cache: one bf16 rounding (2^-9 relative) of an input, ~3e-3.
// - kTolModel: logits after whole decoder stacks (the design's CUDA-vs-CPU bound, 2e-2).
constexpr double kTolExact = 1e-4;
constexpr double kTolBf16 = 1e-2;
constexpr double kTolModel = 2e-2;

// Tests whose bounds depend on the CUDA backend's activation precision run once per setting
// (instantiated with PrecisionName: .../f32 and .../bf16).
class CudaPrecisionTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
    p = std::make_unique<Pair>(GetParam());
  }
  bool f32() const { return GetParam(); }
  // Outputs made from `rows` rows: GEMMs (more than 8 rows) round inputs only with bf16 activations.
  double tol_rows(int64_t rows) const { return f32() || rows <= 8 ? kTolExact : kTolBf16; }
  // Outputs that read the KV cache.
  double tol_kv() const { return f32() ? kTolExact : kTolBf16; }
  std::unique_ptr<Pair> p;
};
inline std::string PrecisionName(const ::testing::TestParamInfo<bool>& info) { return info.param ? "f32" : "bf16"; }

}  // namespace omni::test
