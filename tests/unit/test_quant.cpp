// Quantized weight formats (quant.h) and the CPU backend running them: fp16 rounding, the
// quantize/dequantize round trip and its bound, group edges and padding, row views, the
// per-part plan parser, and linear/moe with Q8/Q4 weights equal to the same ops over the
// dequantized values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "omni/errors.h"
#include "quant.h"

using namespace omni;

namespace {

float bits_to_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// A bf16 host matrix with a deterministic normal fill (and its storage).
struct HostMatrix {
  std::vector<uint16_t> v;
  Tensor t;
  HostMatrix(int64_t N, int64_t K, uint32_t seed, float scale = 0.05f) : v(size_t(N * K)) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.f, scale);
    for (uint16_t& x : v) x = f32_to_bf16(d(g));
    t = Tensor(v.data(), DType::BF16, {N, K});
  }
  float at(int64_t n, int64_t k) const { return bf16_to_f32(v[size_t(n * t.dim(1) + k)]); }
};

std::vector<float> dequantized(const Tensor& q) {
  const int64_t N = q.dim(0), K = q.dim(1);
  std::vector<float> out(size_t(N * K));
  for (int64_t n = 0; n < N; ++n) dequantize_row(q, n, out.data() + n * K);
  return out;
}

float scale_of(const Tensor& q, int64_t n, int64_t k) {
  const int64_t g = quant_groups(q.dtype, q.dim(1));
  return f16_to_f32(static_cast<const uint16_t*>(q.scales)[n * g + k / quant_group_elems(q.dtype, q.dim(1))]);
}

}  // namespace

TEST(Quant, F16RoundingMatchesIeee) {
  EXPECT_EQ(f32_to_f16(1.f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.f), 0x7c00);  // halfway to 65536 rounds to even: infinity
  EXPECT_EQ(f32_to_f16(1.f + 1.f / 2048), 0x3c00);      // tie, to even
  EXPECT_EQ(f32_to_f16(1.f + 3.f / 2048), 0x3c02);      // tie, to even (up)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.f, -25)), 0x0000);  // tie with zero: even
  EXPECT_EQ(f32_to_f16(std::ldexp(3.f, -26)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.f, -25)), 0x0002);  // 1.5 units: tie, to even
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.f, -24)), 0x03ff);
  EXPECT_EQ(f32_to_f16(std::ldexp(2047.f, -25)), 0x0400);  // rounds up into the normals
  EXPECT_EQ(f32_to_f16(bits_to_f32(0x7fc00000u)) & 0x7c00, 0x7c00);
  // Every finite fp16 value survives f16 -> f32 -> f16.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    ASSERT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h) << std::hex << h;
  }
}

TEST(Quant, RoundTripWithinHalfAStepAndExactScales) {
  for (DType f : {DType::Q8, DType::Q4}) {
    for (int64_t K : {int64_t(2048), int64_t(768), int64_t(300), int64_t(36), int64_t(4)}) {
      SCOPED_TRACE(std::string(dtype_name(f)) + " K=" + std::to_string(K));
      HostMatrix m(9, K, uint32_t(K));
      auto be = make_cpu_backend();
      const Tensor q = be->weight_as(m.t, f, "test.weight");
      ASSERT_EQ(q.dtype, f);
      ASSERT_EQ(q.dim(0), 9);
      ASSERT_EQ(q.dim(1), K);
      const std::vector<float> d = dequantized(q);
      const int64_t gsize = quant_group_elems(f, K);
      for (int64_t n = 0; n < 9; ++n) {
        for (int64_t g = 0; g < quant_groups(f, K); ++g) {
          float absmax = 0;
          for (int64_t k = g * gsize; k < std::min(K, (g + 1) * gsize); ++k) absmax = std::max(absmax, std::fabs(m.at(n, k)));
          // The scale is fp16(absmax / qmax) of exactly this group (the last one may be short).
          EXPECT_EQ(scale_of(q, n, g * gsize), f16_to_f32(f32_to_f16(absmax / float(quant_max(f)))));
        }
        for (int64_t k = 0; k < K; ++k) {
          const float s = scale_of(q, n, k);
          EXPECT_LE(std::fabs(d[size_t(n * K + k)] - m.at(n, k)), 0.5f * s * 1.001f) << n << "," << k;
        }
      }
      // Padding past K is zero weights.
      const int64_t rb = quant_row_bytes(f, K), used = f == DType::Q4 ? (K + 1) / 2 : K;
      for (int64_t n = 0; n < 9; ++n) {
        for (int64_t b = used; b < rb; ++b) EXPECT_EQ(q.as<uint8_t>()[n * rb + b], 0) << n << "," << b;
      }
      if (f == DType::Q4 && K % 2 == 1) {
        EXPECT_EQ(q.as<uint8_t>()[used - 1] >> 4, 0);
      }
    }
  }
}

TEST(Quant, ExtremesZeroRowsAndOutliers) {
  std::vector<uint16_t> v(3 * 256, f32_to_bf16(0.f));
  v[256 + 5] = f32_to_bf16(-3.f);  // row 1: one outlier, the rest zero
  v[256 + 6] = f32_to_bf16(1.f);
  for (int k = 0; k < 256; ++k) v[size_t(512 + k)] = f32_to_bf16(k < 128 ? 1e-3f : -100.f);  // row 2: two groups
  const Tensor t(v.data(), DType::BF16, {3, 256});
  auto be = make_cpu_backend();
  for (DType f : {DType::Q8, DType::Q4}) {
    const Tensor q = be->weight_as(t, f, "x");
    const std::vector<float> d = dequantized(q);
    for (int k = 0; k < 256; ++k) EXPECT_EQ(d[size_t(k)], 0.f);  // zero row: scale 0, q 0
    EXPECT_NEAR(d[256 + 5], -3.f, 2e-3f);  // absmax maps to -qmax (the fp16 scale off by <= 2^-11)
    EXPECT_NEAR(d[256 + 6], 1.f, 0.5f * scale_of(q, 1, 6) * 1.001f);
    if (f == DType::Q4) {
      EXPECT_NEAR(d[512], 1e-3f, 1e-4f);  // its own group: not swamped by the -100s
      EXPECT_NEAR(d[512 + 200], -100.f, 0.05f);
    }
  }
}

TEST(Quant, RowViewsKeepTheirScales) {
  HostMatrix m(10, 300, 3);
  auto be = make_cpu_backend();
  for (DType f : {DType::Q8, DType::Q4}) {
    const Tensor q = be->weight_as(m.t, f, "x");
    const std::vector<float> all = dequantized(q);
    const Tensor part = q.rows(4, 3);
    EXPECT_EQ(part.bytes(), size_t(3 * quant_row_bytes(f, 300)));
    const std::vector<float> some = dequantized(part);
    for (size_t i = 0; i < some.size(); ++i) ASSERT_EQ(some[i], all[4 * 300 + i]);
    EXPECT_THROW(q.reshaped({20, 150}), Error);
  }
}

TEST(Quant, OnlyMatricesAreQuantized) {
  std::vector<uint16_t> v(24);
  const Tensor t3(v.data(), DType::BF16, {2, 3, 4});
  auto be = make_cpu_backend();
  try {
    be->weight_as(t3, DType::Q4, "model.conv.weight");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.conv.weight"), std::string::npos) << e.what();
  }
  // bf16 keeps the host view as it is.
  const Tensor t2(v.data(), DType::BF16, {4, 6});
  EXPECT_EQ(be->weight_as(t2, DType::BF16, "w").data, v.data());
}

TEST(Quant, WeightPlanParsing) {
  const WeightPlan all4 = parse_weight_plan("int4");
  EXPECT_EQ(all4.experts, DType::Q4);
  EXPECT_EQ(all4.attention, DType::Q4);
  EXPECT_EQ(all4.lm_head, DType::Q4);
  EXPECT_EQ(all4.talker, DType::Q4);
  EXPECT_TRUE(parse_weight_plan("bf16").all_bf16());
  const WeightPlan mixed = parse_weight_plan("experts=int4,attention=int8");
  EXPECT_EQ(mixed.experts, DType::Q4);
  EXPECT_EQ(mixed.attention, DType::Q8);
  EXPECT_EQ(mixed.lm_head, DType::BF16);
  EXPECT_EQ(mixed.talker, DType::BF16);
  EXPECT_EQ(weight_plan_string(mixed), "experts=int4,attention=int8,lm_head=bf16,talker=bf16");
  EXPECT_EQ(parse_weight_plan("talker=int8,lm_head=int4").talker, DType::Q8);
  auto message = [](const std::string& spec) {
    try {
      parse_weight_plan(spec);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("int3").find("'int3' is not one of bf16, int8, int4"), std::string::npos) << message("int3");
  EXPECT_NE(message("experts=fp8").find("'fp8'"), std::string::npos);
  EXPECT_NE(message("vision=int4").find("part 'vision' is not one of experts, attention, lm_head, talker"),
            std::string::npos)
      << message("vision=int4");
  EXPECT_NE(message("experts=int4,attention").find("'attention' is not part=format"), std::string::npos);
  EXPECT_NE(message("").find("is not one of"), std::string::npos);
}

// The CPU backend's ops over Q8/Q4 weights equal the same ops over fp32 tensors holding the
// dequantized values (one formula: dequantize_row, then the fp32 reference math).
TEST(Quant, CpuLinearAndMoeEqualTheDequantizedReference) {
  auto be = make_cpu_backend();
  std::mt19937 g(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<std::vector<float>> keep;
  auto as_f32 = [&](const Tensor& q) {
    keep.push_back(dequantized(q));
    return Tensor(keep.back().data(), DType::F32, {q.dim(0), q.dim(1)});
  };
  auto act = [&](int64_t rows, int64_t cols) {
    Tensor t = be->alloc({rows, cols}, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = nd(g);
    return t;
  };
  auto same = [](const Tensor& a, const Tensor& b) {
    for (int64_t i = 0; i < a.numel(); ++i)
      if (a.as<float>()[i] != b.as<float>()[i]) return false;
    return true;
  };
  std::vector<HostMatrix> mats;
  mats.reserve(64);
  for (DType f : {DType::Q8, DType::Q4}) {
    SCOPED_TRACE(dtype_name(f));
    mats.emplace_back(96, 200, 11);
    const Tensor q = be->weight_as(mats.back().t, f, "w");
    const Tensor x = act(3, 200), y1 = be->alloc({3, 96}, DType::F32), y2 = be->alloc({3, 96}, DType::F32);
    be->linear(x, q, Tensor(), y1, Activation::SiLU);
    be->linear(x, as_f32(q), Tensor(), y2, Activation::SiLU);
    EXPECT_TRUE(same(y1, y2));

    const int E = 4, H = 64, I = 40;
    MoeWeights mq, mf;
    mats.emplace_back(E, H, 21, 0.5f);
    mq.router = mf.router = mats.back().t;
    for (int e = 0; e < E; ++e) {
      MlpWeights wq;
      mats.emplace_back(I, H, 30 + e);
      wq.gate = be->weight_as(mats.back().t, f, "gate");
      mats.emplace_back(I, H, 40 + e);
      wq.up = be->weight_as(mats.back().t, f, "up");
      mats.emplace_back(H, I, 50 + e);
      wq.down = be->weight_as(mats.back().t, f, "down");
      mq.experts.push_back(wq);
      mf.experts.push_back({as_f32(wq.gate), as_f32(wq.up), as_f32(wq.down)});
    }
    mq.top_k = mf.top_k = 2;
    mq.norm_topk_prob = mf.norm_topk_prob = true;
    const Tensor xm = act(2, H), o1 = be->alloc({2, H}, DType::F32), o2 = be->alloc({2, H}, DType::F32);
    be->moe(mq, xm, o1);
    be->moe(mf, xm, o2);
    EXPECT_TRUE(same(o1, o2));
    // And the quantized output stays close to the bf16 one (the quantization error itself).
    const Tensor o3 = be->alloc({3, 96}, DType::F32);
    be->linear(x, mats[mats.size() - 1 - 3 * E - 1].t, Tensor(), o3, Activation::SiLU);
    double num = 0, den = 0;
    for (int64_t i = 0; i < o3.numel(); ++i) {
      num += std::pow(double(y1.as<float>()[i]) - o3.as<float>()[i], 2);
      den += std::pow(double(o3.as<float>()[i]), 2);
    }
    EXPECT_LT(std::sqrt(num / den), f == DType::Q8 ? 0.01 : 0.15);
  }
}

TEST(Quant, SyntheticQuantizedWeightsAreTheQuantizedSyntheticValues) {
  auto be = make_cpu_backend();
  const Tensor b = be->synthetic_weight({5, 130}, 9, 0.1f);
  for (DType f : {DType::Q8, DType::Q4}) {
    const Tensor q = be->synthetic_weight_as({5, 130}, 9, 0.1f, f);
    const Tensor r = be->weight_as(b, f, "b");
    ASSERT_EQ(q.bytes(), r.bytes());
    EXPECT_EQ(std::memcmp(q.data, r.data, q.bytes()), 0);
    EXPECT_EQ(std::memcmp(q.scales, r.scales, size_t(5 * quant_groups(f, 130)) * 2), 0);
  }
}
