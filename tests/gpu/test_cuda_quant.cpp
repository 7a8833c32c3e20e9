// Quantized weights (quant.h) on CUDA against the CPU reference: the GPU quantizer equals the
// CPU one bit for bit (so both backends hold identical Q8/Q4 weights), then every op that reads
// them (GEMV decode, dequantized prefill, fused q/k/v, MoE experts, whole stacks with graphs,
// the tiny models through the API) agrees with the CPU running the same quantized weights.
// Bounds: cuda_test_util.h (the quantization error itself is the same on both sides).
#include <cstring>

#include "cuda_test_util.h"
#include "model/decoder.h"
#include "omni/engine.h"
#include "quant.h"
#include "synthetic_weights.h"

namespace omni::test {
namespace {

class CudaQuant : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
    p = std::make_unique<Pair>();
  }
  // The same bf16 values quantized by each backend.
  Pair::W qweight(std::initializer_list<int64_t> shape, float scale, DType f) {
    Tensor t(nullptr, DType::BF16, shape);
    host_.emplace_back(static_cast<size_t>(t.numel()));
    std::normal_distribution<float> d(0.f, scale);
    for (uint16_t& x : host_.back()) x = f32_to_bf16(d(p->rng));
    t.data = host_.back().data();
    return {p->cpu->weight_as(t, f, "test"), p->gpu->weight_as(t, f, "test")};
  }
  // Data and scales of a GPU Q8/Q4 weight equal the CPU's, byte for byte.
  void expect_same_bytes(const Tensor& c, const Tensor& g) {
    ASSERT_EQ(c.dtype, g.dtype);
    ASSERT_EQ(c.bytes(), g.bytes());
    std::vector<uint8_t> data(c.bytes());
    p->gpu->download(data.data(), g);
    EXPECT_EQ(std::memcmp(data.data(), c.data, data.size()), 0) << "packed weights " << c.shape_str();
    const int64_t ns = c.dim(0) * quant_groups(c.dtype, c.dim(1));
    std::vector<uint16_t> scales(static_cast<size_t>(ns));
    p->gpu->download(scales.data(), Tensor(g.scales, DType::F16, {ns}, true));
    EXPECT_EQ(std::memcmp(scales.data(), c.scales, scales.size() * 2), 0) << "scales " << c.shape_str();
  }
  std::unique_ptr<Pair> p;
  std::deque<std::vector<uint16_t>> host_;
};

TEST_F(CudaQuant, QuantizeIsBitExactWithTheCpu) {
  for (DType f : {DType::Q8, DType::Q4}) {
    // lm_head (chunked through the staging area), q_proj, down, odd and short rows.
    for (auto shape : {std::pair<int64_t, int64_t>{152064, 2048}, {4096, 2048}, {2048, 768}, {100, 36}, {7, 300}}) {
      SCOPED_TRACE(std::string(dtype_name(f)) + " " + std::to_string(shape.first) + "x" + std::to_string(shape.second));
      Tensor t(nullptr, DType::BF16, {shape.first, shape.second});
      host_.emplace_back(static_cast<size_t>(t.numel()));
      std::normal_distribution<float> d(0.f, 0.02f);
      for (uint16_t& x : host_.back()) x = f32_to_bf16(d(p->rng));
      // A zero row, an outlier row, ties of w / s at .5 (values k * s / 2 for the scale of 7).
      for (int64_t k = 0; k < shape.second; ++k) {
        host_.back()[size_t(k)] = 0;
        if (shape.first > 2) host_.back()[size_t(shape.second + k)] = f32_to_bf16(k == 3 ? 50.f : 1e-3f * float(k % 9));
      }
      t.data = host_.back().data();
      expect_same_bytes(p->cpu->weight_as(t, f, "x"), p->gpu->weight_as(t, f, "x"));
    }
    expect_same_bytes(p->cpu->synthetic_weight_as({1000, 2048}, 3, 0.02f, f),
                      p->gpu->synthetic_weight_as({1000, 2048}, 3, 0.02f, f));
  }
}

TEST_F(CudaQuant, LinearDecodeAndPrefill) {
  struct Case {
    int64_t rows, out, in;
    bool bias;
    Activation act;
    double tol;
  };
  const Case cases[] = {
      {1, 4096, 2048, false, Activation::None, kTolExact}, {1, 2048, 4096, false, Activation::None, kTolExact},
      {3, 512, 2048, true, Activation::GELU, kTolExact},   {8, 768, 2048, false, Activation::SiLU, kTolExact},
      {1, 101, 2048, false, Activation::None, kTolExact},  // odd row count: one row per warp
      {2, 100, 36, true, Activation::None, kTolExact},     // K not a whole chunk: scalar kernel
      {1, 152064, 2048, false, Activation::None, kTolExact},  // lm_head
      {33, 4096, 2048, false, Activation::None, kTolBf16},    // prefill: bf16 copy + cuBLAS
      {20, 64, 300, true, Activation::SiLU, kTolExact},       // small: bf16 copy + fp32 GEMV
  };
  for (DType f : {DType::Q8, DType::Q4}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(f)) + " " + std::to_string(c.rows) + "x" + std::to_string(c.in) + " -> " +
                   std::to_string(c.out));
      auto x = p->act({c.rows, c.in});
      auto w = qweight({c.out, c.in}, 1.f / std::sqrt(float(c.in)), f);
      Pair::W b = c.bias ? p->weight({c.out}, 0.5f) : Pair::W{};
      auto out = p->out({c.rows, c.out});
      p->cpu->linear(x.c, w.c, b.c, out.c, c.act);
      p->gpu->linear(x.g, w.g, b.g, out.g, c.act);
      EXPECT_LT(p->rel_error(out), c.tol);
    }
  }
}

TEST_F(CudaQuant, AttentionPrefillThenFusedDecode) {
  for (DType f : {DType::Q8, DType::Q4}) {
    SCOPED_TRACE(dtype_name(f));
    const int64_t H = 2048;
    const int hq = 32, hkv = 4, hd = 128, cap = 64, P = 40;
    AttentionWeights ac, ag;
    auto wq = qweight({hq * hd, H}, 0.02f, f), wk = qweight({hkv * hd, H}, 0.02f, f);
    auto wv = qweight({hkv * hd, H}, 0.02f, f), wo = qweight({H, hq * hd}, 0.02f, f);
    auto qn = p->weight({hd}, 1.f), kn = p->weight({hd}, 1.f);
    ac = {wq.c, wk.c, wv.c, wo.c, {}, {}, {}, {}, qn.c, kn.c, hq, hkv, hd, 1e-6f, 1e6f};
    ag = {wq.g, wk.g, wv.g, wo.g, {}, {}, {}, {}, qn.g, kn.g, hq, hkv, hd, 1e-6f, 1e6f};
    KVCache cc{p->cpu->alloc({cap, hkv, hd}, p->cpu->kv_cache_dtype()), p->cpu->alloc({cap, hkv, hd}, p->cpu->kv_cache_dtype())};
    KVCache gc{p->gpu->alloc({cap, hkv, hd}, p->gpu->kv_cache_dtype()), p->gpu->alloc({cap, hkv, hd}, p->gpu->kv_cache_dtype())};
    std::vector<int32_t> pos(P);
    for (int i = 0; i < P; ++i) pos[size_t(i)] = i;
    auto x = p->act({P, H});
    auto ps = p->ints({P}, pos);
    auto out = p->out({P, H});
    AttentionArgs a_c, a_g;
    a_c.positions = ps.c;
    a_c.cache = &cc;
    a_g.positions = ps.g;
    a_g.cache = &gc;
    p->cpu->attention(ac, x.c, a_c, out.c);
    p->gpu->attention(ag, x.g, a_g, out.g);
    EXPECT_LT(p->rel_error(out), kTolBf16) << "prefill";
    for (int step = 0; step < 3; ++step) {
      auto x1 = p->act({1, H});
      auto p1 = p->ints({1}, {P + step});
      auto o1 = p->out({1, H});
      a_c.positions = p1.c;
      a_g.positions = p1.g;
      p->cpu->attention(ac, x1.c, a_c, o1.c);
      p->gpu->attention(ag, x1.g, a_g, o1.g);
      EXPECT_LT(p->rel_error(o1), kTolBf16) << "decode step " << step;  // the cache is bf16 on the GPU
    }
  }
}

struct QMoe {
  MoeWeights c, g;
};

TEST_F(CudaQuant, MoeDecodeAndPrefill) {
  struct Case {
    int E, k;
    int64_t H, I, shared;
    std::vector<int64_t> rows;
  };
  const Case cases[] = {{128, 8, 2048, 768, 0, {1, 1, 12}}, {128, 6, 1024, 384, 768, {1, 20}}, {8, 2, 16, 12, 0, {1, 9}}};
  for (DType f : {DType::Q8, DType::Q4}) {
    for (const Case& cs : cases) {
      SCOPED_TRACE(std::string(dtype_name(f)) + " H=" + std::to_string(cs.H) + " I=" + std::to_string(cs.I));
      QMoe m;
      auto r = p->weight({cs.E, cs.H}, 4.f / std::sqrt(float(cs.H)));
      m.c.router = r.c;
      m.g.router = r.g;
      const float sh = 1.f / std::sqrt(float(cs.H)), si = 1.f / std::sqrt(float(cs.I));
      for (int e = 0; e < cs.E; ++e) {
        auto gate = qweight({cs.I, cs.H}, sh, f), up = qweight({cs.I, cs.H}, sh, f), down = qweight({cs.H, cs.I}, si, f);
        m.c.experts.push_back({gate.c, up.c, down.c});
        m.g.experts.push_back({gate.g, up.g, down.g});
      }
      if (cs.shared > 0) {
        auto gate = qweight({cs.shared, cs.H}, sh, f), up = qweight({cs.shared, cs.H}, sh, f);
        auto down = qweight({cs.H, cs.shared}, 1.f / std::sqrt(float(cs.shared)), f);
        auto sg = p->weight({1, cs.H}, sh);
        m.c.shared = {gate.c, up.c, down.c};
        m.g.shared = {gate.g, up.g, down.g};
        m.c.shared_gate = sg.c;
        m.g.shared_gate = sg.g;
      }
      for (MoeWeights* w : {&m.c, &m.g}) {
        w->top_k = cs.k;
        w->norm_topk_prob = true;
      }
      p->cpu->prepare_moe(m.c);
      p->gpu->prepare_moe(m.g);
      for (int64_t rows : cs.rows) {
        auto x = p->act({rows, cs.H});
        auto out = p->out({rows, cs.H});
        p->cpu->moe(m.c, x.c, out.c);
        p->gpu->moe(m.g, x.g, out.g);
        // One row: the quantized expert kernels (fp32). Prefill: bf16 copies of the experts and
        // the bf16 grouped GEMMs (tensor cores round activations to bf16).
        EXPECT_LT(p->rel_error(out), rows == 1 || cs.H < 64 ? kTolExact : kTolBf16) << rows << " rows";
      }
    }
  }
}

// Two thinker-width layers stored as int4 / int8 on both backends (synthetic weights quantized
// on each), prefill then greedy decode with a quantized lm_head, eager then graph-replayed.
TEST_F(CudaQuant, ThinkerStackQuantizedWithGraphs) {
  DecoderConfig cfg;
  cfg.vocab_size = 152064;
  cfg.hidden_size = 2048;
  cfg.num_layers = 2;
  cfg.num_heads = 32;
  cfg.num_kv_heads = 4;
  cfg.head_dim = 128;
  cfg.num_experts = 128;
  cfg.num_experts_per_tok = 8;
  cfg.moe_intermediate_size = 768;
  cfg.norm_topk_prob = true;
  cfg.rope.theta = 1e6;
  for (auto [attn, ffn] : {std::pair{DType::Q8, DType::Q4}, std::pair{DType::Q4, DType::Q4}}) {
    SCOPED_TRACE(std::string("attention ") + dtype_name(attn) + ", experts " + dtype_name(ffn));
    const int prompt = 24, steps = 4, cap = prompt + steps + 1;
    DecoderStack cs(*p->cpu, cfg, synthetic_decoder_weights(*p->cpu, cfg, 5, attn, ffn), prompt);
    DecoderStack gs(*p->gpu, cfg, synthetic_decoder_weights(*p->gpu, cfg, 5, attn, ffn), prompt);
    const float hs = 1.f / std::sqrt(2048.f);
    const Tensor hc = p->cpu->synthetic_weight_as({cfg.vocab_size, 2048}, 77, hs, ffn);
    const Tensor hg = p->gpu->synthetic_weight_as({cfg.vocab_size, 2048}, 77, hs, ffn);
    std::vector<KVCache> ck = alloc_kv_caches(*p->cpu, cfg, cap), gk = alloc_kv_caches(*p->gpu, cfg, cap);
    std::vector<int32_t> pos(static_cast<size_t>(prompt));
    for (int i = 0; i < prompt; ++i) pos[size_t(i)] = i;
    auto ps = p->ints({prompt}, pos);
    auto x = p->act({prompt, 2048});
    cs.forward(x.c, ps.c, ck);
    gs.forward(x.g, ps.g, gk);
    EXPECT_LT(p->rel_error(x), kTolModel) << "prefill hidden states";
    auto logits = p->out({1, cfg.vocab_size});
    auto x1 = p->act({1, 2048});
    auto pos1 = p->ints({1}, {prompt});
    int graph = -1;
    for (int s = 0; s < steps; ++s) {
      const std::vector<float> e = p->random(2048);
      p->cpu->upload(x1.c, e.data());
      p->gpu->upload(x1.g, e.data());
      const int32_t position = prompt + s;
      p->cpu->upload(pos1.c, &position);
      p->gpu->upload(pos1.g, &position);
      cs.forward(x1.c, pos1.c, ck);
      p->cpu->linear(x1.c, hc, Tensor(), logits.c, Activation::None);
      p->poison(logits.g);
      if (s == 0) {
        gs.forward(x1.g, pos1.g, gk);
        p->gpu->linear(x1.g, hg, Tensor(), logits.g, Activation::None);
      } else {
        if (graph < 0) {
          p->gpu->begin_capture();
          gs.forward(x1.g, pos1.g, gk);
          p->gpu->linear(x1.g, hg, Tensor(), logits.g, Activation::None);
          graph = p->gpu->end_capture();
        }
        p->gpu->replay(graph);
      }
      EXPECT_LT(p->rel_error(logits), kTolModel) << "step " << s;
      EXPECT_EQ(p->gpu->sample(logits.g, SamplingParams{}, {}, 0.f), p->cpu->sample(logits.c, SamplingParams{}, {}, 0.f))
          << "greedy token, step " << s;
    }
  }
}

// The whole stack through the public API with `weights: int4` (and a mixed plan): the tiny
// fixtures on CUDA give the CPU engine's greedy tokens and logits within kTolModel.
TEST(CudaQuantApi, TinyModelsInt4MatchTheCpu) {
  if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
  const char* env = std::getenv("OMNI_GPU_MODELS");
  const std::string models = env && *env ? env : std::string(OMNI_BUILD_DIR) + "/models";
  for (const std::string weights : {"int4", "experts=int8,attention=int4,lm_head=int8,talker=int4"}) {
    for (const std::string name : {"tiny-a", "tiny-b"}) {
      SCOPED_TRACE(name + " " + weights);
      LoadOptions lc, lg;
      lc.model_dir = lg.model_dir = models + "/" + name;
      lc.context_tokens = lg.context_tokens = 256;
      lc.weights = lg.weights = weights;
      lg.device = "cuda";
      auto cpu = Model::load(lc);
      auto gpu = Model::load(lg);
      const std::vector<int32_t> prompt = cpu->tokenize("Hello! Tell me about the weather on Mars, briefly.");
      std::vector<std::vector<float>> lc_, lg_;
      Callbacks cbc, cbg;
      cbc.on_logits = [&](const float* l, size_t n) { lc_.emplace_back(l, l + n); };
      cbg.on_logits = [&](const float* l, size_t n) { lg_.emplace_back(l, l + n); };
      GenerateOptions opt;
      opt.max_new_tokens = 12;
      const auto tc = cpu->new_session()->generate_from_ids(prompt, opt, cbc).tokens;
      const auto tg = gpu->new_session()->generate_from_ids(prompt, opt, cbg).tokens;
      EXPECT_EQ(tg, tc);
      ASSERT_EQ(lg_.size(), lc_.size());
      for (size_t s = 0; s < lg_.size(); ++s) EXPECT_LT(Pair::rel_error(lc_[s], lg_[s]), kTolModel) << "step " << s;
    }
  }
}

}  // namespace
}  // namespace omni::test
