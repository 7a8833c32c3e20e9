// Backend: the small set of coarse operations the model code is written against.
// The model (thinker, talker, code predictor, code2wav, audio encoder) is written once over
// these; the CPU backend is the fp32 reference, the CUDA backend the product. Operations are
// coarse (a whole attention step, a whole MoE feed-forward) so a backend can fuse inside them.
//
// Conventions: activations are [rows, features] row-major; `rows` is the number of tokens in
// the call (1 in decode). Outputs are written into tensors the caller allocated at load time
// with alloc(); an operation never allocates device memory. Unless stated, `out` may not alias
// an input. All tensors passed to one backend were made by that backend (weight() / alloc()).
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "omni/engine.h"
#include "tensor.h"

namespace omni {

// GELU is the exact erf form; GELUTanh is PyTorch's tanh approximation ("gelu_pytorch_tanh", the
// vision tower's MLP): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
enum class Activation { None, SiLU, GELU, GELUTanh };

// One attention block's weights. Optional tensors are empty() when the model has none.
struct AttentionWeights {
  Tensor wq, wk, wv, wo;      // [Hq*hd, H], [Hkv*hd, H], [Hkv*hd, H], [H, Hq*hd]
  Tensor bq, bk, bv, bo;      // biases (audio encoder only)
  Tensor q_norm, k_norm;      // per-head RMSNorm weights [hd], applied before RoPE (Qwen3)
  int num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float norm_eps = 1e-6f;
  float rope_theta = 0.f;     // 0: no rotary embedding (audio encoder)
};

// Per-layer key/value cache: [capacity, Hkv, hd] each, allocated at load.
struct KVCache {
  Tensor k, v;
  int64_t capacity() const { return k.empty() ? 0 : k.dim(0); }
};

struct AttentionArgs {
  // I32 [rows]: the rotary position of each row; with a cache, also the cache slot it is
  // written to, and row i attends to cache slots [0, positions[i]] (causal).
  Tensor positions;
  KVCache* cache = nullptr;  // null: the rows attend only among themselves
  bool causal = true;        // false: bidirectional (audio encoder)
  int sliding_window = 0;    // >0: causal, keys with pos > q_pos - window only (code2wav)
  int block = 0;             // >0: rows attend only within consecutive blocks of this many rows
  // F32 [rows, head_dim/2] each: when given, the rotary angle of row r for the pair (i, i + hd/2)
  // is the one whose cosine and sine are rope_cos[r, i] / rope_sin[r, i], instead of
  // positions[r] * theta^(-2i/hd) (the vision tower's 2-D rotary, docs/model.md §3.4). Applied to
  // q and k in fp32 with the same rotate-half layout as the 1-D RoPE.
  Tensor rope_cos, rope_sin;
};

struct MlpWeights {  // SwiGLU: down(silu(gate x) * up x); no biases
  Tensor gate, up, down;  // [I, H], [I, H], [H, I]
};

struct MoeWeights {
  Tensor router;                    // [E, H]
  std::vector<MlpWeights> experts;  // E entries, each [I, H], [I, H], [H, I]
  int top_k = 0;
  bool norm_topk_prob = false;
  MlpWeights shared;                // talker: sigmoid-gated shared expert; empty otherwise
  Tensor shared_gate;               // [1, H]
  std::shared_ptr<void> prepared;   // backend-owned layout (pointer tables, fused copies)
};

// One pre-norm decoder layer (Qwen3): attention, then a MoE or dense SwiGLU feed-forward.
struct DecoderLayerWeights {
  Tensor input_norm, post_norm;
  AttentionWeights attn;
  bool is_moe = false;
  MoeWeights moe;  // when is_moe
  MlpWeights mlp;  // otherwise
};

// omni::Sampling (greedy, temperature, top-k, top-p, repetition penalty with HF semantics: divide positive,
// multiply negative; `seed` is the caller's, the backend takes one uniform draw per call) plus:
struct SamplingParams : Sampling {
  // Token suppression (HF SuppressTokensLogitsProcessor, applied after the penalty): ids in
  // [suppress_begin, suppress_end) get -inf, except `suppress_except` (talker: the codec EOS).
  int suppress_begin = 0, suppress_end = 0;
  int suppress_except = -1;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory (load time only) ----
  // A weight from a host view (usually a mapped file). CPU: the same view, no copy.
  // CUDA: one copy to the device.
  virtual Tensor weight(const Tensor& host) = 0;
  // A weight stored as `format` (quant.h): BF16 is weight(host); Q8/Q4 matrices are quantized
  // by the backend (CUDA: on the GPU, from bf16 row blocks uploaded once). `name` (the tensor's
  // checkpoint name) is used in errors.
  virtual Tensor weight_as(const Tensor& host, DType format, const std::string& name) = 0;
  // Called once per MoE layer after its weights are set, so the backend can build its layout.
  virtual void prepare_moe(MoeWeights& moe) {}
  // Called once when a model's weights are all made: uploads finish, load-time host buffers (CUDA: the
  // pinned staging chunks) are given back. Later weight() calls still work.
  virtual void weights_loaded() {}
  // Activation/cache storage of the backend's activation dtype (or `dtype` when given).
  virtual Tensor alloc(std::initializer_list<int64_t> shape, DType dtype) = 0;
  Tensor alloc(std::initializer_list<int64_t> shape) { return alloc(shape, activation_dtype()); }
  virtual DType activation_dtype() const = 0;

  // ---- transfers (between steps) ----
  virtual void upload(const Tensor& dst, const void* src) = 0;        // dst.bytes() from host
  virtual void download(void* dst, const Tensor& src) = 0;            // src.bytes() to host
  virtual void download_f32(float* dst, const Tensor& src) = 0;       // any float dtype → float32
  virtual void synchronize() {}

  // ---- operations ----
  virtual void embed(const Tensor& table, const Tensor& ids, const Tensor& out) = 0;   // ids I32 [S]
  // Weighted sum of table rows (the vision tower's interpolated position table): ids I32 [S, K],
  // weights F32 [S, K], out F32 [S, D]: out[s] = sum_k weights[s, k] * table[ids[s, k]], summed in
  // fp32 in k order. An id outside the table is an error.
  virtual void embed_weighted(const Tensor& table, const Tensor& ids, const Tensor& weights, const Tensor& out) = 0;
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) = 0;  // out may alias x
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& out) = 0;
  // out = act(x @ w.T + bias)
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
                      Activation act = Activation::None) = 0;
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;  // out may alias a or b
  // Same shape; same dtype, or a bf16 source widened into an f32 destination.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  // Projections, q/k norm, RoPE, cache update, softmax(q k^T / sqrt(hd)) v, output projection.
  virtual void attention(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args,
                         const Tensor& out) = 0;
  virtual void mlp(const MlpWeights& w, const Tensor& x, const Tensor& out) = 0;
  virtual void moe(const MoeWeights& w, const Tensor& x, const Tensor& out) = 0;

  // Picks a token from one row of logits ([1, V] or [V]). `history` are the ids the repetition
  // penalty applies to; `uniform` is one draw from U[0,1) made by the caller's seeded generator,
  // so CPU and GPU sample the same token from the same distribution.
  virtual int32_t sample(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history,
                         float uniform) = 0;
  // Constrained decoding: logits[i] = -inf for every id whose bit (allowed[i / 64] >> (i % 64)) is
  // clear; logits is [1, vocab] float32, `allowed` has (vocab + 63) / 64 words. The default goes
  // through the host (download, mask, upload).
  virtual void mask_logits(const Tensor& logits, const uint64_t* allowed);

  // ---- fused ops, KV dtype, synthetic weights, graphs (CUDA helper section) ----
  // x += branch; out = rms_norm(x) * w. One pass on CUDA (the residual add and the next norm
  // are fused); `out` may alias x. The default is add() then rms_norm().
  virtual void add_rms_norm(const Tensor& x, const Tensor& branch, const Tensor& w, float eps, const Tensor& out) {
    add(x, branch, x);
    rms_norm(x, w, eps, out);
  }
  // One whole pre-norm decoder layer with the previous layer's residual add folded in:
  //   if (add_branch) x += branch;  x += attention(rms_norm(x, input_norm));
  //   branch = ffn(rms_norm(x, post_norm))
  // so x leaves as the residual after attention and branch as the feed-forward output (the caller
  // adds it: the next layer's add_branch, or add_rms_norm with the final norm). `normed` is
  // scratch of x's shape. The default is the ops above; CUDA runs a decode row (rows = 1, MoE
  // layer) as six kernels.
  virtual void decoder_layer(const DecoderLayerWeights& L, float eps, const Tensor& x, const Tensor& branch,
                             bool add_branch, const AttentionArgs& args, const Tensor& normed);
  // Storage dtype of KV caches. CUDA keeps them in bf16 (as transformers does), halving the
  // cache bytes read per decoded token; attention() reads whatever dtype the cache has.
  virtual DType kv_cache_dtype() const { return activation_dtype(); }
  // Device memory the backend holds (weights, caches, scratch); 0 where it uses host memory.
  virtual size_t resident_bytes() const { return 0; }
  // A weight of `shape` filled with deterministic pseudo-random values uniform in [-scale, scale)
  // (a hash of seed and index), made where the backend keeps weights: benchmarks of the full
  // release shapes need no checkpoint and no host copy. bf16 on every backend.
  virtual Tensor synthetic_weight(std::initializer_list<int64_t> shape, uint64_t seed, float scale);
  // The same values stored as `format` (Q8/Q4: synthetic_weight's bf16 values, quantized).
  virtual Tensor synthetic_weight_as(std::initializer_list<int64_t> shape, uint64_t seed, float scale, DType format);
  // CUDA graphs: the operations issued between begin_capture() and end_capture() are recorded,
  // not run; replay(id) runs them again. Inputs that change between replays (token ids,
  // positions) must live in tensors made by alloc() and be updated with upload() before
  // replay(). Operations that return values to the host (sample) cannot be captured.
  virtual bool supports_graphs() const { return false; }
  virtual void begin_capture();
  virtual int end_capture();
  virtual void replay(int graph_id);

  // ---- audio encoder operations ----
  // The audio tower's convolutional downsampler (docs/model.md §3.2 steps 2-3); everything after it is
  // linear / layer_norm / attention above. The defaults (audio_ops_host.cpp) run the CPU
  // reference on the host through download/upload: correct on any backend, slow on a GPU, so
  // a device backend should override them.
  // out = GELU(conv2d(x, w) + b), 3x3 kernel, `stride` and zero padding `pad` on both spatial
  // axes. x [N, C_in, H, W], w [C_out, C_in, 3, 3], b [C_out],
  // out [N, C_out, (H + 2*pad - 3)/stride + 1, (W + 2*pad - 3)/stride + 1].
  virtual void conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad,
                           const Tensor& out);
  // x [A, B, C, D] -> out [A, D, B, C] (torch permute(0, 3, 1, 2)): the conv output
  // [chunks, channels, freq, time] becomes [chunks, time, channels*freq] rows for conv_out.
  virtual void permute_0312(const Tensor& x, const Tensor& out);

  // ---- speech operations (talker, code2wav) ----
  // The code2wav convolution stack runs time-major: activations are [L, C] (a row per sample),
  // so a stream's history rows and a chunk's new rows are contiguous and the ConvNeXt's
  // LayerNorm/Linear apply directly. Convolution weights keep PyTorch's layout.
  //
  // Valid 1-D convolution: x [L_in, C_in] already starts with the causal left context
  // ((K-1)*dilation rows; zeros at the start of a stream), w [C_out, C_in/groups, K], bias [C_out]
  // (may be empty), out [L_in - (K-1)*dilation, C_out]:
  //   out[t, o] = bias[o] + sum_{k, i in group(o)} w[o, i, k] * x[t + k*dilation, g(o)*C_in/groups + i]
  virtual void conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, int dilation, int groups,
                      const Tensor& out) = 0;
  // ConvTranspose1d (stride s, kernel K, s <= K <= 2s) with K-s outputs dropped at both ends
  // (HF's CausalTransConvNet): x [L, C_in], w [C_in, C_out, K], bias [C_out], out [(L+1)*s - K, C_out].
  // Output row u is full-output index u + K - s; with K = 2s, rows [m*s, (m+1)*s) use x[m] and x[m+1].
  virtual void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride,
                                const Tensor& out) = 0;
  // SnakeBeta, per channel c: out = x + sin(x * exp(log_alpha[c]))^2 / (exp(log_beta[c]) + 1e-9);
  // x, out [L, C] (may alias).
  virtual void snake_beta(const Tensor& x, const Tensor& log_alpha, const Tensor& log_beta, const Tensor& out) = 0;
  // out[r, c] = x[r, c] * scale[c] (LayerScale, ConvNeXt gamma); may alias.
  virtual void channel_scale(const Tensor& x, const Tensor& scale, const Tensor& out) = 0;
  // out[t] = mean_q table[codes[t, q] + q * codebook_size]: codes I32 [T, Q], out [T, H] (code2wav input).
  virtual void embed_codebooks_mean(const Tensor& table, const Tensor& codes, int codebook_size,
                                    const Tensor& out) = 0;
};

// Deterministic hash value in [-1, 1) for (seed, index); shared by every backend's
// synthetic_weight so that CPU and CUDA make identical weights.
#if defined(__CUDACC__)
#define OMNI_HOST_DEVICE __host__ __device__
#else
#define OMNI_HOST_DEVICE
#endif
OMNI_HOST_DEVICE inline float synthetic_value(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(uint32_t(z >> 40)) * (1.0f / 8388608.0f) - 1.0f;  // 24 bits → [-1, 1)
}

// Argument checks shared by every backend's conv1d / conv_transpose1d (throw omni::Error naming the
// shapes); each returns the output length.
int64_t check_conv1d_args(const Tensor& x, const Tensor& w, const Tensor& out, int dilation, int groups);
int64_t check_conv_transpose1d_args(const Tensor& x, const Tensor& w, const Tensor& out, int stride);

// The CPU reference backend (fp32 math over bf16/f16/f32 weights).
std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend; throws DeviceError when built without CUDA or no device is usable.
// Weights are bf16 either way; f32_activations says how activations are kept where they are
// stored or fed to the tensor cores:
//   true:  fp32 KV cache, and GEMM inputs (prefill, more than 8 rows) split into bf16 hi + lo parts
//          so that the products see fp32-accurate inputs (~2^-16); what agrees with transformers in
//          fp32 to 3e-2 on the full-width checkpoint (docs/performance.md).
//   false: bf16 KV cache and bf16-rounded GEMM inputs (what transformers does when run in bf16):
//          half the KV bytes per decoded token and half the tensor-core work in prefill.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0, bool f32_activations = true);
bool cuda_backend_available();

}  // namespace omni
