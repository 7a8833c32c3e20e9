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

#include "tensor.h"

namespace omni {

enum class Activation { None, SiLU, GELU };  // GELU is the exact erf form

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

struct SamplingParams {
  bool greedy = true;
  float temperature = 1.0f;
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float repetition_penalty = 1.0f;  // 1: off; HF semantics (divide positive, multiply negative)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory (load time only) ----
  // A weight from a host view (usually a mapped file). CPU: the same view, no copy.
  // CUDA: one copy to the device.
  virtual Tensor weight(const Tensor& host) = 0;
  // Called once per MoE layer after its weights are set, so the backend can build its layout.
  virtual void prepare_moe(MoeWeights& moe) {}
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
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) = 0;  // out may alias x
  virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& out) = 0;
  // out = act(x @ w.T + bias)
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out,
                      Activation act = Activation::None) = 0;
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;  // out may alias a or b
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;                 // same shape
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

  // ---- audio encoder operations ----
  // The audio tower's convolutional downsampler (spec 3.2 steps 2-3); everything after it is
  // linear / layer_norm / attention above.
  // out = GELU(conv2d(x, w) + b), 3x3 kernel, `stride` and zero padding `pad` on both spatial
  // axes. x [N, C_in, H, W], w [C_out, C_in, 3, 3], b [C_out],
  // out [N, C_out, (H + 2*pad - 3)/stride + 1, (W + 2*pad - 3)/stride + 1].
  virtual void conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad,
                           const Tensor& out) = 0;
  // x [A, B, C, D] -> out [A, D, B, C] (torch permute(0, 3, 1, 2)): the conv output
  // [chunks, channels, freq, time] becomes [chunks, time, channels*freq] rows for conv_out.
  virtual void permute_0312(const Tensor& x, const Tensor& out) = 0;
};

// The CPU reference backend (fp32 math over bf16/f16/f32 weights).
std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend; throws DeviceError when built without CUDA or no device is usable.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);
bool cuda_backend_available();

}  // namespace omni
