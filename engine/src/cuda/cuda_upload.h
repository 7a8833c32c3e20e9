// The staging ring's device (../staging_ring.h) on CUDA: pinned chunks from cudaHostAlloc, copies with
// cudaMemcpyAsync and one event per chunk, all on the backend's stream (cuda_upload.cu).
#pragma once
#include <cuda_runtime.h>

#include <vector>

#include "io/staging_ring.h"

namespace omni {

class CudaStagingDevice : public StagingDevice {
 public:
  explicit CudaStagingDevice(cudaStream_t stream) : stream_(stream) {}
  ~CudaStagingDevice() override;
  void* alloc_pinned(size_t bytes) override;  // nullptr (and a note on stderr) when none can be pinned
  void free_pinned(void* p) override;
  void copy_to_device(void* dst, const void* pinned, size_t bytes) override;
  void mark(int chunk) override;
  void wait(int chunk) override;

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

}  // namespace omni
