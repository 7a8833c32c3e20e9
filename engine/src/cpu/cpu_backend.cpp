#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "omni/errors.h"
#include "quant.h"

namespace omni {

float load_f32(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: return t.as<const float>()[i];
    case DType::BF16: return bf16_to_f32(t.as<const uint16_t>()[i]);
    case DType::F16: return f16_to_f32(t.as<const uint16_t>()[i]);
    case DType::I32: return float(t.as<const int32_t>()[i]);
    case DType::Q8:
    case DType::Q4: {
      const int64_t K = t.row_numel();
      std::vector<float> row(static_cast<size_t>(K));
      dequantize_row(t, i / K, row.data());
      return row[size_t(i % K)];
    }
  }
  return 0.f;
}

void load_row_f32(const Tensor& t, int64_t r, float* dst) {
  const int64_t cols = t.row_numel();
  const int64_t base = r * cols;
  if (t.dtype == DType::F32) {
    std::memcpy(dst, t.as<const float>() + base, size_t(cols) * 4);
  } else if (is_quantized(t.dtype)) {
    dequantize_row(t, r, dst);
  } else if (t.dtype == DType::BF16) {
    const uint16_t* p = t.as<const uint16_t>() + base;
    for (int64_t i = 0; i < cols; ++i) dst[i] = bf16_to_f32(p[i]);
  } else {
    for (int64_t i = 0; i < cols; ++i) dst[i] = load_f32(t, base + i);
  }
}

float apply_activation(float v, Activation act) {
  switch (act) {
    case Activation::None: return v;
    case Activation::SiLU: return v / (1.f + std::exp(-v));
    case Activation::GELU: return 0.5f * v * (1.f + std::erf(v * float(M_SQRT1_2)));
    case Activation::GELUTanh: {
      const float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
      return 0.5f * v * (1.f + std::tanh(inner));
    }
  }
  return v;
}

void matvec_f32(const Tensor& w, const float* x, float* dst) {
  const int64_t rows = w.dim(0), cols = w.row_numel();
#pragma omp parallel if (rows * cols >= kParallelMinWork)
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < rows; ++o) {
      load_row_f32(w, o, row.data());
      float acc = 0.f;
      for (int64_t i = 0; i < cols; ++i) acc += row[size_t(i)] * x[i];
      dst[o] = acc;
    }
  }
}

Tensor CpuBackend::weight_as(const Tensor& host, DType format, const std::string& name) {
  if (!is_quantized(format)) return weight(host);
  if (host.ndim != 2 || host.on_device)
    throw Error("weight " + name + ": only host matrices are quantized, not " + host.shape_str());
  Tensor t = host;
  t.dtype = format;
  const int64_t N = host.dim(0), groups = quant_groups(format, host.dim(1));
  arena_.emplace_back(t.bytes() + size_t(N * groups) * 2 + 64, 0);
  t.data = arena_.back().data();
  t.scales = arena_.back().data() + t.bytes();
  quantize_rows(host, format, t.as<uint8_t>(), static_cast<uint16_t*>(t.scales));
  return t;
}

Tensor CpuBackend::alloc(std::initializer_list<int64_t> shape, DType dtype) {
  Tensor t(nullptr, dtype, shape);
  arena_.emplace_back(t.bytes() + 64, 0);
  t.data = arena_.back().data();
  return t;
}

void CpuBackend::upload(const Tensor& dst, const void* src) { std::memcpy(dst.data, src, dst.bytes()); }
void CpuBackend::download(void* dst, const Tensor& src) { std::memcpy(dst, src.data, src.bytes()); }
void CpuBackend::download_f32(float* dst, const Tensor& src) {
  for (int64_t i = 0; i < src.numel(); ++i) dst[i] = load_f32(src, i);
}

void CpuBackend::embed(const Tensor& table, const Tensor& ids, const Tensor& out) {
  const int64_t n = ids.numel(), vocab = table.dim(0);
  for (int64_t s = 0; s < n; ++s) {
    int32_t id = ids.as<const int32_t>()[s];
    if (id < 0 || id >= vocab)
      throw Error("embed: token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(vocab));
    load_row_f32(table, id, out.as<float>() + s * table.row_numel());
  }
}

void CpuBackend::embed_weighted(const Tensor& table, const Tensor& ids, const Tensor& weights, const Tensor& out) {
  if (ids.ndim != 2 || ids.dtype != DType::I32 || weights.dtype != DType::F32 || weights.ndim != 2 ||
      weights.dim(0) != ids.dim(0) || weights.dim(1) != ids.dim(1) || out.dtype != DType::F32 ||
      out.dim(0) != ids.dim(0) || out.numel() != ids.dim(0) * table.row_numel())
    throw Error("embed_weighted: ids " + ids.shape_str() + ", weights " + weights.shape_str() + ", table " +
                table.shape_str() + " and out " + out.shape_str() + " do not fit together");
  const int64_t rows = ids.dim(0), taps = ids.dim(1), d = table.row_numel(), n = table.dim(0);
  std::vector<float> row(static_cast<size_t>(d));
  for (int64_t s = 0; s < rows; ++s) {
    float* o = out.as<float>() + s * d;
    std::fill_n(o, d, 0.f);
    for (int64_t k = 0; k < taps; ++k) {
      const int32_t id = ids.as<const int32_t>()[s * taps + k];
      if (id < 0 || id >= n)
        throw Error("embed_weighted: id " + std::to_string(id) + " is outside the table of " + std::to_string(n) +
                    " rows");
      load_row_f32(table, id, row.data());
      const float w = weights.as<const float>()[s * taps + k];
      for (int64_t i = 0; i < d; ++i) o[i] += w * row[size_t(i)];
    }
  }
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) {
  const int64_t cols = w.numel(), rows = x.numel() / cols;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xi = x.as<const float>() + r * cols;
    float* yo = out.as<float>() + r * cols;
    float ss = 0.f;
    for (int64_t i = 0; i < cols; ++i) ss += xi[i] * xi[i];
    const float inv = 1.f / std::sqrt(ss / float(cols) + eps);
    for (int64_t i = 0; i < cols; ++i) yo[i] = load_f32(w, i) * (xi[i] * inv);
  }
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& out) {
  const int64_t cols = w.numel(), rows = x.numel() / cols;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xi = x.as<const float>() + r * cols;
    float* yo = out.as<float>() + r * cols;
    float mean = 0.f, var = 0.f;
    for (int64_t i = 0; i < cols; ++i) mean += xi[i];
    mean /= float(cols);
    for (int64_t i = 0; i < cols; ++i) var += (xi[i] - mean) * (xi[i] - mean);
    const float inv = 1.f / std::sqrt(var / float(cols) + eps);
    for (int64_t i = 0; i < cols; ++i)
      yo[i] = (xi[i] - mean) * inv * load_f32(w, i) + (b.empty() ? 0.f : load_f32(b, i));
  }
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out, Activation act) {
  const int64_t out_f = w.dim(0), in_f = w.row_numel();
  const int64_t rows = x.numel() / in_f;
  if (x.numel() != rows * in_f || out.numel() != rows * out_f)
    throw Error("linear: shapes x " + x.shape_str() + ", w " + w.shape_str() + ", out " + out.shape_str() +
                " do not match");
  const float* xp = x.as<const float>();
  float* yp = out.as<float>();
#pragma omp parallel if (out_f * in_f * rows >= kParallelMinWork)
  {
    std::vector<float> row(static_cast<size_t>(in_f));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < out_f; ++o) {
      load_row_f32(w, o, row.data());
      const float b = bias.empty() ? 0.f : load_f32(bias, o);
      for (int64_t s = 0; s < rows; ++s) {
        const float* xs = xp + s * in_f;
        float acc = 0.f;
        for (int64_t i = 0; i < in_f; ++i) acc += row[size_t(i)] * xs[i];
        yp[s * out_f + o] = apply_activation(acc + b, act);
      }
    }
  }
}

void CpuBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) out.as<float>()[i] = a.as<const float>()[i] + b.as<const float>()[i];
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.dtype != DType::F32 && dst.dtype == DType::F32 && src.numel() == dst.numel()) {
    load_row_f32(src.reshaped({1, src.numel()}), 0, dst.as<float>());  // widening (bf16/f16 to f32)
    return;
  }
  if (src.bytes() != dst.bytes()) throw Error("copy: size mismatch " + src.shape_str() + " vs " + dst.shape_str());
  std::memmove(dst.data, src.data, src.bytes());
}

void CpuBackend::mlp(const MlpWeights& w, const Tensor& x, const Tensor& out) {
  const int64_t rows = x.dim(0), inter = w.gate.dim(0);
  thread_local std::vector<float> g, u;
  g.resize(size_t(rows * inter));
  u.resize(size_t(rows * inter));
  Tensor gt(g.data(), DType::F32, {rows, inter}), ut(u.data(), DType::F32, {rows, inter});
  linear(x, w.gate, Tensor(), gt, Activation::SiLU);
  linear(x, w.up, Tensor(), ut, Activation::None);
  for (size_t i = 0; i < g.size(); ++i) g[i] *= u[i];
  linear(gt, w.down, Tensor(), out, Activation::None);
}

void CpuBackend::moe(const MoeWeights& w, const Tensor& x, const Tensor& out) {
  const int64_t rows = x.dim(0), hidden = x.row_numel(), experts = w.router.dim(0);
  std::vector<float> logits(size_t(rows * experts));
  linear(x, w.router, Tensor(), Tensor(logits.data(), DType::F32, {rows, experts}), Activation::None);
  std::vector<float> y(static_cast<size_t>(hidden));
  std::vector<int> order(static_cast<size_t>(experts));
  for (int64_t s = 0; s < rows; ++s) {
    float* lg = logits.data() + s * experts;
    // softmax over all experts first, then top-k, then optional renormalisation (docs/model.md §3.1).
    const float mx = *std::max_element(lg, lg + experts);
    float sum = 0.f;
    for (int64_t e = 0; e < experts; ++e) sum += (lg[e] = std::exp(lg[e] - mx));
    for (int64_t e = 0; e < experts; ++e) lg[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + w.top_k, order.end(),
                      [&](int a, int b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
    float topsum = 0.f;
    for (int j = 0; j < w.top_k; ++j) topsum += lg[order[size_t(j)]];
    float* dst = out.as<float>() + s * hidden;
    std::fill(dst, dst + hidden, 0.f);
    const Tensor xs = x.rows(s, 1);
    for (int j = 0; j < w.top_k; ++j) {
      const int e = order[size_t(j)];
      const float weight = w.norm_topk_prob ? lg[e] / topsum : lg[e];
      mlp(w.experts[size_t(e)], xs, Tensor(y.data(), DType::F32, {1, hidden}));
      for (int64_t i = 0; i < hidden; ++i) dst[i] += weight * y[size_t(i)];
    }
    if (!w.shared.gate.empty()) {
      float gate = 0.f;
      matvec_f32(w.shared_gate, xs.as<const float>(), &gate);
      gate = 1.f / (1.f + std::exp(-gate));
      mlp(w.shared, xs, Tensor(y.data(), DType::F32, {1, hidden}));
      for (int64_t i = 0; i < hidden; ++i) dst[i] += gate * y[size_t(i)];
    }
  }
}

}  // namespace omni
