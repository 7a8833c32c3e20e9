#include "io/staging_ring.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace omni {

namespace {
// Pieces start on this boundary inside a chunk, so that the DMA reads whole aligned lines.
constexpr size_t kPieceAlign = 256;
}  // namespace

StagingRing::StagingRing(StagingDevice& device, size_t chunk_bytes, int chunks)
    : device_(device), chunk_bytes_(std::max(chunk_bytes, kPieceAlign) / kPieceAlign * kPieceAlign) {
  if (chunks < 2) throw std::invalid_argument("StagingRing: at least two chunks are needed to overlap");
  chunks_.assign(size_t(chunks), nullptr);
  marked_.assign(size_t(chunks), false);
}

// Never throws: after a device error (a sticky CUDA error fails every wait) the backend is torn down with the
// ring, and a destructor that throws would end the process instead of the orderly exit the daemon makes.
StagingRing::~StagingRing() {
  try {
    drain();
  } catch (...) {
  }
  free_chunks();
}

void StagingRing::free_chunks() {
  for (void*& c : chunks_)
    if (c) device_.free_pinned(c), c = nullptr;
  std::fill(marked_.begin(), marked_.end(), false);
  unavailable_ = false;
  used_ = 0;
  current_ = 0;
}

bool StagingRing::ensure_chunks() {
  if (unavailable_) return false;
  if (chunks_[0]) return true;
  for (void*& c : chunks_) {
    c = device_.alloc_pinned(chunk_bytes_);
    if (!c) {
      for (void*& f : chunks_)
        if (f) device_.free_pinned(f), f = nullptr;
      unavailable_ = true;
      return false;
    }
  }
  current_ = 0;
  used_ = 0;
  return true;
}

// The next chunk may still be read by copies issued the last time round: wait for its marker.
void StagingRing::next_chunk() {
  current_ = (current_ + 1) % int(chunks_.size());
  if (marked_[size_t(current_)]) {
    device_.wait(current_);
    marked_[size_t(current_)] = false;
    ++waits_;
  }
  used_ = 0;
}

bool StagingRing::upload(void* dst, size_t bytes, const Fill& fill, size_t unit) {
  if (unit == 0 || bytes % unit != 0 || chunk_bytes_ < unit)
    throw std::invalid_argument("StagingRing::upload: " + std::to_string(bytes) + " bytes in units of " +
                                std::to_string(unit));
  if (bytes == 0) return true;
  if (!ensure_chunks()) return false;
  size_t done = 0;
  while (done < bytes) {
    size_t n = std::min(bytes - done, chunk_bytes_ - used_);
    n -= n % unit;
    if (n == 0) {
      next_chunk();
      continue;
    }
    char* piece = static_cast<char*>(chunks_[size_t(current_)]) + used_;
    fill(piece, done, n);
    device_.copy_to_device(static_cast<char*>(dst) + done, piece, n);
    device_.mark(current_);
    marked_[size_t(current_)] = true;
    used_ = std::min(chunk_bytes_, (used_ + n + kPieceAlign - 1) / kPieceAlign * kPieceAlign);
    done += n;
  }
  return true;
}

bool StagingRing::upload_bytes(void* dst, const void* src, size_t bytes) {
  return upload(dst, bytes, [src](void* pinned, size_t offset, size_t n) {
    std::memcpy(pinned, static_cast<const char*>(src) + offset, n);
  });
}

void StagingRing::drain() {
  for (size_t c = 0; c < chunks_.size(); ++c)
    if (marked_[c]) {
      device_.wait(int(c));
      marked_[c] = false;
    }
}

void StagingRing::release() {
  drain();
  free_chunks();
}

}  // namespace omni
