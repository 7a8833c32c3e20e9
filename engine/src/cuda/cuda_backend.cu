// CudaBackend: device, memory, transfers, graphs and the elementwise operations.
// Linear/GEMV is in cuda_linear.cu, attention in cuda_attention.cu, MLP/MoE in cuda_moe.cu,
// sampling in cuda_sample.cu.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_upload.h"

namespace omni {

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw DeviceError(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) + " (" +
                      cudaGetErrorString(err) + ")");
}

void cublas_check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(std::string("cuBLAS error in ") + what + ": status " + std::to_string(int(st)));
}

namespace {

constexpr size_t kArenaBlock = size_t(1) << 30;  // weights: one cudaMalloc per GiB
constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }

using namespace cuda;

__global__ void synthetic_kernel(uint16_t* out, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f32_to_bf16_bits(scale * synthetic_value(seed, uint64_t(i)));
}

__global__ void embed_kernel(const uint16_t* table, const int32_t* ids, int64_t vocab, int64_t hidden, float* out,
                             int* flags) {
  const int s = blockIdx.x;
  const int32_t id = ids[s];
  const bool ok = id >= 0 && id < vocab;
  if (!ok && threadIdx.x == 0) atomicOr(flags, kFlagBadToken);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
    out[s * hidden + i] = ok ? bf16_at(table, int64_t(id) * hidden + i) : 0.f;
}

// One block per row: out[s] = sum_k w[s, k] * table[ids[s, k]] in fp32, k in order.
__global__ void embed_weighted_kernel(const uint16_t* table, const int32_t* ids, const float* w, int taps,
                                      int64_t rows_in_table, int64_t hidden, float* out, int* flags) {
  const int s = blockIdx.x;
  bool ok = true;
  for (int k = 0; k < taps; ++k) ok = ok && ids[s * taps + k] >= 0 && ids[s * taps + k] < rows_in_table;
  if (!ok && threadIdx.x == 0) atomicOr(flags, kFlagBadToken);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float acc = 0.f;
    for (int k = 0; k < taps && ok; ++k)
      acc += w[s * taps + k] * bf16_at(table, int64_t(ids[s * taps + k]) * hidden + i);
    out[s * hidden + i] = acc;
  }
}

// One block per row. With `branch`, x += branch is written back first (add_rms_norm).
__global__ void rms_norm_kernel(float* x, const float* branch, const uint16_t* w, int cols, float eps, float* out) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = out + int64_t(blockIdx.x) * cols;
  float ss = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = xr[i];
    if (branch) {
      v += branch[int64_t(blockIdx.x) * cols + i];
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float inv = 1.f / sqrtf(ss / float(cols) + eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = bf16_at(w, i) * (xr[i] * inv);
}

__global__ void layer_norm_kernel(const float* x, const uint16_t* w, const uint16_t* b, int cols, float eps,
                                  float* out) {
  __shared__ float red[32];
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = out + int64_t(blockIdx.x) * cols;
  float s = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) s += xr[i];
  const float mean = block_sum(s, red) / float(cols);
  float v = 0.f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) v += (xr[i] - mean) * (xr[i] - mean);
  const float inv = 1.f / sqrtf(block_sum(v, red) / float(cols) + eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x)
    yr[i] = (xr[i] - mean) * inv * bf16_at(w, i) + (b ? bf16_at(b, i) : 0.f);
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void to_f32_kernel(const uint16_t* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bf16_at(in, i);
}

int grid_for(int64_t n, int threads) { return int(std::min<int64_t>((n + threads - 1) / threads, 65535)); }

void require_f32(const Tensor& t, const char* op, const char* what) {
  if (t.dtype != DType::F32 || !t.on_device)
    throw Error(std::string(op) + ": " + what + " must be an fp32 CUDA activation (got " + dtype_name(t.dtype) +
                (t.on_device ? "" : ", host memory") + ")");
}
void require_bf16(const Tensor& t, const char* op, const char* what) {
  if (t.dtype != DType::BF16 || !t.on_device)
    throw Error(std::string(op) + ": " + what + " must be a bf16 CUDA weight (got " + dtype_name(t.dtype) + ")");
}

}  // namespace

CudaBackend::CudaBackend(int device_index, bool f32_activations, const cuda::CudaTuning& tuning,
                         size_t scratch_bytes)
    : device_(device_index), f32_activations_(f32_activations) {
  int count = 0;
  OMNI_CUDA(cudaGetDeviceCount(&count));
  if (device_index < 0 || device_index >= count)
    throw DeviceError("CUDA device " + std::to_string(device_index) + " does not exist (" + std::to_string(count) +
                      " found)");
  OMNI_CUDA(cudaSetDevice(device_));
  OMNI_CUDA(cudaGetDeviceProperties(&props_, device_));
  OMNI_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  exec_.stream = stream_;
  exec_.tuning = tuning;
  // Programmatic dependent launch needs compute capability 9.0 (Hopper, Thor).
  exec_.tuning.pdl = tuning.pdl && props_.major >= 9;
  OMNI_CUBLAS(cublasCreate(&cublas_));
  OMNI_CUBLAS(cublasSetStream(cublas_, stream_));
  // A fixed cuBLAS workspace so that GEMMs never allocate.
  const size_t ws_bytes = size_t(32) << 20;
  void* ws = arena_alloc(ws_bytes);
  OMNI_CUBLAS(cublasSetWorkspace(cublas_, ws, ws_bytes));

  scratch_size_ = scratch_bytes;
  scratch_base_ = static_cast<char*>(arena_alloc(scratch_bytes));
  counters_ = static_cast<unsigned*>(arena_alloc(sizeof(unsigned) * 1024));
  attn_partials_ = static_cast<float*>(
      arena_alloc(sizeof(float) * kCudaMaxHeads * kCudaAttnSplits * (kCudaMaxHeadDim + 4)));
  topk_idx_ = static_cast<int*>(arena_alloc(sizeof(int) * kCudaMaxTopK));
  topk_w_ = static_cast<float*>(arena_alloc(sizeof(float) * kCudaMaxTopK));
  topk_ptrs_ = static_cast<const void**>(arena_alloc(sizeof(void*) * 3 * kCudaMaxTopK));
  flags_ = static_cast<int*>(arena_alloc(sizeof(int) * 4));
  sample_out_ = static_cast<int32_t*>(arena_alloc(sizeof(int32_t) * 4));
  history_ = static_cast<int32_t*>(arena_alloc(sizeof(int32_t) * kCudaMaxHistory));
  mask_words_ = static_cast<uint64_t*>(arena_alloc(sizeof(uint64_t) * (kCudaMaxVocab / 64)));
  sample_keys_ = static_cast<float*>(arena_alloc(sizeof(float) * kCudaMaxVocab));
  sorted_keys_ = static_cast<float*>(arena_alloc(sizeof(float) * kCudaMaxVocab));
  sample_ids_ = static_cast<int32_t*>(arena_alloc(sizeof(int32_t) * kCudaMaxVocab));
  sorted_ids_ = static_cast<int32_t*>(arena_alloc(sizeof(int32_t) * kCudaMaxVocab));
  sort_temp_bytes_ = sample_sort_temp_bytes();
  sort_temp_ = arena_alloc(sort_temp_bytes_);
  OMNI_CUDA(cudaMallocHost(&sample_host_, sizeof(int32_t) * 4));
  OMNI_CUDA(cudaMemsetAsync(counters_, 0, sizeof(unsigned) * 1024, stream_));
  OMNI_CUDA(cudaMemsetAsync(flags_, 0, sizeof(int) * 4, stream_));
  OMNI_CUDA(cudaStreamSynchronize(stream_));
}

CudaBackend::~CudaBackend() {
  // Errors here cannot be reported; release what can be released.
  cudaStreamSynchronize(stream_);
  staging_.reset();  // before the stream its events were recorded on
  staging_device_.reset();
  for (cudaGraphExec_t g : graphs_) cudaGraphExecDestroy(g);
  if (cublas_) cublasDestroy(cublas_);
  if (sample_host_) cudaFreeHost(sample_host_);
  for (void* p : blocks_) cudaFree(p);
  if (stream_) cudaStreamDestroy(stream_);
}

void* CudaBackend::arena_alloc(size_t bytes) {
  bytes = align_up(bytes ? bytes : 1);
  if (bytes > kArenaBlock / 4) {  // large tensors get their own block
    void* p = nullptr;
    OMNI_CUDA(cudaMalloc(&p, bytes));
    blocks_.push_back(p);
    allocated_bytes_ += bytes;
    return p;
  }
  if (bytes > arena_left_) {
    void* p = nullptr;
    OMNI_CUDA(cudaMalloc(&p, kArenaBlock));
    blocks_.push_back(p);
    allocated_bytes_ += kArenaBlock;
    arena_cur_ = static_cast<char*>(p);
    arena_left_ = kArenaBlock;
  }
  void* p = arena_cur_;
  arena_cur_ += bytes;
  arena_left_ -= bytes;
  return p;
}

void* CudaBackend::scratch(size_t bytes, const char* op) {
  bytes = align_up(bytes);
  if (scratch_used_ + bytes > scratch_size_)
    throw Error(std::string(op) + ": needs " + std::to_string((scratch_used_ + bytes) >> 20) +
                " MiB of CUDA scratch, more than the " + std::to_string(scratch_size_ >> 20) +
                " MiB reserved; process fewer rows per call");
  void* p = scratch_base_ + scratch_used_;
  scratch_used_ += bytes;
  return p;
}

Tensor CudaBackend::synthetic_weight(std::initializer_list<int64_t> shape, uint64_t seed, float scale) {
  Tensor t(nullptr, DType::BF16, shape, true);
  t.data = arena_alloc(t.bytes());
  weight_bytes_ += t.bytes();
  synthetic_kernel<<<grid_for(t.numel(), 256), 256, 0, stream_>>>(t.as<uint16_t>(), t.numel(), seed, scale);
  OMNI_LAUNCHED("synthetic_kernel");
  return t;
}

Tensor CudaBackend::alloc(std::initializer_list<int64_t> shape, DType dtype) {
  Tensor t(nullptr, dtype, shape, true);
  t.data = arena_alloc(t.bytes());
  OMNI_CUDA(cudaMemsetAsync(t.data, 0, t.bytes(), stream_));
  return t;
}

void CudaBackend::upload(const Tensor& dst, const void* src) {
  OMNI_CUDA(cudaMemcpyAsync(dst.data, src, dst.bytes(), cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::download(void* dst, const Tensor& src) {
  if (capturing_) throw Error("download: not allowed while capturing a graph");
  OMNI_CUDA(cudaMemcpyAsync(dst, src.data, src.bytes(), cudaMemcpyDeviceToHost, stream_));
  OMNI_CUDA(cudaStreamSynchronize(stream_));
  check_device_flags();
}

void CudaBackend::download_f32(float* dst, const Tensor& src) {
  if (src.dtype == DType::F32) return download(dst, src);
  std::vector<uint16_t> raw(size_t(src.numel()));
  if (src.dtype == DType::I32) throw Error("download_f32: tensor " + src.shape_str() + " is integer");
  download(raw.data(), src);
  for (size_t i = 0; i < raw.size(); ++i)
    dst[i] = src.dtype == DType::BF16 ? bf16_to_f32(raw[i]) : f16_to_f32(raw[i]);
}

void CudaBackend::synchronize() {
  if (capturing_) throw Error("synchronize: not allowed while capturing a graph");
  OMNI_CUDA(cudaStreamSynchronize(stream_));
  check_device_flags();
}

void CudaBackend::check_device_flags() {
  int flags = 0;
  OMNI_CUDA(cudaMemcpy(&flags, flags_, sizeof(int), cudaMemcpyDeviceToHost));
  if (!flags) return;
  OMNI_CUDA(cudaMemsetAsync(flags_, 0, sizeof(int), stream_));  // ordered before the next kernel that may set it
  if (flags & kFlagBadToken) throw Error("embed: a token id is outside the vocabulary");
  if (flags & 4) throw Error("code2wav: a code is outside its codebook");
  throw Error("attention: a position is outside the KV cache");
}

void CudaBackend::begin_capture() {
  if (capturing_) throw Error("begin_capture: already capturing");
  OMNI_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
}

int CudaBackend::end_capture() {
  if (!capturing_) throw Error("end_capture: no capture in progress");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  OMNI_CUDA(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  OMNI_CUDA(err);
  graphs_.push_back(exec);
  return int(graphs_.size()) - 1;
}

void CudaBackend::replay(int graph_id) {
  if (graph_id < 0 || graph_id >= int(graphs_.size())) throw Error("replay: no graph " + std::to_string(graph_id));
  OMNI_CUDA(cudaGraphLaunch(graphs_[size_t(graph_id)], stream_));
}

void CudaBackend::embed(const Tensor& table, const Tensor& ids, const Tensor& out) {
  require_bf16(table, "embed", "table");
  require_f32(out, "embed", "out");
  if (ids.dtype != DType::I32 || !ids.on_device) throw Error("embed: ids must be an I32 CUDA tensor");
  const int64_t n = ids.numel();
  if (out.numel() != n * table.dim(1))
    throw Error("embed: out " + out.shape_str() + " does not hold " + std::to_string(n) + " rows of " +
                std::to_string(table.dim(1)));
  if (n == 0) return;
  embed_kernel<<<int(n), 256, 0, stream_>>>(table.as<uint16_t>(), ids.as<int32_t>(), table.dim(0), table.dim(1),
                                            out.as<float>(), flags_);
  OMNI_LAUNCHED("embed_kernel");
}

void CudaBackend::embed_weighted(const Tensor& table, const Tensor& ids, const Tensor& weights, const Tensor& out) {
  require_bf16(table, "embed_weighted", "table");
  require_f32(out, "embed_weighted", "out");
  require_f32(weights, "embed_weighted", "weights");
  if (ids.dtype != DType::I32 || !ids.on_device || ids.ndim != 2)
    throw Error("embed_weighted: ids must be an I32 CUDA tensor [rows, taps]");
  if (weights.ndim != 2 || weights.dim(0) != ids.dim(0) || weights.dim(1) != ids.dim(1) ||
      out.numel() != ids.dim(0) * table.dim(1))
    throw Error("embed_weighted: ids " + ids.shape_str() + ", weights " + weights.shape_str() + ", table " +
                table.shape_str() + " and out " + out.shape_str() + " do not fit together");
  if (ids.dim(0) == 0) return;
  embed_weighted_kernel<<<int(ids.dim(0)), 256, 0, stream_>>>(table.as<uint16_t>(), ids.as<int32_t>(),
                                                              weights.as<float>(), int(ids.dim(1)), table.dim(0),
                                                              table.dim(1), out.as<float>(), flags_);
  OMNI_LAUNCHED("embed_weighted_kernel");
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& out) {
  require_f32(x, "rms_norm", "x");
  require_f32(out, "rms_norm", "out");
  require_bf16(w, "rms_norm", "weight");
  const int64_t cols = w.numel(), rows = x.numel() / cols;
  if (rows * cols != x.numel() || out.numel() != x.numel())
    throw Error("rms_norm: x " + x.shape_str() + " vs weight " + w.shape_str() + " vs out " + out.shape_str());
  if (rows == 0) return;
  launch(rms_norm_kernel, dim3(unsigned(rows)), dim3(512), exec_, x.as<float>(), static_cast<const float*>(nullptr),
         w.as<uint16_t>(), int(cols), eps, out.as<float>());
  OMNI_LAUNCHED("rms_norm_kernel");
}

void CudaBackend::add_rms_norm(const Tensor& x, const Tensor& branch, const Tensor& w, float eps, const Tensor& out) {
  require_f32(x, "add_rms_norm", "x");
  require_f32(branch, "add_rms_norm", "branch");
  require_f32(out, "add_rms_norm", "out");
  require_bf16(w, "add_rms_norm", "weight");
  const int64_t cols = w.numel(), rows = x.numel() / cols;
  if (rows * cols != x.numel() || out.numel() != x.numel() || branch.numel() != x.numel())
    throw Error("add_rms_norm: x " + x.shape_str() + ", branch " + branch.shape_str() + ", weight " + w.shape_str());
  if (rows == 0) return;
  launch(rms_norm_kernel, dim3(unsigned(rows)), dim3(512), exec_, x.as<float>(), branch.as<float>(),
         w.as<uint16_t>(), int(cols), eps, out.as<float>());
  OMNI_LAUNCHED("rms_norm_kernel(add)");
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, const Tensor& out) {
  require_f32(x, "layer_norm", "x");
  require_f32(out, "layer_norm", "out");
  require_bf16(w, "layer_norm", "weight");
  if (!b.empty()) require_bf16(b, "layer_norm", "bias");
  const int64_t cols = w.numel(), rows = x.numel() / cols;
  if (rows * cols != x.numel() || out.numel() != x.numel())
    throw Error("layer_norm: x " + x.shape_str() + " vs weight " + w.shape_str());
  if (rows == 0) return;
  layer_norm_kernel<<<int(rows), 512, 0, stream_>>>(x.as<float>(), w.as<uint16_t>(),
                                                   b.empty() ? nullptr : b.as<uint16_t>(), int(cols), eps,
                                                   out.as<float>());
  OMNI_LAUNCHED("layer_norm_kernel");
}

void CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  require_f32(a, "add", "a");
  require_f32(b, "add", "b");
  require_f32(out, "add", "out");
  if (a.numel() != out.numel() || b.numel() != out.numel())
    throw Error("add: shapes " + a.shape_str() + " + " + b.shape_str() + " -> " + out.shape_str());
  const int64_t n = out.numel();
  if (n == 0) return;
  add_kernel<<<grid_for(n, 256), 256, 0, stream_>>>(a.as<float>(), b.as<float>(), out.as<float>(), n);
  OMNI_LAUNCHED("add_kernel");
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.bytes() == dst.bytes() && src.dtype == dst.dtype) {
    OMNI_CUDA(cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDeviceToDevice, stream_));
  } else if (src.dtype == DType::BF16 && dst.dtype == DType::F32 && src.numel() == dst.numel()) {
    to_f32_kernel<<<grid_for(src.numel(), 256), 256, 0, stream_>>>(src.as<uint16_t>(), dst.as<float>(), src.numel());
    OMNI_LAUNCHED("to_f32_kernel");
  } else {
    throw Error("copy: " + src.shape_str() + " " + dtype_name(src.dtype) + " to " + dst.shape_str() + " " +
                dtype_name(dst.dtype) + " is not a copy");
  }
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, bool f32_activations) {
  return std::make_unique<CudaBackend>(device_index, f32_activations, cuda::CudaTuning::from_env());
}

bool cuda_backend_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace omni
