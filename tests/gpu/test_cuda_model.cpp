// CUDA attention (prefill, fused decode, windows), sampling, and whole decoder stacks (eager
// and graph-replayed) against the CPU reference. Bounds: see cuda_test_util.h.
#include <cstdlib>
#include <string>

#include "cuda_test_util.h"
#include "model/decoder.h"
#include "synthetic_weights.h"

#include <utility>

namespace omni::test {
namespace {

class CudaModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
    p = std::make_unique<Pair>();
  }
  std::unique_ptr<Pair> p;
};

struct Attn {
  AttentionWeights c, g;
};
Attn make_attention(Pair& p, int64_t H, int hq, int hkv, int hd, bool qk_norm, bool bias, float theta) {
  Attn a;
  auto set = [&](Tensor AttentionWeights::*f, Pair::W w) {
    a.c.*f = w.c;
    a.g.*f = w.g;
  };
  const float s = 1.f / std::sqrt(float(H));
  set(&AttentionWeights::wq, p.weight({int64_t(hq) * hd, H}, s));
  set(&AttentionWeights::wk, p.weight({int64_t(hkv) * hd, H}, s));
  set(&AttentionWeights::wv, p.weight({int64_t(hkv) * hd, H}, s));
  set(&AttentionWeights::wo, p.weight({H, int64_t(hq) * hd}, 1.f / std::sqrt(float(hq * hd))));
  if (qk_norm) {
    set(&AttentionWeights::q_norm, p.weight({hd}, 1.f));
    set(&AttentionWeights::k_norm, p.weight({hd}, 1.f));
  }
  if (bias) {
    set(&AttentionWeights::bq, p.weight({int64_t(hq) * hd}, 0.5f));
    set(&AttentionWeights::bk, p.weight({int64_t(hkv) * hd}, 0.5f));
    set(&AttentionWeights::bv, p.weight({int64_t(hkv) * hd}, 0.5f));
    set(&AttentionWeights::bo, p.weight({H}, 0.5f));
  }
  for (AttentionWeights* w : {&a.c, &a.g}) {
    w->num_heads = hq;
    w->num_kv_heads = hkv;
    w->head_dim = hd;
    w->norm_eps = 1e-6f;
    w->rope_theta = theta;
  }
  return a;
}

class CudaModelPrecision : public CudaPrecisionTest {};
INSTANTIATE_TEST_SUITE_P(Activations, CudaModelPrecision, ::testing::Bool(), PrecisionName);

// Thinker attention: prefill `P` rows into the cache, then decode steps through the fused
// kernel, including a long context so that every split holds many keys. The caches are of
// the backend's kv_cache_dtype(): fp32 (f32 activations) or bf16.
TEST_P(CudaModelPrecision, ThinkerAttentionPrefillThenDecode) {
  const int cap = 1100, P = 1024;
  Attn a = make_attention(*p, 2048, 32, 4, 128, true, false, 1e6f);
  KVCache cc{p->cpu->alloc({cap, 4, 128}, p->cpu->kv_cache_dtype()), p->cpu->alloc({cap, 4, 128}, p->cpu->kv_cache_dtype())};
  KVCache gc{p->gpu->alloc({cap, 4, 128}, p->gpu->kv_cache_dtype()), p->gpu->alloc({cap, 4, 128}, p->gpu->kv_cache_dtype())};
  AttentionArgs ac, ag;
  ac.cache = &cc;
  ag.cache = &gc;
  // Two prefill chunks, as a prefix-reused turn does: the second starts at a position that is
  // not a multiple of any tile and attends to the first chunk's cached keys.
  for (auto [first, rows] : {std::pair{0, 700}, std::pair{700, P - 700}}) {
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    for (int i = 0; i < rows; ++i) pos[size_t(i)] = first + i;
    auto x = p->act({rows, 2048});
    auto ps = p->ints({rows}, pos);
    auto out = p->out({rows, 2048});
    ac.positions = ps.c;
    ag.positions = ps.g;
    p->cpu->attention(a.c, x.c, ac, out.c);
    p->gpu->attention(a.g, x.g, ag, out.g);
    EXPECT_LT(p->rel_error(out), tol_kv()) << "prefill rows from " << first;
  }
  EXPECT_EQ(gc.k.dtype, f32() ? DType::F32 : DType::BF16);
  for (int step = 0; step < 3; ++step) {
    auto x1 = p->act({1, 2048});
    auto p1 = p->ints({1}, {P + step});
    auto o1 = p->out({1, 2048});
    ac.positions = p1.c;
    ag.positions = p1.g;
    p->cpu->attention(a.c, x1.c, ac, o1.c);
    p->gpu->attention(a.g, x1.g, ag, o1.g);
    EXPECT_LT(p->rel_error(o1), tol_kv()) << "decode step " << step;
  }
}

// Decode from an empty cache (position 0 .. 5): the splits are mostly empty.
TEST_P(CudaModelPrecision, CodePredictorAttentionShortContext) {
  Attn a = make_attention(*p, 1024, 16, 8, 128, true, false, 1e6f);
  KVCache cc{p->cpu->alloc({16, 8, 128}, p->cpu->kv_cache_dtype()), p->cpu->alloc({16, 8, 128}, p->cpu->kv_cache_dtype())};
  KVCache gc{p->gpu->alloc({16, 8, 128}, p->gpu->kv_cache_dtype()), p->gpu->alloc({16, 8, 128}, p->gpu->kv_cache_dtype())};
  for (int step = 0; step < 6; ++step) {
    auto x = p->act({1, 1024});
    auto ps = p->ints({1}, {step});
    auto out = p->out({1, 1024});
    AttentionArgs ac, ag;
    ac.positions = ps.c;
    ac.cache = &cc;
    ag.positions = ps.g;
    ag.cache = &gc;
    p->cpu->attention(a.c, x.c, ac, out.c);
    p->gpu->attention(a.g, x.g, ag, out.g);
    EXPECT_LT(p->rel_error(out), tol_kv()) << "position " << step;
  }
}

// Code2wav-style (sliding window 72, 16/16 heads of 64, no q/k norm) and audio-encoder-style
// (bidirectional blocks of 104 rows, 20 heads of 64, biases, no RoPE) attention without cache.
TEST_F(CudaModel, WindowedAndBlockAttention) {
  {
    Attn a = make_attention(*p, 1024, 16, 16, 64, false, false, 1e4f);
    std::vector<int32_t> pos(150);
    for (int i = 0; i < 150; ++i) pos[size_t(i)] = i;
    auto x = p->act({150, 1024});
    auto ps = p->ints({150}, pos);
    auto out = p->out({150, 1024});
    AttentionArgs ac, ag;
    ac.positions = ps.c;
    ag.positions = ps.g;
    ac.sliding_window = ag.sliding_window = 72;
    p->cpu->attention(a.c, x.c, ac, out.c);
    p->gpu->attention(a.g, x.g, ag, out.g);
    EXPECT_LT(p->rel_error(out), kTolBf16) << "sliding window";
  }
  {  // code2wav's streaming use: an fp32 cache (allocated with the activation dtype), a sliding
     // window, chunks of rows then single rows.
    Attn a = make_attention(*p, 1024, 16, 16, 64, false, false, 1e4f);
    KVCache cc{p->cpu->alloc({120, 16, 64}), p->cpu->alloc({120, 16, 64})};
    KVCache gc{p->gpu->alloc({120, 16, 64}), p->gpu->alloc({120, 16, 64})};
    int next = 0;
    for (int rows : {40, 50, 1, 1}) {
      std::vector<int32_t> pos(static_cast<size_t>(rows));
      for (int i = 0; i < rows; ++i) pos[size_t(i)] = next + i;
      next += rows;
      auto x = p->act({rows, 1024});
      auto ps = p->ints({rows}, pos);
      auto out = p->out({rows, 1024});
      AttentionArgs ac, ag;
      ac.positions = ps.c;
      ag.positions = ps.g;
      ac.cache = &cc;
      ag.cache = &gc;
      ac.sliding_window = ag.sliding_window = 72;
      p->cpu->attention(a.c, x.c, ac, out.c);
      p->gpu->attention(a.g, x.g, ag, out.g);
      EXPECT_LT(p->rel_error(out), kTolBf16) << "fp32 cache, chunk of " << rows;
    }
  }
  {
    Attn a = make_attention(*p, 1280, 20, 20, 64, false, true, 0.f);
    auto x = p->act({250, 1280});
    auto out = p->out({250, 1280});
    AttentionArgs ac, ag;
    ac.causal = ag.causal = false;
    ac.block = ag.block = 104;
    p->cpu->attention(a.c, x.c, ac, out.c);
    p->gpu->attention(a.g, x.g, ag, out.g);
    EXPECT_LT(p->rel_error(out), kTolBf16) << "blocks";
  }
}

TEST_F(CudaModel, SamplingMatchesCpu) {
  const int64_t V = 152064;
  auto logits = p->act({1, V}, 8.f);
  std::vector<int32_t> history;
  std::uniform_int_distribution<int32_t> id(0, int32_t(V - 1));
  for (int i = 0; i < 300; ++i) history.push_back(id(p->rng));
  history.push_back(history.front());  // a duplicate is penalized once
  SamplingParams greedy;
  EXPECT_EQ(p->gpu->sample(logits.g, greedy, {}, 0.f), p->cpu->sample(logits.c, greedy, {}, 0.f));
  SamplingParams pen;
  pen.repetition_penalty = 1.3f;
  EXPECT_EQ(p->gpu->sample(logits.g, pen, history, 0.f), p->cpu->sample(logits.c, pen, history, 0.f));
  SamplingParams sup;  // the talker's suppression of the codec control ids, EOS kept
  sup.suppress_begin = 150000;
  sup.suppress_end = 152064;
  sup.suppress_except = 151000;
  EXPECT_EQ(p->gpu->sample(logits.g, sup, {}, 0.f), p->cpu->sample(logits.c, sup, {}, 0.f));
  SamplingParams configs[4];
  configs[0].greedy = configs[1].greedy = configs[2].greedy = configs[3].greedy = false;
  configs[3] = sup;
  configs[3].greedy = false;
  configs[3].top_k = 50;
  configs[0].temperature = 0.7f;
  configs[0].top_k = 50;
  configs[0].top_p = 0.9f;
  configs[0].repetition_penalty = 1.05f;
  configs[1].top_p = 0.8f;  // top-k off: the whole vocabulary is sorted
  configs[2].temperature = 2.f;
  configs[2].top_k = 1000;
  std::uniform_real_distribution<float> u(0.f, 1.f);
  int differing = 0;
  for (const SamplingParams& sp : configs)
    for (int i = 0; i < 20; ++i) {
      const float draw = u(p->rng);
      differing += p->gpu->sample(logits.g, sp, history, draw) != p->cpu->sample(logits.c, sp, history, draw);
    }
  EXPECT_EQ(differing, 0);
}

// Whole stacks with the release's widths (2 layers): prefill + greedy decode with lm_head;
// identical tokens, logits within kTolModel; graph replay gives the same logits as eager.
void run_stack(Pair& p, const DecoderConfig& cfg, int prompt, int steps) {
  DecoderStack cs(*p.cpu, cfg, synthetic_decoder_weights(*p.cpu, cfg, 5), prompt);
  DecoderStack gs(*p.gpu, cfg, synthetic_decoder_weights(*p.gpu, cfg, 5), prompt);
  auto head = p.weight({cfg.vocab_size, cfg.hidden_size}, 1.f / std::sqrt(float(cfg.hidden_size)));
  const int cap = prompt + steps + 1;
  std::vector<KVCache> ck = alloc_kv_caches(*p.cpu, cfg, cap), gk = alloc_kv_caches(*p.gpu, cfg, cap);
  std::vector<int32_t> pos(static_cast<size_t>(prompt));
  for (int i = 0; i < prompt; ++i) pos[size_t(i)] = i;
  auto ps = p.ints({prompt}, pos);
  auto x = p.act({prompt, cfg.hidden_size});
  cs.forward(x.c, ps.c, ck);
  gs.forward(x.g, ps.g, gk);
  EXPECT_LT(p.rel_error(x), kTolModel) << "prefill hidden states";
  auto logits = p.out({1, cfg.vocab_size});
  auto xg1 = p.act({1, cfg.hidden_size});
  auto pos1 = p.ints({1}, {prompt});
  int graph = -1;
  for (int s = 0; s < steps; ++s) {
    // The next input: the same random embedding on both sides.
    const std::vector<float> e = p.random(cfg.hidden_size);
    p.cpu->upload(xg1.c, e.data());
    p.gpu->upload(xg1.g, e.data());
    const int32_t position = prompt + s;
    p.cpu->upload(pos1.c, &position);
    p.gpu->upload(pos1.g, &position);
    cs.forward(xg1.c, pos1.c, ck);
    p.cpu->linear(xg1.c, head.c, Tensor(), logits.c, Activation::None);
    p.poison(logits.g);
    if (s == 0) {  // eager
      gs.forward(xg1.g, pos1.g, gk);
      p.gpu->linear(xg1.g, head.g, Tensor(), logits.g, Activation::None);
    } else {  // captured once at step 1, replayed after
      if (graph < 0) {
        p.gpu->begin_capture();
        gs.forward(xg1.g, pos1.g, gk);
        p.gpu->linear(xg1.g, head.g, Tensor(), logits.g, Activation::None);
        graph = p.gpu->end_capture();
      }
      p.gpu->replay(graph);
    }
    EXPECT_LT(p.rel_error(logits), kTolModel) << "step " << s;
    EXPECT_EQ(p.gpu->sample(logits.g, SamplingParams{}, {}, 0.f), p.cpu->sample(logits.c, SamplingParams{}, {}, 0.f))
        << "greedy token, step " << s;
  }
}

DecoderConfig real_widths(int64_t H, int heads, int kv, int E, int k, int I, int shared, int dense_I, int V) {
  DecoderConfig c;
  c.vocab_size = V;
  c.hidden_size = int(H);
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv;
  c.head_dim = 128;
  c.num_experts = E;
  c.num_experts_per_tok = k;
  c.moe_intermediate_size = I;
  c.norm_topk_prob = true;
  c.shared_expert_intermediate_size = shared;
  c.intermediate_size = dense_I;
  c.rope.theta = 1e6;
  return c;
}

// Backend::decoder_layer on a thinker-shaped MoE layer: the CUDA decode row runs the six kernels of
// cuda_decode_layer.cu (CudaTuning::decode_layer = 2, the default) or the separate ops (= 0), the CPU
// the separate ops. A prefill of P rows (separate ops on both) fills the cache; then
// decode steps at growing positions, with and without the previous layer's residual add. Compared:
// x (residual after attention), normed (post-attention norm, poisoned), branch (the MoE output, which
// overwrites an unrelated random input).
// `tables`: the decode steps carry one-row rotary tables at a position 37 below their slot, as a step after an
// image does (the thinker's 3-row positions, docs/model.md §3.5).
void check_decoder_layer(Pair& p_, double tol_prefill, double tol_decode, bool tables = false) {
  Pair* p = &p_;
  DecoderConfig cfg = real_widths(2048, 32, 4, 128, 8, 768, 0, 0, 1024);
  cfg.num_layers = 1;
  const DecoderWeights wc = synthetic_decoder_weights(*p->cpu, cfg, 9), wg = synthetic_decoder_weights(*p->gpu, cfg, 9);
  const float eps = float(cfg.rms_norm_eps);
  const int P = 300, steps = 5;
  std::vector<KVCache> ck = alloc_kv_caches(*p->cpu, cfg, P + steps), gk = alloc_kv_caches(*p->gpu, cfg, P + steps);
  std::vector<int32_t> pos(P);
  for (int i = 0; i < P; ++i) pos[size_t(i)] = i;
  auto ps = p->ints({P}, pos);
  auto x = p->act({P, 2048}), br = p->act({P, 2048});
  auto nm = p->out({P, 2048});
  AttentionArgs ac, ag;
  ac.positions = ps.c;
  ac.cache = &ck[0];
  ag.positions = ps.g;
  ag.cache = &gk[0];
  p->cpu->decoder_layer(wc.layers[0], eps, x.c, br.c, true, ac, nm.c);
  p->gpu->decoder_layer(wg.layers[0], eps, x.g, br.g, true, ag, nm.g);
  // Prefill checks the residual only: with 300 rows, the tensor-core MoE prefill can flip a near-tied
  // expert choice against the fp32 CPU (seen once with bf16 inputs: 0.025 on the MoE output). The cache,
  // which the decode steps read, holds keys/values of the layer input and does not depend on it.
  EXPECT_LT(p->rel_error(x), tol_prefill) << "prefill residual";
  for (int s = 0; s < steps; ++s) {
    auto x1 = p->act({1, 2048}), b1 = p->act({1, 2048});
    auto n1 = p->out({1, 2048});
    auto p1 = p->ints({1}, {P + s});
    ac.positions = p1.c;
    ag.positions = p1.g;
    Pair::A cs{p->cpu->alloc({1, 64}), p->gpu->alloc({1, 64})}, sn{p->cpu->alloc({1, 64}), p->gpu->alloc({1, 64})};
    if (tables) {
      std::vector<float> c(64), si(64);
      for (int i = 0; i < 64; ++i) {
        const double angle = double(P + s - 37) * std::pow(double(cfg.rope.theta), -2.0 * i / 128);
        c[size_t(i)] = float(std::cos(angle));
        si[size_t(i)] = float(std::sin(angle));
      }
      for (auto [t, v] : {std::pair{&cs, &c}, std::pair{&sn, &si}}) {
        p->cpu->upload(t->c, v->data());
        p->gpu->upload(t->g, v->data());
      }
      ac.rope_cos = cs.c;
      ac.rope_sin = sn.c;
      ag.rope_cos = cs.g;
      ag.rope_sin = sn.g;
    }
    const bool add = s != 1;
    p->cpu->decoder_layer(wc.layers[0], eps, x1.c, b1.c, add, ac, n1.c);
    p->gpu->decoder_layer(wg.layers[0], eps, x1.g, b1.g, add, ag, n1.g);
    EXPECT_LT(p->rel_error(x1), tol_decode) << "residual, step " << s;
    EXPECT_LT(p->rel_error(n1), tol_decode) << "normed, step " << s;
    EXPECT_LT(p->rel_error(b1), tol_decode) << "moe output, step " << s;
  }
}

TEST_P(CudaModelPrecision, ThinkerDecoderLayerFused) {
  // The mode is fixed when a CUDA backend is made: each mode gets a fresh pair.
  for (int mode : {2, 0}) {
    SCOPED_TRACE("CudaTuning::decode_layer = " + std::to_string(mode));
    cuda::CudaTuning tuning;
    tuning.decode_layer = mode;
    Pair q(f32(), tuning);
    check_decoder_layer(q, tol_rows(300), tol_kv());
  }
}

TEST_P(CudaModelPrecision, ThinkerDecoderLayerAfterAnImageWithRotaryTables) {
  for (int mode : {2, 0}) {
    SCOPED_TRACE("CudaTuning::decode_layer = " + std::to_string(mode));
    cuda::CudaTuning tuning;
    tuning.decode_layer = mode;
    Pair q(f32(), tuning);
    check_decoder_layer(q, tol_rows(300), tol_kv(), /*tables=*/true);
  }
}

TEST_P(CudaModelPrecision, ThinkerStack) { run_stack(*p, real_widths(2048, 32, 4, 128, 8, 768, 0, 0, 152064), 40, 4); }
TEST_P(CudaModelPrecision, TalkerStack) { run_stack(*p, real_widths(1024, 16, 2, 128, 6, 384, 768, 0, 3072), 12, 4); }
TEST_P(CudaModelPrecision, CodePredictorStack) { run_stack(*p, real_widths(1024, 16, 8, 0, 0, 0, 0, 3072, 2048), 2, 5); }

}  // namespace
}  // namespace omni::test

namespace omni::test {
namespace {

// The vision tower's attention (release shapes: 1152 wide, 16 heads of 72, biases): per-row
// rotary tables instead of a theta, bidirectional inside blocks of one frame's patches.
TEST_F(CudaModel, VisionAttentionWithRotaryTables) {
  Attn a = make_attention(*p, 1152, 16, 16, 72, false, true, 0.f);
  const int rows = 2 * 96;  // two frames of 96 patches
  auto x = p->act({rows, 1152});
  auto c = p->act({rows, 36}), s = p->act({rows, 36});
  auto out = p->out({rows, 1152});
  AttentionArgs ac, ag;
  ac.causal = ag.causal = false;
  ac.block = ag.block = 96;
  ac.rope_cos = c.c;
  ac.rope_sin = s.c;
  ag.rope_cos = c.g;
  ag.rope_sin = s.g;
  p->cpu->attention(a.c, x.c, ac, out.c);
  p->gpu->attention(a.g, x.g, ag, out.g);
  EXPECT_LT(p->rel_error(out), kTolBf16);
}

}  // namespace
}  // namespace omni::test
