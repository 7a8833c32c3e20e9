// omni-bench: speed of the engine on the release's shapes with synthetic weights made on the
// device (no checkpoint). Measures, in one run: device copy bandwidth (the roofline), thinker
// decode tokens/s at several contexts with the bytes each token reads, thinker prefill time,
// the talker + code-predictor frame rate, the audio encoder on a 5 s question, code2wav's
// real-time factor, and time to first audio composed from those stages. Prints a table last.
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "model/decoder.h"
#include "io/model_config.h"
#include "omni/errors.h"
#include "omni_bench_mask.h"
#include "omni_bench_speech.h"
#include "omni_bench_vision.h"
#include "quant.h"
#include "synthetic_weights.h"

using namespace omni;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string config = OMNI_RELEASE_CONFIG;  // the committed tests/fixtures/release/config.json
  std::string device = "cuda";
  std::vector<int> contexts{64, 2048};
  int prefill = 512;
  int layers = 0;  // 0: the config's
  int steps = 100;
  bool graphs = true;
  bool speech = true;
  bool vision = true;
  int copy_mib = 1024;
  WeightPlan weights;  // --weights: storage of the thinker's and talker's matrices
  std::string dtype = "f32";  // CUDA activations: f32 (fp32 KV cache, split GEMM inputs) or bf16
  std::string mask_tokenizer;  // --mask: only the constrained-decoding mask benchmark, on this tokenizer.json
  int mask_runs = 40;
};

void usage() {
  std::puts(
      "omni-bench [--config FILE] [--device cuda|cpu] [--dtype f32|bf16] [--contexts 64,2048] [--prefill 512]\n"
      "           [--layers N] [--steps N] [--copy-mib N] [--no-graphs] [--no-speech] [--no-vision]\n"
      "           [--weights bf16|int8|int4|experts=int4,attention=int8,lm_head=bf16,talker=int4]\n"
      "  Synthetic bf16 weights of the config's shapes (thinker and talker), made on the device and\n"
      "  quantized there as --weights asks.\n"
      "  --layers N overrides the layer counts, the vision tower's depth too (smoke runs on the CPU).\n"
      "  Vision: one 640x480 camera frame and a 2 s clip at 2 fps (4 frames of 640x480): host preprocessing,\n"
      "  the tower with its DeepStack mergers, and the thinker's prefill of the visual tokens + a short prompt.\n"
      "omni-bench --mask [TOKENIZER.json] [--mask-runs N]\n"
      "  Only the constrained-decoding token mask (CPU, no model): its cost per token on the vocabulary of\n"
      "  the tokenizer (default: the committed Qwen3-Omni tokenizer, unpacked in the build).");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error("omni-bench: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--config") o.config = next();
    else if (a == "--device") o.device = next();
    else if (a == "--dtype") {
      o.dtype = next();
      if (o.dtype != "f32" && o.dtype != "bf16") throw Error("omni-bench: --dtype " + o.dtype + " (expected f32 or bf16)");
    }
    else if (a == "--prefill") o.prefill = std::stoi(next());
    else if (a == "--layers") o.layers = std::stoi(next());
    else if (a == "--steps") o.steps = std::stoi(next());
    else if (a == "--copy-mib") o.copy_mib = std::stoi(next());
    else if (a == "--no-graphs") o.graphs = false;
    else if (a == "--no-speech") o.speech = false;
    else if (a == "--no-vision") o.vision = false;
    else if (a == "--mask") o.mask_tokenizer = (i + 1 < argc && argv[i + 1][0] != '-') ? next() : OMNI_BENCH_TOKENIZER;
    else if (a == "--mask-runs") o.mask_runs = std::stoi(next());
    else if (a == "--weights") o.weights = parse_weight_plan(next());
    else if (a == "--contexts") {
      o.contexts.clear();
      std::stringstream ss(next());
      for (std::string t; std::getline(ss, t, ',');) o.contexts.push_back(std::stoi(t));
    } else if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else {
      throw Error("omni-bench: unknown argument " + a);
    }
  }
  return o;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Copy bandwidth: bytes read + written per second for a large device-to-device copy.
double copy_bandwidth(Backend& be, int mib) {
  const int64_t n = int64_t(mib) << 18;  // fp32 elements
  Tensor a = be.alloc({n}, DType::F32), b = be.alloc({n}, DType::F32);
  for (int i = 0; i < 3; ++i) be.copy(a, b);
  be.synchronize();
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 10; ++i) be.copy(i % 2 ? b : a, i % 2 ? a : b);
    be.synchronize();
    t.push_back(seconds_since(t0) / 10);
  }
  std::sort(t.begin(), t.end());
  return 2.0 * double(a.bytes()) / t[t.size() / 2];
}

// One decoder with its embedding table, head, caches and step tensors.
struct Lm {
  DecoderConfig cfg;
  std::unique_ptr<DecoderStack> stack;
  Tensor embed, head;  // [V, H]
  std::vector<KVCache> caches;
  Tensor ids, pos, x, logits;  // decode-step tensors
  int graph = -1;
  // When set, every step passes per-row rotary tables, as a conversation with an image does (the thinker's
  // 3-row positions, docs/model.md §3.5); the CUDA backend then runs the separate ops, not the fused layer.
  const DecoderExtras* extras = nullptr;
};

// Storage formats of one decoder's matrices (quant.h).
struct LmFormats {
  DType attention = DType::BF16, ffn = DType::BF16, head = DType::BF16;
};

void make_lm(Backend& be, Lm& lm, const DecoderConfig& cfg, int capacity, int max_rows, uint64_t seed,
             LmFormats f = {}) {
  lm.cfg = cfg;
  lm.stack = std::make_unique<DecoderStack>(be, cfg, synthetic_decoder_weights(be, cfg, seed, f.attention, f.ffn),
                                            max_rows);
  lm.embed = be.synthetic_weight({cfg.vocab_size, cfg.hidden_size}, seed + 100000, 1.f);
  lm.head = be.synthetic_weight_as({cfg.vocab_size, cfg.hidden_size}, seed + 100001,
                                   1.f / std::sqrt(float(cfg.hidden_size)), f.head);
  // Caches hold random keys/values, not zeros (never time on zeros).
  for (int l = 0; l < cfg.num_layers; ++l) {
    KVCache c;
    c.k = be.synthetic_weight({capacity, cfg.num_kv_heads, cfg.head_dim}, seed + 200000 + 2 * l, 1.f);
    c.v = be.synthetic_weight({capacity, cfg.num_kv_heads, cfg.head_dim}, seed + 200001 + 2 * l, 1.f);
    if (be.kv_cache_dtype() != DType::BF16) {  // the same values, widened
      KVCache wide;
      wide.k = be.alloc({capacity, cfg.num_kv_heads, cfg.head_dim}, be.kv_cache_dtype());
      wide.v = be.alloc({capacity, cfg.num_kv_heads, cfg.head_dim}, be.kv_cache_dtype());
      be.copy(c.k, wide.k);
      be.copy(c.v, wide.v);
      c = wide;
    }
    lm.caches.push_back(c);
  }
  lm.ids = be.alloc({1}, DType::I32);
  lm.pos = be.alloc({1}, DType::I32);
  lm.x = be.alloc({1, cfg.hidden_size});
  lm.logits = be.alloc({1, cfg.vocab_size});
}

void step_ops(Backend& be, Lm& lm) {
  be.embed(lm.embed, lm.ids, lm.x);
  lm.stack->forward(lm.x, lm.pos, lm.caches, Tensor(), -1, lm.extras);
  be.linear(lm.x, lm.head, Tensor(), lm.logits, Activation::None);
}

// One decode step at `position`: token in, greedy token out (the only host sync).
int32_t decode_step(Backend& be, Lm& lm, int32_t token, int32_t position, bool graphs) {
  be.upload(lm.ids, &token);
  be.upload(lm.pos, &position);
  if (graphs && be.supports_graphs()) {
    if (lm.graph < 0) {
      be.begin_capture();
      step_ops(be, lm);
      lm.graph = be.end_capture();
    }
    be.replay(lm.graph);
  } else {
    step_ops(be, lm);
  }
  return be.sample(lm.logits, SamplingParams{}, {}, 0.f);
}

// Bytes of an [N, K] matrix stored as `f` (quant.h: packed rows plus fp16 scales).
double matrix_bytes(double N, double K, DType f) {
  if (!is_quantized(f)) return N * K * 2;
  return N * (double(quant_row_bytes(f, int64_t(K))) + 2.0 * double(quant_groups(f, int64_t(K))));
}

// Bytes one thinker decode step reads: every weight it touches once, the KV cache up to ctx.
double decode_bytes(const DecoderConfig& c, int ctx, LmFormats f = {}) {
  const double H = c.hidden_size, q = double(c.num_heads) * c.head_dim, kv = double(c.num_kv_heads) * c.head_dim;
  const double I = c.moe_intermediate_size;
  double per_layer = matrix_bytes(q, H, f.attention) + 2 * matrix_bytes(kv, H, f.attention) +
                     matrix_bytes(H, q, f.attention) + (2.0 * c.head_dim + 2 * H) * 2;  // attention + norms
  if (c.num_experts > 0) {
    per_layer += double(c.num_experts) * H * 2;                                   // router
    per_layer += c.num_experts_per_tok * (2 * matrix_bytes(I, H, f.ffn) + matrix_bytes(H, I, f.ffn));  // experts
    if (c.shared_expert_intermediate_size > 0) {
      const double S = c.shared_expert_intermediate_size;
      per_layer += 2 * matrix_bytes(S, H, f.ffn) + matrix_bytes(H, S, f.ffn) + H * 2;
    }
  } else {
    const double M = c.intermediate_size;
    per_layer += 2 * matrix_bytes(M, H, f.ffn) + matrix_bytes(H, M, f.ffn);
  }
  per_layer += 2.0 * ctx * kv * 2;  // K and V cache, bf16
  return per_layer * c.num_layers + H * 2 /* final norm */ + matrix_bytes(c.vocab_size, H, f.head) /* lm_head */ +
         H * 2;
}

struct DecodeResult {
  int ctx;
  double tok_s, gbs, share;
};

DecodeResult bench_decode(Backend& be, Lm& lm, int ctx, int steps, bool graphs, double copy_bw, LmFormats f) {
  int32_t tok = 1;
  for (int i = 0; i < 3; ++i) tok = decode_step(be, lm, tok, ctx - 1, graphs);  // warm-up (and capture)
  std::vector<double> t;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) tok = decode_step(be, lm, tok % lm.cfg.vocab_size, ctx - 1, graphs);
    t.push_back(seconds_since(t0) / steps);
  }
  std::sort(t.begin(), t.end());
  const double s = t[1], bytes = decode_bytes(lm.cfg, ctx, f);
  return {ctx, 1.0 / s, bytes / s / 1e9, bytes / s / copy_bw};
}

// Where a decode step's time goes: each operation of the decoder run over all layers (as a
// graph where the backend has them), timed alone. Returns microseconds per token per op.
std::vector<std::pair<std::string, double>> op_breakdown(Backend& be, Lm& lm, int ctx) {
  const DecoderWeights& W = lm.stack->weights();
  const int H = lm.cfg.hidden_size;
  Tensor x = be.alloc({1, H}), normed = be.alloc({1, H}), branch = be.alloc({1, H});
  const std::vector<float> r = [&] {
    std::vector<float> v(static_cast<size_t>(H));
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (float& f : v) f = d(rng);
    return v;
  }();
  be.upload(x, r.data());
  be.upload(normed, r.data());
  be.upload(branch, r.data());
  const int32_t position = ctx - 1;
  be.upload(lm.pos, &position);
  const float eps = float(lm.cfg.rms_norm_eps);
  using Op = std::function<void()>;
  const std::vector<std::pair<std::string, Op>> ops = {
      {"attention (qkv, attn, o)",
       [&] {
         for (size_t l = 0; l < W.layers.size(); ++l) {
           AttentionArgs a;
           a.positions = lm.pos;
           a.cache = &lm.caches[l];
           be.attention(W.layers[l].attn, normed, a, branch);
         }
       }},
      {"moe (router, gate/up, down)",
       [&] {
         for (const DecoderLayerWeights& L : W.layers) L.is_moe ? be.moe(L.moe, normed, branch) : be.mlp(L.mlp, normed, branch);
       }},
      {"add_rms_norm x2",
       [&] {
         for (const DecoderLayerWeights& L : W.layers) {
           be.add_rms_norm(x, branch, L.post_norm, eps, normed);
           be.add_rms_norm(x, branch, L.input_norm, eps, normed);
         }
       }},
      {"decoder_layer (whole layers)",
       [&] {
         for (size_t l = 0; l < W.layers.size(); ++l) {
           AttentionArgs a;
           a.positions = lm.pos;
           a.cache = &lm.caches[l];
           be.decoder_layer(W.layers[l], eps, x, branch, l > 0, a, normed);
         }
       }},
      {"lm_head", [&] { be.linear(x, lm.head, Tensor(), lm.logits, Activation::None); }},
  };
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [name, op] : ops) {
    int graph = -1;
    if (be.supports_graphs()) {
      be.begin_capture();
      op();
      graph = be.end_capture();
    }
    auto run = [&] { graph >= 0 ? be.replay(graph) : op(); };
    for (int i = 0; i < 3; ++i) run();
    be.synchronize();
    const int reps = 20;
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) run();
    be.synchronize();
    out.emplace_back(name, seconds_since(t0) / reps * 1e6);
  }
  return out;
}

double bench_prefill(Backend& be, Lm& lm, int rows) {
  Tensor ids = be.alloc({rows}, DType::I32), pos = be.alloc({rows}, DType::I32);
  Tensor x = be.alloc({rows, lm.cfg.hidden_size});
  std::vector<int32_t> hid(static_cast<size_t>(rows)), hpos(static_cast<size_t>(rows));
  std::mt19937 rng(7);
  for (int i = 0; i < rows; ++i) {
    hid[size_t(i)] = int32_t(rng() % uint32_t(lm.cfg.vocab_size));
    hpos[size_t(i)] = i;
  }
  be.upload(ids, hid.data());
  be.upload(pos, hpos.data());
  std::vector<double> t;
  for (int r = 0; r < 3; ++r) {
    be.synchronize();
    const auto t0 = Clock::now();
    be.embed(lm.embed, ids, x);
    lm.stack->forward(x, pos, lm.caches);
    be.linear(x.rows(rows - 1, 1), lm.head, Tensor(), lm.logits, Activation::None);
    be.synchronize();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[1] * 1e3;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    ModelConfig mc = ModelConfig::load(o.config);
    if (!o.mask_tokenizer.empty()) return bench_mask(o.mask_tokenizer, size_t(mc.thinker.vocab_size), o.mask_runs);
    std::unique_ptr<Backend> be = o.device == "cpu" ? make_cpu_backend() : make_cuda_backend(0, o.dtype == "f32");
    std::printf("omni-bench: backend %s, config %s\n", be->name().c_str(), o.config.c_str());

    const size_t resident_before_copy = be->resident_bytes();
    const double copy_bw = copy_bandwidth(*be, o.copy_mib);
    const size_t copy_buffers = be->resident_bytes() - resident_before_copy;  // not part of the model
    std::printf("copy bandwidth (read + write): %.1f GB/s\n", copy_bw / 1e9);

    DecoderConfig tc = mc.thinker;
    if (o.layers > 0) tc.num_layers = o.layers;
    // The visual inputs: a camera frame, and a 2 s clip sampled at 2 fps (4 frames), each with a short prompt.
    constexpr int kFrameW = 640, kFrameH = 480, kClipFrames = 4;
    constexpr int kTemplateTokens = 32;  // the chat template around a spoken question or a picture
    const bool vision = o.vision && mc.has_vision && o.prefill > 0;
    VisionConfig vc = mc.vision;
    if (o.layers > 0) vc.depth = o.layers;
    int vision_rows = 0;
    if (vision)
      vision_rows = int(std::max(vision_tokens(vc, 1, kFrameW, kFrameH), vision_tokens(vc, kClipFrames, kFrameW, kFrameH)));
    const int max_rows = std::max(o.prefill, vision_rows + kTemplateTokens);
    const int capacity = std::max(max_rows, *std::max_element(o.contexts.begin(), o.contexts.end())) + 1;
    Lm thinker;
    auto t0 = Clock::now();
    const LmFormats tf{o.weights.attention, o.weights.experts, o.weights.lm_head};
    const size_t resident0 = be->resident_bytes();
    make_lm(*be, thinker, tc, capacity, std::max(max_rows, 1), 1, tf);
    be->synchronize();
    const size_t thinker_resident = be->resident_bytes() - resident0;
    std::printf("thinker: %d layers, weights %s, synthetic weights made in %.2f s, %.2f GB resident (with its "
                "caches of %d tokens)\n",
                tc.num_layers, weight_plan_string(o.weights).c_str(), seconds_since(t0), thinker_resident / 1e9,
                capacity);

    std::vector<DecodeResult> dec;
    for (int ctx : o.contexts) {
      dec.push_back(bench_decode(*be, thinker, ctx, o.steps, o.graphs, copy_bw, tf));
      std::printf("thinker decode @%d: %.1f tokens/s, %.2f GB/token, %.1f GB/s, %.1f%% of copy bandwidth\n", ctx,
                  dec.back().tok_s, decode_bytes(tc, ctx, tf) / 1e9, dec.back().gbs, 100 * dec.back().share);
    }
    const auto breakdown = op_breakdown(*be, thinker, o.contexts.back());
    for (const auto& [name, us] : breakdown)
      std::printf("thinker decode @%d, %s alone: %.0f us/token\n", o.contexts.back(), name.c_str(), us);
    // The same step after an image: per-row rotary tables (one row, the angles of the position itself, so the
    // work is that of a real turn) instead of the positions' own rotary.
    DecodeResult after_image{};
    {
      const int ctx = o.contexts.front();
      RotaryRows rotary(*be, tc, 1);
      const float p = float(ctx - 1);
      const DecoderExtras rows = rotary.fill(&p, &p, &p, 1);
      const int plain_graph = thinker.graph;
      thinker.graph = -1;
      thinker.extras = &rows;
      after_image = bench_decode(*be, thinker, ctx, o.steps, o.graphs, copy_bw, tf);
      thinker.extras = nullptr;
      thinker.graph = plain_graph;
      std::printf("thinker decode @%d with per-row rotary tables (a conversation with an image): %.1f tokens/s, "
                  "%.1f%% of copy bandwidth\n",
                  ctx, after_image.tok_s, 100 * after_image.share);
    }
    double eager_tok_s = 0;
    if (o.graphs && be->supports_graphs()) {
      eager_tok_s = bench_decode(*be, thinker, o.contexts.front(), o.steps / 2 + 1, false, copy_bw, tf).tok_s;
      std::printf("thinker decode @%d without graphs: %.1f tokens/s\n", o.contexts.front(), eager_tok_s);
    }
    const double prefill_ms = o.prefill > 0 ? bench_prefill(*be, thinker, o.prefill) : 0;
    if (o.prefill > 0) std::printf("thinker prefill %d tokens: %.1f ms\n", o.prefill, prefill_ms);
    // A spoken question: its audio tokens plus the chat template around them.
    constexpr double kQuestionSeconds = 5.0;
    EncoderTiming enc;
    int question_rows = 0;
    double question_prefill_ms = 0;
    if (o.speech && o.prefill > 0) {
      enc = bench_audio_encoder(*be, mc.audio, kQuestionSeconds);
      question_rows = std::min(enc.tokens + kTemplateTokens, o.prefill);
      question_prefill_ms = bench_prefill(*be, thinker, question_rows);
      std::printf("audio encoder, %.0f s question (%d mel frames -> %d tokens): mel %.2f ms (host), tower %.2f ms; "
                  "thinker prefill of %d rows: %.2f ms\n",
                  kQuestionSeconds, enc.mel_frames, enc.tokens, enc.mel_ms, enc.encode_ms, question_rows,
                  question_prefill_ms);
    }
    // Vision: host preprocessing, the tower, then the thinker's prefill over the visual tokens and the
    // template around them (1-row positions here; the 3-row positions of docs/model.md cost the same).
    struct VisionRow {
      VisionTiming t;
      double prefill_ms = 0;
      int rows = 0;
    };
    std::vector<VisionRow> vis;
    if (vision) {
      for (const auto& [what, frames] : {std::pair<std::string, int>{"640x480 frame", 1},
                                         std::pair<std::string, int>{"2 s clip at 2 fps (4 frames of 640x480)",
                                                                     kClipFrames}}) {
        VisionRow r;
        r.t = bench_vision(*be, vc, what, frames, kFrameW, kFrameH);
        r.rows = int(r.t.tokens) + kTemplateTokens;
        r.prefill_ms = bench_prefill(*be, thinker, r.rows);
        std::printf("vision, %s: grid %dx%dx%d -> %lld tokens; preprocess %.2f ms (host), tower %.2f ms; thinker "
                    "prefill of %d rows: %.2f ms\n",
                    what.c_str(), r.t.grid_t, r.t.grid_h, r.t.grid_w, static_cast<long long>(r.t.tokens),
                    r.t.preprocess_ms, r.t.tower_ms, r.rows, r.prefill_ms);
        vis.push_back(r);
      }
    }
    thinker.stack.reset();

    // Talker + code predictor: one talker step and (num_code_groups - 1) code-predictor steps
    // per 80 ms codec frame (docs/model.md §3.8); the code predictor's context restarts every frame.
    double frames_s = 0, talker_prefill_ms = 0;
    std::vector<Code2WavTiming> c2w;
    std::string speech_note;
    if (o.speech && mc.has_talker) {
      DecoderConfig tk = mc.talker.text, cp = mc.talker.code_predictor;
      if (o.layers > 0) tk.num_layers = cp.num_layers = o.layers;
      Lm talker, pred;
      make_lm(*be, talker, tk, 1024, std::max(1, question_rows), 11,
              LmFormats{o.weights.talker, o.weights.talker, DType::BF16});
      make_lm(*be, pred, cp, 32, 1, 21);
      const int groups = mc.talker.num_code_groups;
      auto frame = [&](int t) {
        int32_t code = decode_step(*be, talker, 1, t, o.graphs);
        for (int g = 1; g < groups; ++g) code = decode_step(*be, pred, code % cp.vocab_size, g, o.graphs);
      };
      for (int t = 0; t < 3; ++t) frame(t);
      const int frames = std::max(10, o.steps / 4);
      const auto f0 = Clock::now();
      for (int t = 0; t < frames; ++t) frame(100 + t);
      frames_s = frames / seconds_since(f0);
      std::printf("talker + code predictor: %.1f frames/s (%.2fx real time at 12.5 frames/s)\n", frames_s,
                  frames_s / 12.5);
      if (question_rows > 0) {
        talker_prefill_ms = bench_prefill(*be, talker, question_rows);
        std::printf("talker prefill of %d rows: %.2f ms\n", question_rows, talker_prefill_ms);
      }
      talker.stack.reset();
      pred.stack.reset();
      for (int push : {1, 4}) {
        c2w.push_back(bench_code2wav(*be, mc.code2wav, push, 125));
        std::printf("code2wav, %d frames pushed %d at a time: RTF %.3f, first samples after %.2f ms\n",
                    c2w.back().frames, push, c2w.back().rtf, c2w.back().first_audio_ms);
      }
    } else {
      speech_note = mc.has_talker ? "skipped (--no-speech)" : "the config has no talker";
    }

    std::printf("\n| measure | value |\n|---|---|\n");
    std::printf("| backend | %s |\n| copy bandwidth | %.1f GB/s |\n", be->name().c_str(), copy_bw / 1e9);
    std::printf("| weights | %s |\n", weight_plan_string(o.weights).c_str());
    if (be->resident_bytes() > 0)
      std::printf("| device memory held at the end, less the copy test's buffers (thinker with its caches, talker, "
                  "code predictor, code2wav, audio encoder, their activations, scratch) | %.2f GB (thinker with "
                  "its caches %.2f GB) |\n",
                  (be->resident_bytes() - copy_buffers) / 1e9, thinker_resident / 1e9);
    for (const DecodeResult& d : dec)
      std::printf("| thinker decode @%d | %.1f tok/s, %.1f GB/s, %.1f%% of copy |\n", d.ctx, d.tok_s, d.gbs,
                  100 * d.share);
    std::printf("| thinker decode @%d after an image (per-row rotary tables) | %.1f tok/s, %.1f%% of copy |\n",
                after_image.ctx, after_image.tok_s, 100 * after_image.share);
    if (eager_tok_s > 0) std::printf("| thinker decode @%d, no graphs | %.1f tok/s |\n", o.contexts.front(), eager_tok_s);
    for (const auto& [name, us] : breakdown)
      std::printf("| decode @%d: %s | %.0f us/token |\n", o.contexts.back(), name.c_str(), us);
    if (o.prefill > 0) std::printf("| thinker prefill %d | %.1f ms |\n", o.prefill, prefill_ms);
    for (const VisionRow& r : vis)
      std::printf("| vision, %s | %lld tokens: preprocess %.1f ms (host) + tower %.1f ms + thinker prefill of %d rows "
                  "%.1f ms = %.1f ms |\n",
                  r.t.what.c_str(), static_cast<long long>(r.t.tokens), r.t.preprocess_ms, r.t.tower_ms, r.rows,
                  r.prefill_ms, r.t.preprocess_ms + r.t.tower_ms + r.prefill_ms);
    if (vis.empty()) std::printf("| vision | not measured: %s |\n", !o.vision ? "--no-vision" : !mc.has_vision ? "the config has no vision tower" : "needs --prefill > 0");
    if (frames_s > 0) std::printf("| talker + code predictor | %.1f frames/s |\n", frames_s);
    else std::printf("| talker + code predictor | not measured: %s |\n", speech_note.c_str());
    for (const Code2WavTiming& c : c2w)
      std::printf("| code2wav RTF, push %d frame(s) | %.3f (first samples %.1f ms) |\n", c.push_frames, c.rtf,
                  c.first_audio_ms);
    if (c2w.empty()) std::printf("| code2wav RTF | not measured: %s |\n", speech_note.c_str());
    if (!c2w.empty() && question_rows > 0 && !dec.empty()) {
      // Sum of the measured stages on the critical path (not one end-to-end Session run):
      // mel + tower, thinker prefill, the first text token, talker prefill over the same rows,
      // one codec frame (talker + code predictor), code2wav's first 1-frame push.
      const double stages[] = {enc.mel_ms, enc.encode_ms, question_prefill_ms, 1e3 / dec.front().tok_s,
                               talker_prefill_ms, 1e3 / frames_s, c2w.front().first_audio_ms};
      double total = 0;
      for (double v : stages) total += v;
      std::printf("| time to first audio, %.0f s question (sum of stages) | %.1f ms = mel %.1f + encoder %.1f + "
                  "thinker prefill %.1f + token %.1f + talker prefill %.1f + frame %.1f + code2wav %.1f |\n",
                  kQuestionSeconds, total, stages[0], stages[1], stages[2], stages[3], stages[4], stages[5],
                  stages[6]);
    } else {
      std::printf("| time to first audio | not measured (needs --prefill > 0 and the speech stages) |\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omni-bench: %s\n", e.what());
    return 1;
  }
}
