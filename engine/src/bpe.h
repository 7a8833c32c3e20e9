// Byte-pair merging over the bytes of one pre-token, as Hugging Face `tokenizers` BPE does it
// (Word::merge_all): a min-heap of candidate merges ordered by (rank, position), stale entries
// skipped, new pairs with both neighbours pushed after each merge.
#pragma once
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace omni {

class BpeMerger {
 public:
  // The vocabulary id of the single-byte token for byte `b` (the starting symbols).
  void set_byte_token(uint8_t b, int32_t id) { byte_token_[b] = id; }
  int32_t byte_token(uint8_t b) const { return byte_token_[b]; }
  // Merge rule number `rank` (lower merges first): left + right → merged.
  // A pair listed twice keeps its later rule (HF builds a hash map from the list); returns false then.
  bool add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank);
  size_t merge_count() const { return merges_.size(); }
  void reserve(size_t merges) { merges_.reserve(merges); }

  // Appends the ids of `bytes` (one pre-token) to `out`.
  void merge(std::string_view bytes, std::vector<int32_t>& out) const;

 private:
  struct Rule {
    int32_t rank;
    int32_t merged;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  const Rule* find(int32_t left, int32_t right) const {
    auto it = merges_.find(key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  int32_t byte_token_[256] = {};
  std::unordered_map<uint64_t, Rule> merges_;
};

}  // namespace omni
