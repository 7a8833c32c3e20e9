// The speech operations of the CPU backend against direct transcriptions of the PyTorch
// definitions (channels-first, explicit padding / trimming), and the sampler's token suppression.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend.h"
#include "cpu/cpu_backend.h"

using namespace omni;

namespace {

std::mt19937 gen{42};
std::vector<float> randn(size_t n, float scale = 0.5f) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(gen);
  return v;
}
Tensor view(std::vector<float>& v, std::initializer_list<int64_t> shape) { return Tensor(v.data(), DType::F32, shape); }

// torch: F.conv1d(F.pad(x, ((K-1)*d, 0)), w, b, dilation=d, groups=g) on x [C_in, L] (channels first).
std::vector<float> ref_causal_conv1d(const std::vector<float>& x, int C_in, int L, const std::vector<float>& w,
                                     int C_out, int K, const std::vector<float>& b, int d, int g) {
  const int per = C_in / g, out_per = C_out / g, pad = (K - 1) * d;
  std::vector<float> y(size_t(C_out * L));
  for (int o = 0; o < C_out; ++o)
    for (int t = 0; t < L; ++t) {
      double acc = b[size_t(o)];
      for (int i = 0; i < per; ++i)
        for (int k = 0; k < K; ++k) {
          const int src = t + k * d - pad;
          if (src >= 0) acc += double(w[size_t((o * per + i) * K + k)]) * x[size_t(((o / out_per) * per + i) * L + src)];
        }
      y[size_t(o * L + t)] = float(acc);
    }
  return y;
}

// torch: F.conv_transpose1d(x, w, b, stride=s)[..., K-s : -(K-s)] on x [C_in, L].
std::vector<float> ref_trans_conv(const std::vector<float>& x, int C_in, int L, const std::vector<float>& w, int C_out,
                                  int K, const std::vector<float>& b, int s, int* out_len) {
  const int full = (L - 1) * s + K, trim = K - s, n = full - 2 * trim;
  std::vector<double> y(size_t(C_out * full), 0.0);
  for (int c = 0; c < C_in; ++c)
    for (int i = 0; i < L; ++i)
      for (int o = 0; o < C_out; ++o)
        for (int j = 0; j < K; ++j) y[size_t(o * full + i * s + j)] += double(x[size_t(c * L + i)]) * w[size_t((c * C_out + o) * K + j)];
  std::vector<float> out(size_t(C_out * n));
  for (int o = 0; o < C_out; ++o)
    for (int u = 0; u < n; ++u) out[size_t(o * n + u)] = float(y[size_t(o * full + u + trim)] + b[size_t(o)]);
  *out_len = n;
  return out;
}

// [C, L] -> [L, C] with `front` zero rows prepended.
std::vector<float> time_major(const std::vector<float>& x, int C, int L, int front = 0) {
  std::vector<float> t(size_t((L + front) * C), 0.f);
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < L; ++i) t[size_t((i + front) * C + c)] = x[size_t(c * L + i)];
  return t;
}

double max_diff_tm(const std::vector<float>& got_tm, const std::vector<float>& want_cf, int C, int L) {
  double m = 0;
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < L; ++i) m = std::max(m, std::fabs(double(got_tm[size_t(i * C + c)]) - want_cf[size_t(c * L + i)]));
  return m;
}

struct ConvCase { int C_in, C_out, K, d, g; };

TEST(SpeechOps, CausalConv1dMatchesTorchDefinition) {
  CpuBackend be;
  const int L = 23;
  for (ConvCase cc : {ConvCase{6, 4, 7, 1, 1}, ConvCase{5, 5, 7, 3, 1}, ConvCase{8, 8, 7, 1, 8}, ConvCase{4, 6, 1, 1, 1},
                      ConvCase{6, 4, 3, 2, 2}}) {
    auto x = randn(size_t(cc.C_in * L)), w = randn(size_t(cc.C_out * (cc.C_in / cc.g) * cc.K)), b = randn(size_t(cc.C_out));
    const int pad = (cc.K - 1) * cc.d;
    auto xt = time_major(x, cc.C_in, L, pad);
    std::vector<float> y(size_t(L * cc.C_out));
    be.conv1d(view(xt, {L + pad, cc.C_in}), view(w, {cc.C_out, cc.C_in / cc.g, cc.K}), view(b, {cc.C_out}), cc.d, cc.g,
              view(y, {L, cc.C_out}));
    auto want = ref_causal_conv1d(x, cc.C_in, L, w, cc.C_out, cc.K, b, cc.d, cc.g);
    EXPECT_LT(max_diff_tm(y, want, cc.C_out, L), 1e-5) << "K " << cc.K << " d " << cc.d << " g " << cc.g;
  }
}

TEST(SpeechOps, ConvTransposeWithSymmetricTrimMatchesTorchDefinition) {
  CpuBackend be;
  const int L = 9;
  for (auto [K, s] : {std::pair{16, 8}, std::pair{10, 5}, std::pair{6, 3}, std::pair{2, 2}, std::pair{3, 3}}) {
    const int C_in = 6, C_out = 3;
    auto x = randn(size_t(C_in * L)), w = randn(size_t(C_in * C_out * K)), b = randn(size_t(C_out));
    int n = 0;
    auto want = ref_trans_conv(x, C_in, L, w, C_out, K, b, s, &n);
    ASSERT_EQ(n, (L + 1) * s - K);
    auto xt = time_major(x, C_in, L);
    std::vector<float> y(size_t(n * C_out));
    be.conv_transpose1d(view(xt, {L, C_in}), view(w, {C_in, C_out, K}), view(b, {C_out}), s, view(y, {n, C_out}));
    EXPECT_LT(max_diff_tm(y, want, C_out, n), 1e-5) << "K " << K << " s " << s;
  }
}

TEST(SpeechOps, ConvRejectsMismatchedShapes) {
  CpuBackend be;
  auto x = randn(40), w = randn(4 * 4 * 7), b = randn(4), y = randn(40);
  EXPECT_THROW(be.conv1d(view(x, {10, 4}), view(w, {4, 4, 7}), view(b, {4}), 1, 1, view(y, {10, 4})), std::exception);
  EXPECT_THROW(be.conv_transpose1d(view(x, {10, 4}), view(w, {4, 4, 7}), view(b, {4}), 2, view(y, {10, 4})),
               std::exception);
}

TEST(SpeechOps, SnakeBetaChannelScaleAndCodebookMean) {
  CpuBackend be;
  const int L = 5, C = 3;
  auto x = randn(size_t(L * C), 2.f), a = randn(C), bt = randn(C), y = randn(size_t(L * C));
  be.snake_beta(view(x, {L, C}), view(a, {C}), view(bt, {C}), view(y, {L, C}));
  for (int i = 0; i < L; ++i)
    for (int c = 0; c < C; ++c) {
      const double v = x[size_t(i * C + c)], s = std::sin(v * std::exp(double(a[size_t(c)])));
      EXPECT_NEAR(y[size_t(i * C + c)], v + s * s / (std::exp(double(bt[size_t(c)])) + 1e-9), 1e-5);
    }
  be.channel_scale(view(x, {L, C}), view(a, {C}), view(y, {L, C}));
  for (int i = 0; i < L * C; ++i) EXPECT_FLOAT_EQ(y[size_t(i)], x[size_t(i)] * a[size_t(i % C)]);
  // 2 codebooks of 4 entries, hidden 3: out[t] = (table[c0] + table[4 + c1]) / 2
  auto table = randn(8 * 3);
  std::vector<int32_t> codes = {1, 2, 3, 0};
  std::vector<float> out(6);
  be.embed_codebooks_mean(view(table, {8, 3}), Tensor(codes.data(), DType::I32, {2, 2}), 4, view(out, {2, 3}));
  for (int h = 0; h < 3; ++h) {
    EXPECT_FLOAT_EQ(out[size_t(h)], (table[size_t(1 * 3 + h)] + table[size_t(6 * 3 + h)]) / 2);
    EXPECT_FLOAT_EQ(out[size_t(3 + h)], (table[size_t(3 * 3 + h)] + table[size_t(4 * 3 + h)]) / 2);
  }
  codes[1] = 4;  // outside its codebook
  EXPECT_THROW(be.embed_codebooks_mean(view(table, {8, 3}), Tensor(codes.data(), DType::I32, {2, 2}), 4,
                                       view(out, {2, 3})),
               std::exception);
}

TEST(SpeechOps, SamplerSuppressesRangeExceptOneId) {
  CpuBackend be;
  std::vector<float> logits = {0.f, 1.f, 2.f, 9.f, 8.f, 7.f};
  SamplingParams p;
  p.suppress_begin = 3;
  p.suppress_end = 6;
  EXPECT_EQ(be.sample(view(logits, {1, 6}), p, {}, 0.f), 2);
  p.suppress_except = 4;
  EXPECT_EQ(be.sample(view(logits, {1, 6}), p, {}, 0.f), 4);
  p.suppress_except = -1;
  p.greedy = false;
  p.temperature = 0.9f;
  p.top_k = 50;
  for (float u = 0.f; u < 1.f; u += 0.01f) EXPECT_LT(be.sample(view(logits, {1, 6}), p, {}, u), 3);
  // HF order: the repetition penalty applies first, suppression still wins.
  p.greedy = true;
  p.repetition_penalty = 1.05f;
  EXPECT_EQ(be.sample(view(logits, {1, 6}), p, {2}, 0.f), 2);
}

}  // namespace
