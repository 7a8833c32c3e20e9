// CudaBackend: the product backend. bf16 weights in a few large device arenas, fp32
// activations, bf16 KV caches. Decode (one row) runs on hand-written bandwidth-bound kernels
// (cuda_gemv.cuh); prefill GEMMs go through cuBLAS (bf16 inputs, fp32 accumulation).
// Everything runs on one stream; a decode step allocates nothing and never syncs with the
// host, so it can be captured as a CUDA graph (begin_capture/end_capture/replay).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda/cuda_tuning.h"
#include "omni/errors.h"

namespace omni {

class StagingRing;
class CudaStagingDevice;

// Throws DeviceError naming the call and CUDA's error string.
void cuda_check(cudaError_t err, const char* what);
void cublas_check(cublasStatus_t st, const char* what);
#define OMNI_CUDA(call) ::omni::cuda_check((call), #call)
#define OMNI_CUBLAS(call) ::omni::cublas_check((call), #call)
// After each kernel launch: launch-configuration errors surface here, by kernel name.
#define OMNI_LAUNCHED(name) ::omni::cuda_check(cudaGetLastError(), "launch of " name)

// Per-layer device table of the experts' weight addresses, built by prepare_moe.
struct CudaMoeLayout {
  const void** table = nullptr;  // device [E][3]: gate, up, down
  int experts = 0, inter = 0, hidden = 0;
  DType format = DType::BF16;     // Q8/Q4: quantized experts (cuda_quant.cu)
  const void** scales = nullptr;  // device [E][3]: their scales
  void* decode_counters = nullptr;  // device, kCudaLayerCounterBytes: decoder_layer's counters (zeroed)
};

class CudaBackend : public Backend {
 public:
  // f32_activations: see make_cuda_backend (backend.h). tuning: the kernel choices (make_cuda_backend reads
  // them from the environment); pdl is cleared on devices below compute capability 9.0.
  CudaBackend(int device_index, bool f32_activations, const cuda::CudaTuning& tuning,
              size_t scratch_bytes = size_t(256) << 20);
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }

  Tensor weight(const Tensor& host) override;  // cuda_upload.cu
  void weights_loaded() override;
  Tensor weight_as(const Tensor& host, DType format, const std::string& name) override;  // cuda_quant.cu
  void prepare_moe(MoeWeights& moe) override;
  Tensor alloc(std::initializer_list<int64_t> shape, DType dtype) override;
  using Backend::alloc;
  DType activation_dtype() const override { return DType::F32; }
  DType kv_cache_dtype() const override { return f32_activations_ ? DType::F32 : DType::BF16; }
  Tensor synthetic_weight(std::initializer_list<int64_t> shape, uint64_t seed, float scale) override;
  Tensor synthetic_weight_as(std::initializer_list<int64_t> shape, uint64_t seed, float scale, DType format) override;
  size_t resident_bytes() const override { return allocated_bytes_; }

  void upload(const Tensor& dst, const void* src) override;
  void download(void* dst, const Tensor& src) override;
  void download_f32(float* dst, const Tensor& src) override;
  void synchronize() override;

  void embed(const Tensor& table, const Tensor& ids, const Tensor& out) override;
  void embed_weighted(const Tensor& table, const Tensor& ids, const Tensor& weights, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) override;
  void add_rms_norm(const Tensor& x, const Tensor& branch, const Tensor& w, float eps, const Tensor& out) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& out, Activation act) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  void attention(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args, const Tensor& out) override;
  void mlp(const MlpWeights& w, const Tensor& x, const Tensor& out) override;
  void moe(const MoeWeights& w, const Tensor& x, const Tensor& out) override;
  // One decode row of a MoE layer as six kernels (cuda_decode_layer.cu); the default ops otherwise, or with
  // CudaTuning::decode_layer = 0.
  void decoder_layer(const DecoderLayerWeights& L, float eps, const Tensor& x, const Tensor& branch, bool add_branch,
                     const AttentionArgs& args, const Tensor& normed) override;
  // The bits go up (vocab / 8 bytes, 19 KB for the release) and one kernel masks the logits on the device.
  void mask_logits(const Tensor& logits, const uint64_t* allowed) override;
  int32_t sample(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history,
                 float uniform) override;

  // Audio encoder (cuda_audio_ops.cu).
  void conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad, const Tensor& out) override;
  void permute_0312(const Tensor& x, const Tensor& out) override;

  // Speech (cuda_speech_ops.cu).
  void conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, int dilation, int groups,
              const Tensor& out) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, const Tensor& out) override;
  void snake_beta(const Tensor& x, const Tensor& log_alpha, const Tensor& log_beta, const Tensor& out) override;
  void channel_scale(const Tensor& x, const Tensor& scale, const Tensor& out) override;
  void embed_codebooks_mean(const Tensor& table, const Tensor& codes, int codebook_size, const Tensor& out) override;

  bool supports_graphs() const override { return true; }
  void begin_capture() override;
  int end_capture() override;
  void replay(int graph_id) override;

  cudaStream_t stream() const { return stream_; }
  const cuda::CudaTuning& tuning() const { return exec_.tuning; }
  const cudaDeviceProp& props() const { return props_; }
  // Bytes of weights held on the device (all arenas).
  size_t weight_bytes() const { return weight_bytes_; }

 private:
  // Device memory from large blocks (one cudaMalloc per block), bump-allocated, 256-B aligned.
  void* arena_alloc(size_t bytes);
  // Per-op scratch: reset at the start of each op (ops are serialized on the stream).
  void* scratch(size_t bytes, const char* op);
  void scratch_reset() { scratch_used_ = 0; }
  void check_device_flags();  // raises errors the kernels flagged (bad token ids)
  // count values of src (bf16, f32 or f16 on the host) to device bf16 at dst, on the stream, through the
  // pinned staging ring (cuda_upload.cu); src may be freed when this returns.
  void upload_as_bf16(void* dst, const void* src, DType src_dtype, int64_t count);
  // GEMM through cuBLAS: out[S,N] (fp32) = x[S,K] (fp32, converted to bf16) @ w[N,K]^T.
  // x_cast: x already converted by cast_for_gemm (several GEMMs over the same x convert it once).
  void gemm(const Tensor& x, const Tensor& w, const Tensor& out, const uint16_t* x_cast = nullptr);
  // x as GEMM input: bf16, or bf16 hi + lo (lo n elements after hi) with f32 activations; scratch.
  uint16_t* cast_for_gemm(const float* x, int64_t n);
  // fp32_inputs: keep activations in fp32 (GEMV kernels, any row count) instead of cuBLAS with
  // bf16 inputs; used where a bf16 rounding could flip a decision (the MoE router's top-k).
  // x_cast: as for gemm, used only where linear_uses_gemm.
  void linear_rows(const float* x, int64_t rows, const Tensor& w, const Tensor& bias, float* out, Activation act,
                   bool fp32_inputs = false, const uint16_t* x_cast = nullptr);
  bool linear_uses_gemm(int64_t rows, const Tensor& w, bool fp32_inputs) const;
  void attention_decode(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args, const Tensor& out);
  void attention_general(const AttentionWeights& w, const Tensor& x, const AttentionArgs& args, const Tensor& out);
  void moe_decode(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, const Tensor& out);
  void moe_prefill(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, const Tensor& out);
  void shared_expert(const MoeWeights& w, const Tensor& x, const Tensor& out);

  // Quantized weights (cuda_quant.cu).
  // Device bf16 [N, K] -> Q8/Q4 rows and scales (quant.h), on the stream.
  void quantize_device(const uint16_t* src, int64_t N, int64_t K, DType format, uint8_t* data, uint16_t* scales);
  Tensor quantized_storage(std::initializer_list<int64_t> shape, DType format, const std::string& name);
  void reserve_dequant(size_t bytes);  // load time: the bf16 buffer prefill dequantizes into
  void linear_rows_quant(const float* x, int64_t rows, const Tensor& w, const Tensor& bias, float* out,
                         Activation act, bool fp32_inputs);
  void prepare_moe_quant(MoeWeights& moe, CudaMoeLayout& L);
  bool moe_quant_decode_ok(const CudaMoeLayout& L) const;
  // All experts of a layer dequantized into the buffer; returns the [E][3] table of the copies.
  const void* const* dequantize_experts(const CudaMoeLayout& L);
  // Any rows and shapes, fp32: the experts idx[s * k + j] with weights wts[...] of each row s.
  void moe_rows_quant(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, const int* idx, const float* wts,
                      const Tensor& out);
  // Decode: gate/up and down of the experts the router selected (topk_ptrs_ etc.).
  void moe_experts_quant(const MoeWeights& w, const CudaMoeLayout& L, const Tensor& x, float* act, const Tensor& out);

  int device_ = 0;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  bool capturing_ = false;
  bool f32_activations_ = true;  // fp32 KV cache + hi/lo-split GEMM inputs (make_cuda_backend)
  cuda::Exec exec_;  // stream_ and the tuning, for the kernel launchers

  std::vector<void*> blocks_;  // every cudaMalloc made, freed at destruction
  char* arena_cur_ = nullptr;
  size_t arena_left_ = 0;
  size_t weight_bytes_ = 0;
  size_t allocated_bytes_ = 0;  // every cudaMalloc

  uint16_t* dequant_buf_ = nullptr;  // prefill over quantized weights: bf16 copies
  size_t dequant_bytes_ = 0;
  const void** dequant_table_ = nullptr;  // device [kCudaMaxExperts][3] into dequant_buf_

  char* scratch_base_ = nullptr;
  size_t scratch_size_ = 0, scratch_used_ = 0;

  // Persistent small device state.
  unsigned* counters_ = nullptr;  // last-block-done counters (reset by the last block)
  float* attn_partials_ = nullptr;  // split-K attention partials
  int* topk_idx_ = nullptr;         // decode MoE: selected experts
  float* topk_w_ = nullptr;         // decode MoE: their weights
  const void** topk_ptrs_ = nullptr;  // decode MoE: their gate/up/down addresses [k][3]
  int* flags_ = nullptr;            // device error flags
  int32_t* sample_out_ = nullptr;   // device result of sample()
  int32_t* sample_host_ = nullptr;  // pinned host copy
  int32_t* history_ = nullptr;      // repetition-penalty ids
  uint64_t* mask_words_ = nullptr;  // mask_logits(): the allowed-token bits [kCudaMaxVocab / 64]
  float* sample_keys_ = nullptr;    // working logits (penalty, temperature) [kMaxVocab]
  float* sorted_keys_ = nullptr;
  int32_t* sample_ids_ = nullptr;
  int32_t* sorted_ids_ = nullptr;
  void* sort_temp_ = nullptr;
  size_t sort_temp_bytes_ = 0;

  std::vector<cudaGraphExec_t> graphs_;
  cudaGraph_t pending_graph_ = nullptr;

  // Weight uploads (cuda_upload.cu): made at the first upload, pinned memory given back by weights_loaded().
  std::unique_ptr<CudaStagingDevice> staging_device_;
  std::unique_ptr<StagingRing> staging_;
};

// Bytes of CUB temporary storage the sampler's sort needs for kCudaMaxVocab pairs.
size_t sample_sort_temp_bytes();

constexpr int kCudaMaxVocab = 1 << 18;         // sample(): logits per row
constexpr int kCudaMaxHistory = 1 << 16;       // sample(): repetition-penalty history
constexpr int kCudaAttnSplits = 64;            // decode attention: key-range splits per KV head (<= 64)
constexpr int kCudaMaxHeads = 64;              // decode attention: q heads
constexpr int kCudaMaxHeadDim = 256;
constexpr int kCudaMaxTopK = 16;
constexpr int kCudaMaxExperts = 1024;
constexpr size_t kCudaLayerCounterBytes = 2048;  // per MoE layer: decoder_layer's counters

}  // namespace omni
