// Weight uploads: host tensors (views of the mapped checkpoint) to device memory as bf16, through the
// pinned staging ring (../staging_ring.h). Float32/float16 checkpoints are converted while the bytes are
// written into the pinned chunk, so no second host copy is made.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_upload.h"

namespace omni {

namespace {

// 4 × 32 MiB: large enough that a copy's setup cost is noise, small enough that the pinned memory (given
// back after the load) is no burden on Thor, whose CPU and GPU share one memory.
constexpr size_t kStagingChunkBytes = size_t(32) << 20;
constexpr int kStagingChunks = 4;

}  // namespace

CudaStagingDevice::~CudaStagingDevice() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

void* CudaStagingDevice::alloc_pinned(size_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it, the caller falls back to pageable copies
    std::fprintf(stderr, "omni: no pinned memory for weight uploads (%zu bytes); copying from pageable memory\n",
                 bytes);
    return nullptr;
  }
  return p;
}

void CudaStagingDevice::free_pinned(void* p) { cudaFreeHost(p); }

void CudaStagingDevice::copy_to_device(void* dst, const void* pinned, size_t bytes) {
  OMNI_CUDA(cudaMemcpyAsync(dst, pinned, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaStagingDevice::mark(int chunk) {
  while (events_.size() <= size_t(chunk)) {
    cudaEvent_t e = nullptr;
    OMNI_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    events_.push_back(e);
  }
  OMNI_CUDA(cudaEventRecord(events_[size_t(chunk)], stream_));
}

void CudaStagingDevice::wait(int chunk) { OMNI_CUDA(cudaEventSynchronize(events_.at(size_t(chunk)))); }

namespace {

// Ask the kernel to read a mapped range ahead (a no-op for memory that is not a file mapping): the page
// faults of the copy into the pinned chunk then find the pages already read.
void read_ahead(const void* p, size_t bytes) {
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
}

}  // namespace

void CudaBackend::upload_as_bf16(void* dst, const void* src, DType src_dtype, int64_t count) {
  if (!staging_) {
    staging_device_ = std::make_unique<CudaStagingDevice>(stream_);
    staging_ = std::make_unique<StagingRing>(*staging_device_, kStagingChunkBytes, kStagingChunks);
  }
  const size_t bytes = size_t(count) * 2;
  read_ahead(src, size_t(count) * dtype_size(src_dtype));
  if (src_dtype == DType::BF16) {
    if (staging_->upload_bytes(dst, src, bytes)) return;
    // Pageable: the call returns once the driver has staged the bytes, so `src` may go right after.
    OMNI_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    return;
  }
  // The CUDA backend keeps bf16 values: float32 / float16 sources are rounded on the way.
  auto convert = [src, src_dtype](uint16_t* out, size_t first, size_t n) {
    if (src_dtype == DType::F32) {
      const float* in = static_cast<const float*>(src) + first;
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
    } else {
      const uint16_t* in = static_cast<const uint16_t*>(src) + first;
      for (size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(f16_to_f32(in[i]));
    }
  };
  if (staging_->upload(
          dst, bytes,
          [&](void* pinned, size_t offset, size_t n) { convert(static_cast<uint16_t*>(pinned), offset / 2, n / 2); },
          2))
    return;
  std::vector<uint16_t> conv(static_cast<size_t>(count));
  convert(conv.data(), 0, conv.size());
  OMNI_CUDA(cudaMemcpyAsync(dst, conv.data(), bytes, cudaMemcpyHostToDevice, stream_));
}

Tensor CudaBackend::weight(const Tensor& host) {
  if (host.on_device) throw Error("weight: the source tensor " + host.shape_str() + " is already on a device");
  if (host.dtype != DType::BF16 && host.dtype != DType::F32 && host.dtype != DType::F16)
    throw Error("weight: tensors of " + std::string(dtype_name(host.dtype)) + " " + host.shape_str() +
                " are not float weights");
  Tensor t = host;
  t.dtype = DType::BF16;
  t.on_device = true;
  t.data = arena_alloc(t.bytes());
  weight_bytes_ += t.bytes();
  // On stream_, like every kernel that reads the weight: the non-blocking stream_ does not wait for the
  // legacy stream, so a copy issued there could land after a kernel launched right after it (seen: the
  // first fp32 GEMM of a GPU test read zeros).
  upload_as_bf16(t.data, host.data, host.dtype, host.numel());
  return t;
}

void CudaBackend::weights_loaded() {
  if (staging_) staging_->release();  // waits for the last copies, gives the pinned chunks back
}

}  // namespace omni
