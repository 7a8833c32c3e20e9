// Reference attention: projections, per-head q/k RMSNorm, NeoX RoPE (fp32 tables as HF builds
// them), KV cache update, masked softmax in fp32, output projection.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/cpu_backend.h"
#include "omni/errors.h"

namespace omni {
namespace {

void head_rms_norm(float* v, const Tensor& w, int hd, float eps) {
  float ss = 0.f;
  for (int i = 0; i < hd; ++i) ss += v[i] * v[i];
  const float inv = 1.f / std::sqrt(ss / float(hd) + eps);
  for (int i = 0; i < hd; ++i) v[i] = load_f32(w, i) * (v[i] * inv);
}

// rotate_half layout: pairs (i, i + hd/2) share frequency i. inv_freq and the angle are float32
// as in HF (`1 / theta ** (arange(0, d, 2) / d)`, then `pos * inv_freq`).
void apply_rope(float* v, int hd, int pos, float theta) {
  const int half = hd / 2;
  for (int i = 0; i < half; ++i) {
    const float inv_freq = 1.0f / std::pow(theta, float(2 * i) / float(hd));
    const float angle = float(pos) * inv_freq;
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

// The same rotation with the angle's cosine and sine given per pair (vision 2-D rotary).
void apply_rope_table(float* v, int hd, const float* c, const float* sn) {
  const int half = hd / 2;
  for (int i = 0; i < half; ++i) {
    const float a = v[i], b = v[i + half];
    v[i] = a * c[i] - b * sn[i];
    v[i + half] = b * c[i] + a * sn[i];
  }
}

}  // namespace

void CpuBackend::attention(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args, const Tensor& out) {
  const int64_t S = x.dim(0);
  const int hq = w.num_heads, hkv = w.num_kv_heads, hd = w.head_dim;
  const int group = hq / hkv;
  std::vector<float> q(size_t(S * hq * hd)), k(size_t(S * hkv * hd)), v(size_t(S * hkv * hd));
  linear(x, w.wq, w.bq, Tensor(q.data(), DType::F32, {S, int64_t(hq) * hd}), Activation::None);
  linear(x, w.wk, w.bk, Tensor(k.data(), DType::F32, {S, int64_t(hkv) * hd}), Activation::None);
  linear(x, w.wv, w.bv, Tensor(v.data(), DType::F32, {S, int64_t(hkv) * hd}), Activation::None);
  const int32_t* pos = args.positions.empty() ? nullptr : args.positions.as<const int32_t>();
  const bool table = !args.rope_cos.empty();
  if (((w.rope_theta > 0.f && !table) || args.cache) && !pos) throw Error("attention: positions are required");
  if (table && (args.rope_cos.dtype != DType::F32 || args.rope_sin.dtype != DType::F32 ||
                args.rope_cos.numel() != S * (hd / 2) || args.rope_sin.numel() != S * (hd / 2)))
    throw Error("attention: rotary tables " + args.rope_cos.shape_str() + " / " + args.rope_sin.shape_str() +
                " are not F32 [" + std::to_string(S) + ", " + std::to_string(hd / 2) + "]");
  for (int64_t s = 0; s < S; ++s) {
    const float* rc = table ? args.rope_cos.as<const float>() + s * (hd / 2) : nullptr;
    const float* rs = table ? args.rope_sin.as<const float>() + s * (hd / 2) : nullptr;
    for (int h = 0; h < hq; ++h) {
      float* qh = q.data() + (s * hq + h) * hd;
      if (!w.q_norm.empty()) head_rms_norm(qh, w.q_norm, hd, w.norm_eps);
      if (table) apply_rope_table(qh, hd, rc, rs);
      else if (w.rope_theta > 0.f) apply_rope(qh, hd, pos[s], w.rope_theta);
    }
    for (int h = 0; h < hkv; ++h) {
      float* kh = k.data() + (s * hkv + h) * hd;
      if (!w.k_norm.empty()) head_rms_norm(kh, w.k_norm, hd, w.norm_eps);
      if (table) apply_rope_table(kh, hd, rc, rs);
      else if (w.rope_theta > 0.f) apply_rope(kh, hd, pos[s], w.rope_theta);
    }
  }
  // Keys/values either come from the cache (after writing this call's rows into it) or are
  // this call's rows themselves.
  const float* keys = k.data();
  const float* vals = v.data();
  if (args.cache) {
    KVCache& c = *args.cache;
    const int64_t row = int64_t(hkv) * hd;
    for (int64_t s = 0; s < S; ++s) {
      if (pos[s] < 0 || pos[s] >= c.capacity())
        throw Error("attention: position " + std::to_string(pos[s]) + " outside the KV cache of " +
                    std::to_string(c.capacity()) + " slots");
      std::copy_n(k.data() + s * row, row, c.k.as<float>() + pos[s] * row);
      std::copy_n(v.data() + s * row, row, c.v.as<float>() + pos[s] * row);
    }
    keys = c.k.as<const float>();
    vals = c.v.as<const float>();
  }
  const float scale = 1.f / std::sqrt(float(hd));
  std::vector<float> attn(size_t(S * hq * hd));
  const int64_t keys_seen = args.cache ? pos[S - 1] + 1 : S;
#pragma omp parallel for collapse(2) schedule(static) if (S * hq * hd * keys_seen >= kParallelMinWork)
  for (int64_t s = 0; s < S; ++s) {
    for (int h = 0; h < hq; ++h) {
      // Key range [lo, hi] in key-index space (cache slots or rows of this call).
      int64_t lo = 0, hi = S - 1;
      const int64_t qi = args.cache ? pos[s] : s;
      if (args.cache) hi = pos[s];
      else if (args.causal) hi = s;
      if (args.sliding_window > 0) lo = std::max<int64_t>(0, qi - args.sliding_window + 1);
      if (args.block > 0 && !args.cache) {
        lo = std::max<int64_t>(lo, (s / args.block) * args.block);
        hi = std::min<int64_t>(hi, (s / args.block + 1) * args.block - 1);
      }
      const float* qh = q.data() + (s * hq + h) * hd;
      const int kvh = h / group;
      std::vector<float> sc(size_t(hi - lo + 1));
      float mx = -INFINITY;
      for (int64_t j = lo; j <= hi; ++j) {
        const float* kj = keys + (j * hkv + kvh) * hd;
        float d = 0.f;
        for (int i = 0; i < hd; ++i) d += qh[i] * kj[i];
        sc[size_t(j - lo)] = d * scale;
        mx = std::max(mx, sc[size_t(j - lo)]);
      }
      float sum = 0.f;
      for (float& e : sc) sum += (e = std::exp(e - mx));
      float* o = attn.data() + (s * hq + h) * hd;
      for (int i = 0; i < hd; ++i) o[i] = 0.f;
      for (int64_t j = lo; j <= hi; ++j) {
        const float p = sc[size_t(j - lo)] / sum;
        const float* vj = vals + (j * hkv + kvh) * hd;
        for (int i = 0; i < hd; ++i) o[i] += p * vj[i];
      }
    }
  }
  linear(Tensor(attn.data(), DType::F32, {S, int64_t(hq) * hd}), w.wo, w.bo, out, Activation::None);
}

}  // namespace omni
