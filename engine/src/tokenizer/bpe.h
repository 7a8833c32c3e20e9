// Byte-pair merging over the bytes of one pre-token, as Hugging Face `tokenizers` BPE does it
// (Word::merge_all): a min-heap of candidate merges ordered by (rank, position), stale entries
// skipped, new pairs with both neighbours pushed after each merge.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace omni {

class BpeMerger {
 public:
  // The vocabulary id of the single-byte token for byte `b` (the starting symbols).
  void set_byte_token(uint8_t b, int32_t id) { byte_token_[b] = id; }
  int32_t byte_token(uint8_t b) const { return byte_token_[b]; }
  // Merge rule number `rank` (lower merges first): left + right → merged. A pair listed twice keeps
  // its later rule (HF builds a hash map from the list); returns false then.
  bool add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank);
  size_t merge_count() const { return count_; }
  void reserve(size_t merges);

  // Appends the ids of `bytes` (one pre-token) to `out`.
  void merge(std::string_view bytes, std::vector<int32_t>& out) const;

 private:
  // Merge rules in a flat open-addressing table keyed by the (left, right) id pair: ~150k rules are
  // looked up on every merge step, and a flat table is much faster to fill and probe than a node map.
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t merged = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  const Slot* find(int32_t left, int32_t right) const;
  void rehash(size_t capacity);

  int32_t byte_token_[256] = {};
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace omni
