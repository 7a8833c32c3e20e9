// The pinned staging ring (engine/src/io/staging_ring.h) against a device that runs its copies as late as it
// may: only when a marker is waited for or the ring drains. A chunk refilled while a copy still had to read it
// would then deliver the new bytes to the old destination, and the comparisons below would fail.
#include "io/staging_ring.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

namespace {

using omni::StagingRing;

class LateDevice : public omni::StagingDevice {
 public:
  bool refuse_pinned = false;
  bool device_lost = false;  // every wait throws, as CUDA does after a sticky error
  int allocations = 0, frees = 0;

  void* alloc_pinned(size_t bytes) override {
    if (refuse_pinned) return nullptr;
    ++allocations;
    return new char[bytes];
  }
  void free_pinned(void* p) override {
    ++frees;
    delete[] static_cast<char*>(p);
  }
  void copy_to_device(void* dst, const void* pinned, size_t bytes) override {
    queue_.push_back({dst, pinned, bytes, -1});
  }
  void mark(int chunk) override {
    queue_.push_back({nullptr, nullptr, 0, chunk});
    ever_marked_.insert(chunk);
  }
  void wait(int chunk) override {
    if (device_lost) throw std::runtime_error("an illegal memory access was encountered");
    // Runs the queue up to and including the last marker of `chunk`; a marker that an earlier wait ran
    // past has been passed already (as a completed CUDA event).
    ASSERT_TRUE(ever_marked_.count(chunk)) << "wait(" << chunk << ") without a marker";
    size_t end = 0;
    for (size_t i = 0; i < queue_.size(); ++i)
      if (queue_[i].marker == chunk) end = i + 1;
    for (size_t i = 0; i < end; ++i) run(queue_.front()), queue_.pop_front();
  }
  size_t pending_copies() const {
    size_t n = 0;
    for (const auto& op : queue_) n += op.marker < 0;
    return n;
  }

 private:
  struct Op {
    void* dst;
    const void* src;
    size_t bytes;
    int marker;  // >= 0: a marker, no copy
  };
  static void run(const Op& op) {
    if (op.marker < 0) std::memcpy(op.dst, op.src, op.bytes);
  }
  std::deque<Op> queue_;
  std::set<int> ever_marked_;
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

TEST(StagingRing, ManyTensorsOfMixedSizesArriveIntactThroughFewChunks) {
  LateDevice dev;
  StagingRing ring(dev, 4096, 3);
  // Tensors smaller than a chunk (packed several to a chunk), equal to one, and spanning several.
  const size_t sizes[] = {1, 100, 4096, 5000, 17, 12288, 3, 256, 9000, 4095, 4097, 64};
  std::vector<std::vector<uint8_t>> src, dst;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    src.push_back(random_bytes(sizes[i], uint32_t(i)));
    dst.emplace_back(sizes[i], 0xEE);
    ASSERT_TRUE(ring.upload_bytes(dst.back().data(), src.back().data(), sizes[i]));
  }
  // Copies really were still in flight when later chunks were filled: the ring had to wait for some.
  EXPECT_GT(ring.waits(), 0);
  ring.drain();
  EXPECT_EQ(dev.pending_copies(), 0u);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(src[i], dst[i]) << "tensor " << i << " of " << sizes[i] << " bytes";
}

TEST(StagingRing, ConvertingFillKeepsWholeUnitsAndOffsets) {
  // As the CUDA backend converts float32 checkpoints to bf16: each piece is whole 2-byte values, and `offset`
  // says which. The fill writes value index (offset / 2 + i) so that a wrong offset shows.
  LateDevice dev;
  StagingRing ring(dev, 1000, 2);  // rounded down to 768 bytes; 6002 bytes take several pieces
  const size_t count = 3001;
  std::vector<uint16_t> dst(count, 0xFFFF);
  ASSERT_TRUE(ring.upload(
      dst.data(), count * 2,
      [](void* pinned, size_t offset, size_t n) {
        ASSERT_EQ(offset % 2, 0u);
        ASSERT_EQ(n % 2, 0u);
        auto* p = static_cast<uint16_t*>(pinned);
        for (size_t i = 0; i < n / 2; ++i) p[i] = uint16_t(offset / 2 + i);
      },
      2));
  ring.drain();
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(dst[i], uint16_t(i)) << "value " << i;
}

TEST(StagingRing, WithoutPinnedMemoryItSaysSoAndCopiesNothing) {
  LateDevice dev;
  dev.refuse_pinned = true;
  StagingRing ring(dev, 4096, 2);
  std::vector<uint8_t> src(10, 1), dst(10, 0);
  EXPECT_FALSE(ring.upload_bytes(dst.data(), src.data(), src.size()));
  EXPECT_EQ(dst, std::vector<uint8_t>(10, 0));
  EXPECT_EQ(dev.pending_copies(), 0u);
}

TEST(StagingRing, ReleaseDrainsAndFreesAndTheRingCanBeUsedAgain) {
  LateDevice dev;
  std::vector<uint8_t> src = random_bytes(10000, 7), dst(10000, 0);
  {
    StagingRing ring(dev, 4096, 2);
    ASSERT_TRUE(ring.upload_bytes(dst.data(), src.data(), 6000));
    ring.release();
    EXPECT_EQ(dev.pending_copies(), 0u);
    EXPECT_EQ(dev.allocations, 2);
    EXPECT_EQ(dev.frees, 2);
    ASSERT_TRUE(ring.upload_bytes(dst.data() + 6000, src.data() + 6000, 4000));
  }  // the destructor drains and frees too
  EXPECT_EQ(dev.pending_copies(), 0u);
  EXPECT_EQ(dev.allocations, 4);
  EXPECT_EQ(dev.frees, 4);
  EXPECT_EQ(src, dst);
}

TEST(StagingRing, ALostDeviceFailsTheNextWaitButNotTheDestructor) {
  LateDevice dev;
  std::vector<uint8_t> src(20000, 3), dst(20000);
  {
    StagingRing ring(dev, 4096, 2);
    ASSERT_TRUE(ring.upload_bytes(dst.data(), src.data(), 6000));
    dev.device_lost = true;
    EXPECT_THROW(ring.drain(), std::runtime_error);  // the error reaches whoever waits
  }  // and the destructor, waiting too, neither throws nor leaks the chunks
  EXPECT_EQ(dev.frees, dev.allocations);
  EXPECT_EQ(dev.allocations, 2);
}

TEST(StagingRing, RejectsSizesThatAreNotWholeUnits) {
  LateDevice dev;
  StagingRing ring(dev, 4096, 2);
  std::vector<uint8_t> dst(3);
  EXPECT_THROW(ring.upload(dst.data(), 3, [](void*, size_t, size_t) {}, 2), std::invalid_argument);
  EXPECT_THROW(StagingRing(dev, 4096, 1), std::invalid_argument);
}

}  // namespace
