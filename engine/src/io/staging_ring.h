// StagingRing: host bytes (a mapped checkpoint, or values converted on the way) streamed to device memory
// through a few pinned chunks used in turn, so that the CPU fills one chunk while the device copies another.
//
// Why: a copy from pageable memory (a mapped file) is staged by the driver one call at a time, through its
// own small pinned buffer, and a weight load is thousands of such calls. Pinned chunks let the DMA engine
// read the bytes directly, and the CPU's page faults on the mapped file overlap the copies of earlier chunks.
//
// The ring knows nothing of CUDA: a StagingDevice gives it pinned memory, ordered asynchronous copies and a
// marker per chunk. The CUDA backend implements it with cudaHostAlloc, cudaMemcpyAsync and events
// (cuda/cuda_backend.cu); the unit tests with a device that runs copies late, to prove that no chunk is
// refilled while a copy still reads it.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace omni {

class StagingDevice {
 public:
  virtual ~StagingDevice() = default;
  virtual void* alloc_pinned(size_t bytes) = 0;  // nullptr when the system has none to give
  virtual void free_pinned(void* p) = 0;
  // Asynchronous, in issue order: `bytes` from pinned memory to device address `dst`.
  virtual void copy_to_device(void* dst, const void* pinned, size_t bytes) = 0;
  virtual void mark(int chunk) = 0;  // a marker for `chunk` after every copy issued so far
  virtual void wait(int chunk) = 0;  // returns when the last mark(chunk) has been passed
};

class StagingRing {
 public:
  // Writes `n` bytes of the source, those from byte `offset` on, to `pinned`.
  using Fill = std::function<void(void* pinned, size_t offset, size_t n)>;

  StagingRing(StagingDevice& device, size_t chunk_bytes, int chunks);
  ~StagingRing();  // drains and frees; never throws (a failing wait is ignored there)
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  // Device bytes [dst, dst + bytes) get what `fill` writes; pieces are whole multiples of `unit` bytes
  // (`bytes` must be one too). False, with nothing copied, when no pinned memory could be allocated: the
  // caller then copies another way (the ring does not try again until release()).
  bool upload(void* dst, size_t bytes, const Fill& fill, size_t unit = 1);
  bool upload_bytes(void* dst, const void* src, size_t bytes);
  // Waits for every copy issued; the pinned memory stays for later uploads.
  void drain();
  // Drains and gives the pinned memory back (at the end of a model load).
  void release();

  size_t chunk_bytes() const { return chunk_bytes_; }
  int waits() const { return waits_; }  // how often a refill had to wait for the device (for tests)

 private:
  bool ensure_chunks();
  void next_chunk();
  void free_chunks();

  StagingDevice& device_;
  size_t chunk_bytes_;
  std::vector<void*> chunks_;
  std::vector<bool> marked_;  // a copy was issued from this chunk since it was last waited for
  int current_ = 0;
  size_t used_ = 0;  // bytes of the current chunk handed out
  bool unavailable_ = false;
  int waits_ = 0;
};

}  // namespace omni
