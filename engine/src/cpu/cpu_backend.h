// CpuBackend: the reference implementation of backend.h. Plain loops, fp32 math, OpenMP over
// output rows at most. Weights stay where the checkpoint maps them (bf16/f16/f32), converted
// to float one element at a time, so loading copies nothing.
#pragma once
#include <deque>
#include <vector>

#include "backend.h"

namespace omni {

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Tensor weight(const Tensor& host) override { return host; }
  // Q8/Q4: quantized on the host into the backend's arena (quant.h), read back row by row
  // through load_row_f32, so every op runs quantized weights with the reference formula.
  Tensor weight_as(const Tensor& host, DType format, const std::string& name) override;
  Tensor alloc(std::initializer_list<int64_t> shape, DType dtype) override;
  using Backend::alloc;
  DType activation_dtype() const override { return DType::F32; }
  void upload(const Tensor& dst, const void* src) override;
  void download(void* dst, const Tensor& src) override;
  void download_f32(float* dst, const Tensor& src) override;

  void embed(const Tensor& table, const Tensor& ids, const Tensor& out) override;
  void embed_weighted(const Tensor& table, const Tensor& ids, const Tensor& weights, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out, Activation act) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void attention(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args, const Tensor& out) override;
  void mlp(const MlpWeights& w, const Tensor& x, const Tensor& out) override;
  void moe(const MoeWeights& w, const Tensor& x, const Tensor& out) override;
  int32_t sample(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history,
                 float uniform) override;
  // audio encoder operations (cpu_audio_ops.cpp)
  void conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad, const Tensor& out) override;
  void permute_0312(const Tensor& x, const Tensor& out) override;

  // ---- speech operations (cpu_speech_ops.cpp) ----
  void conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, int dilation, int groups,
              const Tensor& out) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, const Tensor& out) override;
  void snake_beta(const Tensor& x, const Tensor& log_alpha, const Tensor& log_beta, const Tensor& out) override;
  void channel_scale(const Tensor& x, const Tensor& scale, const Tensor& out) override;
  void embed_codebooks_mean(const Tensor& table, const Tensor& codes, int codebook_size, const Tensor& out) override;

 private:
  std::deque<std::vector<char>> arena_;  // storage of alloc(); deque keeps addresses stable
};

// Element access for weights of any float dtype (the reference path reads them one by one).
float load_f32(const Tensor& t, int64_t i);
// Copies row `r` of a [rows, cols] float tensor of any dtype into `dst` as float.
void load_row_f32(const Tensor& t, int64_t r, float* dst);
// dst[o] = dot(w[o, :], x) for o in [0, rows(w)); w of any float dtype, x float.
void matvec_f32(const Tensor& w, const float* x, float* dst);
float apply_activation(float v, Activation act);
// Threads only pay off for large loops: below this many multiply-adds a parallel region costs
// more than it saves (and on a loaded 2-core machine, far more).
constexpr int64_t kParallelMinWork = int64_t(1) << 20;

}  // namespace omni
