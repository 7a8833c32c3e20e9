// Reference implementations of the speech operations (backend.h, "speech operations"):
// time-major convolutions of code2wav, SnakeBeta, per-channel scaling and the mean of the
// codebook embeddings. Every output element is accumulated in a fixed order that does not
// depend on how many rows the call has, so decoding a stream in chunks gives the same bits as
// decoding it at once.
#include <cmath>
#include <vector>

#include "cpu/cpu_backend.h"
#include "omni/errors.h"

namespace omni {
namespace {

}  // namespace

void CpuBackend::conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, int dilation, int groups,
                        const Tensor& out) {
  const int64_t L_out = check_conv1d_args(x, w, out, dilation, groups);
  const int64_t c_out = w.dim(0), per_group = w.dim(1), K = w.dim(2), c_in = x.dim(1);
  const int64_t out_per_group = c_out / groups;
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
#pragma omp parallel
  {
    std::vector<float> wrow(static_cast<size_t>(per_group * K));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < c_out; ++o) {
      load_row_f32(w, o, wrow.data());  // [per_group, K]
      const float b = bias.empty() ? 0.f : load_f32(bias, o);
      const int64_t first_in = (o / out_per_group) * per_group;
      for (int64_t t = 0; t < L_out; ++t) {
        float acc = 0.f;
        for (int64_t k = 0; k < K; ++k) {
          const float* xr = xp + (t + k * dilation) * c_in + first_in;
          for (int64_t i = 0; i < per_group; ++i) acc += wrow[size_t(i * K + k)] * xr[i];
        }
        yp[t * c_out + o] = acc + b;
      }
    }
  }
}

void CpuBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride,
                                  const Tensor& out) {
  const int64_t L_out = check_conv_transpose1d_args(x, w, out, stride);
  const int64_t c_in = w.dim(0), c_out = w.dim(1), K = w.dim(2), s = stride, L = x.dim(0);
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
#pragma omp parallel
  {
    std::vector<float> wcol(static_cast<size_t>(K * c_in));  // [K, c_in] for one output channel
#pragma omp for schedule(static)
    for (int64_t o = 0; o < c_out; ++o) {
      for (int64_t c = 0; c < c_in; ++c)
        for (int64_t j = 0; j < K; ++j) wcol[size_t(j * c_in + c)] = load_f32(w, (c * c_out + o) * K + j);
      const float b = bias.empty() ? 0.f : load_f32(bias, o);
      for (int64_t u = 0; u < L_out; ++u) {
        const int64_t t = u + K - s;  // index in the untrimmed output
        const int64_t i_hi = std::min(t / s, L - 1);
        const int64_t i_lo = std::max<int64_t>(0, (t - K + s) / s);  // ceil((t-K+1)/s)
        float acc = 0.f;
        for (int64_t i = i_lo; i <= i_hi; ++i) {
          const int64_t j = t - i * s;
          if (j < 0 || j >= K) continue;
          const float* xr = xp + i * c_in;
          const float* wj = wcol.data() + j * c_in;
          for (int64_t c = 0; c < c_in; ++c) acc += wj[c] * xr[c];
        }
        yp[u * c_out + o] = acc + b;
      }
    }
  }
}

void CpuBackend::snake_beta(const Tensor& x, const Tensor& log_alpha, const Tensor& log_beta, const Tensor& out) {
  const int64_t C = log_alpha.numel();
  if (x.numel() % C != 0 || log_beta.numel() != C || out.numel() != x.numel())
    throw Error("snake_beta: x " + x.shape_str() + " does not match " + std::to_string(C) + " channels");
  std::vector<float> alpha(static_cast<size_t>(C)), inv_beta(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    alpha[size_t(c)] = std::exp(load_f32(log_alpha, c));
    inv_beta[size_t(c)] = 1.0f / (std::exp(load_f32(log_beta, c)) + 1e-9f);
  }
  const int64_t rows = x.numel() / C;
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float v = xp[r * C + c];
      const float sn = std::sin(v * alpha[size_t(c)]);
      yp[r * C + c] = v + inv_beta[size_t(c)] * (sn * sn);
    }
}

void CpuBackend::channel_scale(const Tensor& x, const Tensor& scale, const Tensor& out) {
  const int64_t C = scale.numel();
  if (x.numel() % C != 0 || out.numel() != x.numel())
    throw Error("channel_scale: x " + x.shape_str() + " does not match a scale of " + std::to_string(C));
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
  for (int64_t i = 0; i < x.numel(); ++i) yp[i] = xp[i] * load_f32(scale, i % C);
}

void CpuBackend::embed_codebooks_mean(const Tensor& table, const Tensor& codes, int codebook_size,
                                      const Tensor& out) {
  const int64_t T = codes.dim(0), Q = codes.dim(1), H = table.row_numel();
  if (codes.ndim != 2 || out.numel() != T * H || Q * codebook_size > table.dim(0))
    throw Error("embed_codebooks_mean: codes " + codes.shape_str() + ", table " + table.shape_str() + ", out " +
                out.shape_str() + " do not match");
  std::vector<float> row(static_cast<size_t>(H));
  for (int64_t t = 0; t < T; ++t) {
    float* y = out.as<float>() + t * H;
    for (int64_t h = 0; h < H; ++h) y[h] = 0.f;
    for (int64_t q = 0; q < Q; ++q) {
      const int32_t code = codes.as<const int32_t>()[t * Q + q];
      if (code < 0 || code >= codebook_size)
        throw Error("code2wav: code " + std::to_string(code) + " of codebook " + std::to_string(q) +
                    " is outside [0, " + std::to_string(codebook_size) + ")");
      load_row_f32(table, code + q * codebook_size, row.data());
      for (int64_t h = 0; h < H; ++h) y[h] += row[size_t(h)];
    }
    for (int64_t h = 0; h < H; ++h) y[h] /= float(Q);
  }
}

}  // namespace omni
