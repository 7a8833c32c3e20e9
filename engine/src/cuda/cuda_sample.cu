// sample(): the CPU reference's order on the GPU — repetition penalty → (greedy: argmax) →
// temperature → top-k → top-p → draw with the caller's uniform. Greedy is one block's argmax;
// sampling sorts (stable radix sort, ties keep the lower id as std::stable_sort does) and
// scans the kept prefix in double. The 4-byte id copy is the only host sync.
#include <cub/cub.cuh>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"

namespace omni {
namespace cuda {
namespace {

constexpr int kThreads = 1024;

__global__ void prepare_keys_kernel(const float* logits, int V, float inv_t, float* keys, int32_t* ids) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < V; i += gridDim.x * blockDim.x) {
    keys[i] = logits[i] * inv_t;
    if (ids) ids[i] = i;
  }
}

// HF repetition penalty on the original logits; duplicates in the history write the same value.
__global__ void penalty_kernel(const float* logits, const int32_t* history, int n, int V, float penalty, float inv_t,
                               float* keys) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int id = history[i];
    if (id < 0 || id >= V) continue;
    const float x = logits[id];
    keys[id] = (x < 0 ? x * penalty : x / penalty) * inv_t;
  }
}

// HF SuppressTokensLogitsProcessor: ids in [begin, end) except `keep` become -inf.
__global__ void suppress_kernel(float* keys, int begin, int end, int keep) {
  for (int i = begin + blockIdx.x * blockDim.x + threadIdx.x; i < end; i += gridDim.x * blockDim.x)
    if (i != keep) keys[i] = -INFINITY;
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* keys, int V, int32_t* out) {
  __shared__ float bv[32];
  __shared__ int bi[32];
  float best = -INFINITY;
  int idx = 0x7fffffff;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float v = keys[i];
    if (v > best || (v == best && i < idx)) {
      best = v;
      idx = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, best, o);
    const int oi = __shfl_xor_sync(kFull, idx, o);
    if (ov > best || (ov == best && oi < idx)) {
      best = ov;
      idx = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    bv[warp] = best;
    bi[warp] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      if (bv[w] > best || (bv[w] == best && bi[w] < idx)) {
        best = bv[w];
        idx = bi[w];
      }
    *out = idx;
  }
}

// Over keys sorted descending: keep = top_k prefix; probabilities exp(key - max) in double;
// top-p keeps the shortest prefix whose mass reaches top_p * total; then the first index
// whose cumulative mass exceeds uniform * kept mass.
__global__ void __launch_bounds__(kThreads) draw_kernel(const float* keys, const int32_t* ids, int keep, float top_p,
                                                        float uniform, int32_t* out) {
  using Scan = cub::BlockScan<double, kThreads>;
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ typename Reduce::TempStorage red_tmp;
  __shared__ double total_s, running;
  __shared__ int found;
  const float mx = keys[0];
  double part = 0;
  for (int i = threadIdx.x; i < keep; i += kThreads) part += exp(double(keys[i] - mx));
  const double total = Reduce(red_tmp).Sum(part);
  if (threadIdx.x == 0) total_s = total;
  __syncthreads();
  // Pass 1 (top-p) finds the kept count n; pass 2 the drawn index.
  int n = keep;
  double kept_mass = total_s;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 0 && top_p >= 1.f) continue;
    const double target = pass == 0 ? double(top_p) * total_s : double(uniform) * kept_mass;
    if (threadIdx.x == 0) {
      running = 0;
      found = 0x7fffffff;
    }
    __syncthreads();
    const int limit = pass == 0 ? keep : n;
    for (int base = 0; base < limit; base += kThreads) {
      const int i = base + threadIdx.x;
      const double p = i < limit ? exp(double(keys[i] - mx)) : 0.0;
      double cum;
      Scan(scan_tmp).InclusiveSum(p, cum);
      cum += running;
      // pass 0: first i with cum >= target (and i >= 0); pass 1: first i with target < cum.
      const bool hit = i < limit && (pass == 0 ? cum >= target : target < cum);
      if (hit) atomicMin(&found, i);
      __syncthreads();
      if (threadIdx.x == kThreads - 1) running = cum;
      __syncthreads();
      if (found != 0x7fffffff) break;
    }
    if (pass == 0) {
      n = found == 0x7fffffff ? keep : found + 1;
      // Mass of the kept prefix, summed again in the same order as the scan.
      double m = 0;
      for (int i = threadIdx.x; i < n; i += kThreads) m += exp(double(keys[i] - mx));
      __syncthreads();
      const double km = Reduce(red_tmp).Sum(m);
      if (threadIdx.x == 0) total_s = km;
      __syncthreads();
      kept_mass = total_s;
    } else if (threadIdx.x == 0) {
      *out = ids[found == 0x7fffffff ? n - 1 : found];
    }
    __syncthreads();
  }
}

}  // namespace
}  // namespace cuda

using namespace cuda;

size_t sample_sort_temp_bytes() {
  size_t bytes = 0;
  OMNI_CUDA(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                                      static_cast<float*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                      static_cast<int32_t*>(nullptr), kCudaMaxVocab));
  return bytes;
}

__global__ void mask_kernel(float* logits, const uint64_t* allowed, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    if (!((allowed[i >> 6] >> (i & 63)) & 1ull)) logits[i] = -INFINITY;
}

void CudaBackend::mask_logits(const Tensor& logits, const uint64_t* allowed) {
  if (capturing_) throw Error("mask_logits: not allowed while capturing a graph (it reads host memory)");
  if (logits.dtype != DType::F32 || !logits.on_device) throw Error("mask_logits: logits must be fp32 on the device");
  const int64_t V = logits.numel();
  if (V <= 0 || V > kCudaMaxVocab)
    throw Error("mask_logits: " + std::to_string(V) + " logits; at most " + std::to_string(kCudaMaxVocab));
  const size_t words = size_t((V + 63) / 64);
  OMNI_CUDA(cudaMemcpyAsync(mask_words_, allowed, words * sizeof(uint64_t), cudaMemcpyHostToDevice, stream_));
  mask_kernel<<<int(std::min<int64_t>((V + 255) / 256, 1024)), 256, 0, stream_>>>(logits.as<float>(), mask_words_,
                                                                                   int(V));
  OMNI_LAUNCHED("mask_kernel");
}

int32_t CudaBackend::sample(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history,
                            float uniform) {
  if (capturing_) throw Error("sample: not allowed while capturing a graph (it returns a value to the host)");
  if (logits.dtype != DType::F32 || !logits.on_device) throw Error("sample: logits must be fp32 on the device");
  const int64_t V = logits.numel();
  if (V <= 0 || V > kCudaMaxVocab)
    throw Error("sample: " + std::to_string(V) + " logits; the CUDA sampler takes 1 to " +
                std::to_string(kCudaMaxVocab));
  const bool penalize = p.repetition_penalty != 1.0f && !history.empty();
  if (penalize && history.size() > size_t(kCudaMaxHistory))
    throw Error("sample: a repetition-penalty history of " + std::to_string(history.size()) + " ids exceeds " +
                std::to_string(kCudaMaxHistory));
  const float inv_t = p.greedy ? 1.f : 1.f / (p.temperature > 0 ? p.temperature : 1.0f);
  const float* src = logits.as<float>();
  const int blocks = int(std::min<int64_t>((V + 255) / 256, 1024));
  const int sup_begin = int(std::max<int64_t>(0, p.suppress_begin)), sup_end = int(std::min<int64_t>(V, p.suppress_end));
  const bool suppress = sup_end > sup_begin;
  if (!p.greedy || penalize || suppress) {
    prepare_keys_kernel<<<blocks, 256, 0, stream_>>>(src, int(V), inv_t, sample_keys_, p.greedy ? nullptr : sample_ids_);
    OMNI_LAUNCHED("prepare_keys_kernel");
    if (penalize) {
      OMNI_CUDA(cudaMemcpyAsync(history_, history.data(), history.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                                stream_));
      penalty_kernel<<<int((history.size() + 255) / 256), 256, 0, stream_>>>(
          src, history_, int(history.size()), int(V), p.repetition_penalty, inv_t, sample_keys_);
      OMNI_LAUNCHED("penalty_kernel");
    }
    if (suppress) {
      suppress_kernel<<<(sup_end - sup_begin + 255) / 256, 256, 0, stream_>>>(sample_keys_, sup_begin, sup_end,
                                                                             p.suppress_except);
      OMNI_LAUNCHED("suppress_kernel");
    }
    src = sample_keys_;
  }
  if (p.greedy) {
    argmax_kernel<<<1, kThreads, 0, stream_>>>(src, int(V), sample_out_);
    OMNI_LAUNCHED("argmax_kernel");
  } else {
    size_t bytes = sort_temp_bytes_;
    OMNI_CUDA(cub::DeviceRadixSort::SortPairsDescending(sort_temp_, bytes, sample_keys_, sorted_keys_, sample_ids_,
                                                        sorted_ids_, int(V), 0, 32, stream_));
    const int keep = p.top_k > 0 ? int(std::min<int64_t>(V, p.top_k)) : int(V);
    draw_kernel<<<1, kThreads, 0, stream_>>>(sorted_keys_, sorted_ids_, keep, p.top_p, uniform, sample_out_);
    OMNI_LAUNCHED("draw_kernel");
  }
  OMNI_CUDA(cudaMemcpyAsync(sample_host_, sample_out_, sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
  OMNI_CUDA(cudaStreamSynchronize(stream_));
  check_device_flags();
  return sample_host_[0];
}

}  // namespace omni
