// Every CUDA op against the CPU reference on fresh random inputs of the release's shapes
// (thinker: hidden 2048, 32/4 heads of 128, 128 experts top-8 of width 768, vocab 152064;
// talker: hidden 1024, shared expert; encoder/code2wav attention variants). Bounds: see
// cuda_test_util.h. GPU outputs are poisoned with NaN before each op.
#include "cuda_test_util.h"

namespace omni::test {
namespace {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
    p = std::make_unique<Pair>();
  }
  std::unique_ptr<Pair> p;
};

TEST_F(CudaOps, EmbedRealVocab) {
  auto table = p->weight({152064, 2048}, 1.f);
  auto ids = p->ints({5}, {0, 151643, 7, 152063, 42});
  auto out = p->out({5, 2048});
  p->cpu->embed(table.c, ids.c, out.c);
  p->gpu->embed(table.g, ids.g, out.g);
  EXPECT_EQ(p->rel_error(out), 0.0);
}

// Constrained decoding's mask (Backend::mask_logits) on the release vocabulary: the same ids become -inf on both
// backends and every other logit is untouched, for a sparse mask (a few structural tokens) and a dense one.
TEST_F(CudaOps, MaskLogitsMatchesTheCpuBitForBit) {
  const int64_t V = 152064;
  for (const double density : {0.0005, 0.6}) {
    std::vector<uint64_t> bits(size_t((V + 63) / 64), 0);
    std::bernoulli_distribution keep(density);
    for (int64_t i = 0; i < V; ++i)
      if (keep(p->rng)) bits[size_t(i / 64)] |= 1ull << (i % 64);
    bits.back() |= 1ull << ((V - 1) % 64);  // the last id allowed: the tail word is read right
    auto logits = p->act({1, V});
    p->cpu->mask_logits(logits.c, bits.data());
    p->gpu->mask_logits(logits.g, bits.data());
    const std::vector<float> c = p->get(*p->cpu, logits.c), g = p->get(*p->gpu, logits.g);
    int64_t masked = 0, differ = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      masked += std::isinf(c[i]) && c[i] < 0;
      differ += !(c[i] == g[i]);
    }
    EXPECT_EQ(differ, 0) << "density " << density;
    EXPECT_GT(masked, 0);
    EXPECT_LT(masked, V);
  }
}

TEST_F(CudaOps, EmbedBadIdIsAnError) {
  auto table = p->weight({100, 64}, 1.f);
  auto ids = p->ints({2}, {3, 100});
  auto out = p->out({2, 64});
  p->gpu->embed(table.g, ids.g, out.g);
  EXPECT_THROW(p->gpu->synchronize(), Error);
}

// Weights go up through the pinned staging ring (4 chunks of 32 MiB, cuda_upload.cu): tensors packed into
// one chunk, one spanning several, a wrap of the ring (more than 128 MiB in all), float32 and float16
// converted on the way, and uploads after weights_loaded() gave the chunks back. Every value bit-exact.
TEST_F(CudaOps, WeightUploadsArriveBitExactAsBf16) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> d(-3.f, 3.f);
  struct Case {
    DType dtype;
    int64_t rows, cols;
  };
  const Case cases[] = {{DType::BF16, 1, 1},         {DType::F32, 3, 5},          {DType::F16, 7, 129},
                        {DType::BF16, 5003, 2048},   {DType::F32, 4099, 4096},    {DType::F16, 1000, 1001},
                        {DType::BF16, 30000, 2048},  {DType::F32, 9, 8},          {DType::BF16, 2, 3}};
  for (int round = 0; round < 2; ++round) {
    for (const Case& c : cases) {
      const size_t n = size_t(c.rows * c.cols);
      std::vector<uint16_t> expect(n), h16;
      std::vector<float> h32;
      Tensor host(nullptr, c.dtype, {c.rows, c.cols});
      if (c.dtype == DType::F32) {
        h32.resize(n);
        for (size_t i = 0; i < n; ++i) h32[i] = d(rng), expect[i] = f32_to_bf16(h32[i]);
        host.data = h32.data();
      } else {
        h16.resize(n);
        for (size_t i = 0; i < n; ++i) {
          const float v = d(rng);
          h16[i] = c.dtype == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
          expect[i] = c.dtype == DType::F16 ? f32_to_bf16(f16_to_f32(h16[i])) : h16[i];
        }
        host.data = h16.data();
      }
      const Tensor w = p->gpu->weight(host);
      h32.assign(h32.size(), -1.f);  // the host copy may go as soon as weight() returns
      h16.assign(h16.size(), 0xFFFF);
      std::vector<uint16_t> got(n);
      p->gpu->download(got.data(), w);
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) bad += got[i] != expect[i];
      EXPECT_EQ(bad, 0u) << dtype_name(c.dtype) << " [" << c.rows << ", " << c.cols << "], round " << round;
    }
    p->gpu->weights_loaded();
  }
}

TEST_F(CudaOps, RmsNormAndAddRmsNorm) {
  for (int64_t rows : {1, 7}) {
    auto x = p->act({rows, 2048}, 3.f), b = p->act({rows, 2048});
    auto w = p->weight({2048}, 1.f);
    auto out = p->out({rows, 2048});
    p->cpu->rms_norm(x.c, w.c, 1e-6f, out.c);
    p->gpu->rms_norm(x.g, w.g, 1e-6f, out.g);
    EXPECT_LT(p->rel_error(out), kTolExact) << rows;
    auto out2 = p->out({rows, 2048});
    p->cpu->add_rms_norm(x.c, b.c, w.c, 1e-6f, out2.c);
    p->gpu->add_rms_norm(x.g, b.g, w.g, 1e-6f, out2.g);
    EXPECT_LT(p->rel_error(out2), kTolExact) << rows;
    EXPECT_LT(p->rel_error(x), kTolExact) << "residual stream after add_rms_norm";
  }
}

TEST_F(CudaOps, LayerNorm) {
  auto x = p->act({5, 1280}, 2.f);
  auto w = p->weight({1280}, 1.f), b = p->weight({1280}, 1.f);
  auto out = p->out({5, 1280});
  p->cpu->layer_norm(x.c, w.c, b.c, 1e-5f, out.c);
  p->gpu->layer_norm(x.g, w.g, b.g, 1e-5f, out.g);
  EXPECT_LT(p->rel_error(out), kTolExact);
}

TEST_F(CudaOps, AddAndCopy) {
  auto a = p->act({3, 2048}), b = p->act({3, 2048});
  auto out = p->out({3, 2048});
  p->cpu->add(a.c, b.c, out.c);
  p->gpu->add(a.g, b.g, out.g);
  EXPECT_EQ(p->rel_error(out), 0.0);
  auto dst = p->out({3, 2048});
  p->cpu->copy(a.c, dst.c);
  p->gpu->copy(a.g, dst.g);
  EXPECT_EQ(p->rel_error(dst), 0.0);
}

// One linear per case on both backends, each within tol(rows) of the CPU.
struct LinearCase {
  int64_t rows, out, in;
  bool bias;
  Activation act;
};
template <typename Tol>
void expect_linears_agree(Pair& p, std::initializer_list<LinearCase> cases, Tol tol) {
  for (const LinearCase& c : cases) {
    auto x = p.act({c.rows, c.in});
    auto w = p.weight({c.out, c.in}, 1.f / std::sqrt(float(c.in)));
    Pair::W b = c.bias ? p.weight({c.out}, 0.5f) : Pair::W{};
    auto out = p.out({c.rows, c.out});
    p.cpu->linear(x.c, w.c, b.c, out.c, c.act);
    p.gpu->linear(x.g, w.g, b.g, out.g, c.act);
    EXPECT_LT(p.rel_error(out), tol(c.rows)) << c.rows << "x" << c.in << " -> " << c.out;
  }
}

// rows 1..8 take the GEMV kernels (fp32 activations); more rows take cuBLAS (bf16 inputs).
class CudaOpsPrecision : public CudaPrecisionTest {};
INSTANTIATE_TEST_SUITE_P(Activations, CudaOpsPrecision, ::testing::Bool(), PrecisionName);

TEST_P(CudaOpsPrecision, LinearShapes) {
  expect_linears_agree(*p,
                       {
                           {1, 4096, 2048, false, Activation::None},
                           {1, 2048, 4096, false, Activation::None},
                           {3, 512, 2048, true, Activation::GELU},
                           {8, 768, 2048, false, Activation::SiLU},
                           {1, 100, 36, true, Activation::None},        // K % 8 != 0: scalar kernel
                           {33, 4096, 2048, false, Activation::None},   // cuBLAS
                           {130, 1280, 1280, true, Activation::GELU},  // cuBLAS
                       },
                       [&](int64_t rows) { return tol_rows(rows); });
}

// Matrices of <= 256K weights keep fp32 activations at any row count (more than 8 rows: the fp32
// GEMM of cuda_gemm_f32.cu; K % 4 != 0: the batched GEMV), so the fp32 bound holds in both settings.
TEST_P(CudaOpsPrecision, SmallLinearManyRowsStaysFp32) {
  expect_linears_agree(*p,
                       {
                           {9, 128, 2048, false, Activation::None},
                           {512, 128, 2048, false, Activation::None},  // the router's shape
                           {37, 96, 200, true, Activation::SiLU},
                           {70, 100, 36, true, Activation::GELU},
                           {20, 100, 38, false, Activation::None},  // K % 4 != 0: batched GEMV
                       },
                       [](int64_t) { return kTolExact; });
}

TEST_F(CudaOps, LmHeadGemv) {
  auto x = p->act({1, 2048});
  auto w = p->weight({152064, 2048}, 1.f / std::sqrt(2048.f));
  auto out = p->out({1, 152064});
  p->cpu->linear(x.c, w.c, Tensor(), out.c, Activation::None);
  p->gpu->linear(x.g, w.g, Tensor(), out.g, Activation::None);
  EXPECT_LT(p->rel_error(out), kTolExact);
}

TEST_P(CudaOpsPrecision, DenseMlp) {
  for (int64_t rows : {1, 5, 20}) {
    auto gate = p->weight({3072, 1024}, 1.f / 32), up = p->weight({3072, 1024}, 1.f / 32);
    auto down = p->weight({1024, 3072}, 1.f / 55);
    MlpWeights wc{gate.c, up.c, down.c}, wg{gate.g, up.g, down.g};
    auto x = p->act({rows, 1024});
    auto out = p->out({rows, 1024});
    p->cpu->mlp(wc, x.c, out.c);
    p->gpu->mlp(wg, x.g, out.g);
    EXPECT_LT(p->rel_error(out), tol_rows(rows)) << rows;
  }
}

// A MoE layer on both backends with identical weights.
struct Moe {
  MoeWeights c, g;
};
Moe make_moe(Pair& p, int E, int k, int64_t H, int64_t I, int64_t shared) {
  Moe m;
  auto r = p.weight({E, H}, 4.f / std::sqrt(float(H)));
  m.c.router = r.c;
  m.g.router = r.g;
  for (int e = 0; e < E; ++e) {
    auto gate = p.weight({I, H}, 1.f / std::sqrt(float(H))), up = p.weight({I, H}, 1.f / std::sqrt(float(H)));
    auto down = p.weight({H, I}, 1.f / std::sqrt(float(I)));
    m.c.experts.push_back({gate.c, up.c, down.c});
    m.g.experts.push_back({gate.g, up.g, down.g});
  }
  if (shared > 0) {
    auto gate = p.weight({shared, H}, 1.f / std::sqrt(float(H))), up = p.weight({shared, H}, 1.f / std::sqrt(float(H)));
    auto down = p.weight({H, shared}, 1.f / std::sqrt(float(shared)));
    auto sg = p.weight({1, H}, 1.f / std::sqrt(float(H)));
    m.c.shared = {gate.c, up.c, down.c};
    m.g.shared = {gate.g, up.g, down.g};
    m.c.shared_gate = sg.c;
    m.g.shared_gate = sg.g;
  }
  for (MoeWeights* w : {&m.c, &m.g}) {
    w->top_k = k;
    w->norm_topk_prob = true;
  }
  p.cpu->prepare_moe(m.c);
  p.gpu->prepare_moe(m.g);
  return m;
}

TEST_P(CudaOpsPrecision, ThinkerMoe) {
  Moe m = make_moe(*p, 128, 8, 2048, 768, 0);
  for (int64_t rows : {1, 1, 64}) {
    auto x = p->act({rows, 2048});
    auto out = p->out({rows, 2048});
    p->cpu->moe(m.c, x.c, out.c);
    p->gpu->moe(m.g, x.g, out.g);
    // One row: fused GEMV path (fp32). Many rows: grouped GEMM on the tensor cores with
    // bf16-rounded (bf16) or hi/lo-split (f32) activations, fp32 accumulation.
    EXPECT_LT(p->rel_error(out), tol_rows(rows)) << rows;
  }
}

// Prefill where experts hold more than one 64-entry tile (cuda_moe_mma.cu numbers tiles over all
// experts): 200 tokens close to one another choose mostly the same experts, so a few experts get
// ~200 entries (4 tiles, the last partial) and others a handful; then 300 unrelated tokens (~19 each).
TEST_P(CudaOpsPrecision, ThinkerMoeCrowdedExperts) {
  Moe m = make_moe(*p, 128, 8, 2048, 768, 0);
  const std::vector<float> base = p->random(2048), noise = p->random(200 * 2048, 0.05f);
  std::vector<float> xs(200 * 2048);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = base[i % 2048] + noise[i];
  Pair::A crowded{p->cpu->alloc({200, 2048}), p->gpu->alloc({200, 2048})};
  p->cpu->upload(crowded.c, xs.data());
  p->gpu->upload(crowded.g, xs.data());
  auto out = p->out({200, 2048});
  p->cpu->moe(m.c, crowded.c, out.c);
  p->gpu->moe(m.g, crowded.g, out.g);
  EXPECT_LT(p->rel_error(out), tol_rows(200)) << "crowded";
  auto x = p->act({300, 2048});
  auto out2 = p->out({300, 2048});
  p->cpu->moe(m.c, x.c, out2.c);
  p->gpu->moe(m.g, x.g, out2.g);
  EXPECT_LT(p->rel_error(out2), tol_rows(300)) << "spread";
}

TEST_P(CudaOpsPrecision, TalkerMoeWithSharedExpert) {
  Moe m = make_moe(*p, 128, 6, 1024, 384, 768);
  for (int64_t rows : {1, 3, 20}) {
    auto x = p->act({rows, 1024});
    auto out = p->out({rows, 1024});
    p->cpu->moe(m.c, x.c, out.c);
    p->gpu->moe(m.g, x.g, out.g);
    EXPECT_LT(p->rel_error(out), tol_rows(rows)) << rows;
  }
}

// The audio encoder's downsampler: conv 1 -> 480 then 480 -> 480 (3x3, stride 2, pad 1), GELU.
TEST_F(CudaOps, Conv2dGeluAndPermute) {
  auto x = p->act({2, 1, 128, 100});
  auto w1 = p->weight({480, 1, 3, 3}, 0.3f), b1 = p->weight({480}, 0.1f);
  auto y1 = p->out({2, 480, 64, 50});
  p->cpu->conv2d_gelu(x.c, w1.c, b1.c, 2, 1, y1.c);
  p->gpu->conv2d_gelu(x.g, w1.g, b1.g, 2, 1, y1.g);
  EXPECT_LT(p->rel_error(y1), kTolExact);
  auto w2 = p->weight({480, 480, 3, 3}, 1.f / 65.f), b2 = p->weight({480}, 0.1f);
  auto y2 = p->out({2, 480, 32, 25});
  p->cpu->conv2d_gelu(y1.c, w2.c, b2.c, 2, 1, y2.c);
  p->gpu->conv2d_gelu(y1.g, w2.g, b2.g, 2, 1, y2.g);
  EXPECT_LT(p->rel_error(y2), kTolExact);
  auto perm = p->out({2, 25, 480, 32});
  p->cpu->permute_0312(y2.c, perm.c);
  p->gpu->permute_0312(y2.g, perm.g);
  EXPECT_LT(p->rel_error(perm), kTolExact);
}

// code2wav's operations: dilated and depthwise causal conv1d, transposed conv, SnakeBeta,
// LayerScale, and the mean of the 16 codebook embeddings.
TEST_F(CudaOps, SpeechOps) {
  {
    auto x = p->act({64 + 18, 96});
    auto w = p->weight({128, 96, 7}, 0.05f), b = p->weight({128}, 0.1f);
    auto out = p->out({64, 128});
    p->cpu->conv1d(x.c, w.c, b.c, 3, 1, out.c);
    p->gpu->conv1d(x.g, w.g, b.g, 3, 1, out.g);
    EXPECT_LT(p->rel_error(out), kTolExact) << "dilated conv1d";
  }
  {
    auto x = p->act({40 + 6, 256});
    auto w = p->weight({256, 1, 7}, 0.3f);
    auto out = p->out({40, 256});
    p->cpu->conv1d(x.c, w.c, Tensor(), 1, 256, out.c);
    p->gpu->conv1d(x.g, w.g, Tensor(), 1, 256, out.g);
    EXPECT_LT(p->rel_error(out), kTolExact) << "depthwise conv1d";
  }
  {
    auto x = p->act({20, 128});
    auto w = p->weight({128, 64, 16}, 0.05f), b = p->weight({64}, 0.1f);
    auto out = p->out({(20 + 1) * 8 - 16, 64});
    p->cpu->conv_transpose1d(x.c, w.c, b.c, 8, out.c);
    p->gpu->conv_transpose1d(x.g, w.g, b.g, 8, out.g);
    EXPECT_LT(p->rel_error(out), kTolExact) << "conv_transpose1d";
  }
  {
    auto x = p->act({50, 96}, 3.f);
    auto la = p->weight({96}, 1.f), lb = p->weight({96}, 1.f);
    auto out = p->out({50, 96});
    p->cpu->snake_beta(x.c, la.c, lb.c, out.c);
    p->gpu->snake_beta(x.g, la.g, lb.g, out.g);
    EXPECT_LT(p->rel_error(out), kTolExact) << "snake_beta";
    auto sc = p->weight({96}, 1.f);
    auto o2 = p->out({50, 96});
    p->cpu->channel_scale(x.c, sc.c, o2.c);
    p->gpu->channel_scale(x.g, sc.g, o2.g);
    EXPECT_EQ(p->rel_error(o2), 0.0) << "channel_scale";
  }
  {
    auto table = p->weight({16 * 2048, 1024}, 1.f);
    std::vector<int32_t> codes(size_t(5 * 16));
    std::uniform_int_distribution<int32_t> code(0, 2047);
    for (int32_t& c : codes) c = code(p->rng);
    auto cd = p->ints({5, 16}, codes);
    auto out = p->out({5, 1024});
    p->cpu->embed_codebooks_mean(table.c, cd.c, 2048, out.c);
    p->gpu->embed_codebooks_mean(table.g, cd.g, 2048, out.g);
    EXPECT_LT(p->rel_error(out), kTolExact) << "embed_codebooks_mean";
  }
}

}  // namespace
}  // namespace omni::test

namespace omni::test {
namespace {

// The vision tower's position table: four weighted rows of a [2304, 1152] table per patch.
TEST_F(CudaOps, EmbedWeightedVisionPositions) {
  auto table = p->weight({2304, 1152}, 1.f);
  const int rows = 40;
  std::vector<int32_t> ids(size_t(rows) * 4);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919) % 2304);
  auto id = p->ints({rows, 4}, ids);
  auto w = p->act({rows, 4});
  auto out = p->out({rows, 1152});
  p->cpu->embed_weighted(table.c, id.c, w.c, out.c);
  p->gpu->embed_weighted(table.g, id.g, w.g, out.g);
  EXPECT_LT(p->rel_error(out), kTolExact);
  ids[5] = 2304;  // outside the table
  auto bad = p->ints({rows, 4}, ids);
  p->gpu->embed_weighted(table.g, bad.g, w.g, out.g);
  EXPECT_THROW(p->gpu->synchronize(), Error);
}

// The vision MLP's tanh GELU in every linear path (GEMV rows, fp32 GEMM, cuBLAS).
TEST_P(CudaOpsPrecision, LinearGeluTanh) {
  expect_linears_agree(*p,
                       {
                           {3, 4304, 1152, true, Activation::GELUTanh},
                           {9, 128, 1152, true, Activation::GELUTanh},
                           {200, 4304, 1152, true, Activation::GELUTanh},
                       },
                       [&](int64_t rows) { return tol_rows(rows); });
}

}  // namespace
}  // namespace omni::test
