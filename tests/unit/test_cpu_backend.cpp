// Properties of the CPU reference backend that the golden tests do not isolate: the KV cache
// path equals full causal attention, window/block masks, MoE routing, and sampling rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "omni/errors.h"

using namespace omni;

namespace {

struct Rand {
  std::mt19937 gen{1234};
  std::normal_distribution<float> nd{0.f, 1.f};
  Tensor fill(Backend& be, std::initializer_list<int64_t> shape, float scale = 0.3f) {
    Tensor t = be.alloc(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = nd(gen) * scale;
    return t;
  }
};

double rel_err(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = double(a.as<float>()[i]) - double(b.as<float>()[i]);
    num += d * d;
    den += double(b.as<float>()[i]) * double(b.as<float>()[i]);
  }
  return std::sqrt(num / den);
}

AttentionWeights make_attention(Backend& be, Rand& r, int H, int hq, int hkv, int hd) {
  AttentionWeights w;
  w.wq = r.fill(be, {hq * hd, H});
  w.wk = r.fill(be, {hkv * hd, H});
  w.wv = r.fill(be, {hkv * hd, H});
  w.wo = r.fill(be, {H, hq * hd});
  w.q_norm = r.fill(be, {hd}, 1.0f);
  w.k_norm = r.fill(be, {hd}, 1.0f);
  w.num_heads = hq;
  w.num_kv_heads = hkv;
  w.head_dim = hd;
  w.rope_theta = 10000.f;
  return w;
}

Tensor positions(Backend& be, int begin, int n) {
  Tensor p = be.alloc({n}, DType::I32);
  for (int i = 0; i < n; ++i) p.as<int32_t>()[i] = begin + i;
  return p;
}

}  // namespace

TEST(CpuBackend, IncrementalDecodeWithCacheEqualsOneShotPrefill) {
  CpuBackend be;
  Rand r;
  const int H = 32, S = 7;
  AttentionWeights w = make_attention(be, r, H, 4, 2, 8);
  Tensor x = r.fill(be, {S, H}, 1.0f);
  KVCache c1{be.alloc({16, 2, 8}), be.alloc({16, 2, 8})};
  Tensor full = be.alloc({S, H});
  AttentionArgs a;
  a.positions = positions(be, 0, S);
  a.cache = &c1;
  be.attention(w, x, a, full);

  KVCache c2{be.alloc({16, 2, 8}), be.alloc({16, 2, 8})};
  Tensor step = be.alloc({S, H});
  for (int s = 0; s < S; ++s) {
    AttentionArgs b;
    b.positions = positions(be, s, 1);
    b.cache = &c2;
    be.attention(w, x.rows(s, 1), b, step.rows(s, 1));
  }
  EXPECT_LT(rel_err(step, full), 1e-6);
  // Without a cache, causal attention over the rows is the same computation.
  Tensor nocache = be.alloc({S, H});
  AttentionArgs n;
  n.positions = positions(be, 0, S);
  be.attention(w, x, n, nocache);
  EXPECT_LT(rel_err(nocache, full), 1e-6);
}

TEST(CpuBackend, BlockMaskSeparatesWindows) {
  CpuBackend be;
  Rand r;
  const int H = 16, S = 6;
  AttentionWeights w = make_attention(be, r, H, 2, 2, 8);
  w.rope_theta = 0.f;
  w.q_norm = w.k_norm = Tensor();
  Tensor x = r.fill(be, {S, H}, 1.0f);
  Tensor blocked = be.alloc({S, H}), separate = be.alloc({S, H});
  AttentionArgs a;
  a.causal = false;
  a.block = 3;
  be.attention(w, x, a, blocked);
  AttentionArgs b;
  b.causal = false;
  be.attention(w, x.rows(0, 3), b, separate.rows(0, 3));
  be.attention(w, x.rows(3, 3), b, separate.rows(3, 3));
  EXPECT_LT(rel_err(blocked, separate), 1e-6);
  // A bidirectional call over all rows is different (the first window sees the second).
  Tensor all = be.alloc({S, H});
  be.attention(w, x, b, all);
  EXPECT_GT(rel_err(all, separate), 1e-3);
}

TEST(CpuBackend, MoeWithAllExpertsSelectedIsTheProbabilityWeightedSum) {
  CpuBackend be;
  Rand r;
  const int H = 8, I = 4, E = 3;
  MoeWeights m;
  m.router = r.fill(be, {E, H});
  for (int e = 0; e < E; ++e) m.experts.push_back({r.fill(be, {I, H}), r.fill(be, {I, H}), r.fill(be, {H, I})});
  m.top_k = E;
  m.norm_topk_prob = false;
  Tensor x = r.fill(be, {2, H}, 1.0f);
  Tensor out = be.alloc({2, H});
  be.moe(m, x, out);
  // Manual: softmax over router logits, weighted sum of expert MLPs.
  for (int s = 0; s < 2; ++s) {
    std::vector<float> lg(E), y(H), acc(H, 0.f);
    matvec_f32(m.router, x.as<float>() + s * H, lg.data());
    float mx = std::max({lg[0], lg[1], lg[2]}), sum = 0;
    for (float& v : lg) sum += (v = std::exp(v - mx));
    for (int e = 0; e < E; ++e) {
      be.mlp(m.experts[size_t(e)], x.rows(s, 1), Tensor(y.data(), DType::F32, {1, H}));
      for (int i = 0; i < H; ++i) acc[size_t(i)] += lg[size_t(e)] / sum * y[size_t(i)];
    }
    for (int i = 0; i < H; ++i) EXPECT_NEAR(out.as<float>()[s * H + i], acc[size_t(i)], 1e-5);
  }
}

TEST(CpuBackend, SamplingRules) {
  CpuBackend be;
  Tensor l = be.alloc({1, 5}, DType::F32);
  float v[5] = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
  be.upload(l, v);
  SamplingParams g;
  EXPECT_EQ(be.sample(l, g, {}, 0.9f), 1);  // ties go to the lowest id
  g.repetition_penalty = 2.0f;
  EXPECT_EQ(be.sample(l, g, {1}, 0.9f), 2);  // 3/2 < 3
  SamplingParams t;
  t.greedy = false;
  t.top_k = 1;
  for (float u : {0.0f, 0.5f, 0.999f}) EXPECT_EQ(be.sample(l, t, {}, u), 1);
  t.top_k = 0;
  // ids 1 and 2 hold 0.449 each: top_p 0.4 keeps one of them, 0.5 keeps both (HF keeps the
  // smallest set whose mass reaches top_p).
  t.top_p = 0.4f;
  for (float u : {0.0f, 0.7f, 0.999f}) EXPECT_EQ(be.sample(l, t, {}, u), 1);
  t.top_p = 0.5f;
  EXPECT_EQ(be.sample(l, t, {}, 0.2f), 1);
  EXPECT_EQ(be.sample(l, t, {}, 0.8f), 2);
  t.top_p = 1.0f;
  // Full distribution: a draw near 1 lands on the least likely token.
  EXPECT_EQ(be.sample(l, t, {}, 0.99999f), 3);
  EXPECT_EQ(be.sample(l, t, {}, 0.0f), 1);
}

// copy() widens a bf16 tensor into an f32 one (omni-bench fills fp32 KV caches this way), and
// refuses tensors of different sizes with an error naming both shapes.
TEST(CpuBackend, CopyWidensBf16AndRejectsOtherSizes) {
  auto be = make_cpu_backend();
  const std::vector<float> want = {1.f, -2.5f, 0.15625f, 3e-3f, -1024.f, 7.f};
  std::vector<uint16_t> bits;
  for (float f : want) bits.push_back(f32_to_bf16(f));
  Tensor src(bits.data(), DType::BF16, {2, 3});
  Tensor dst = be->alloc({2, 3}, DType::F32);
  be->copy(src, dst);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(dst.as<float>()[i], bf16_to_f32(bits[i])) << i;
  Tensor small = be->alloc({5}, DType::F32);
  try {
    be->copy(dst, small);
    FAIL() << "a copy between sizes must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
}
