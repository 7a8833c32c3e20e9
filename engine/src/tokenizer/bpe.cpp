#include "tokenizer/bpe.h"

#include <queue>

namespace omni {

void BpeMerger::reserve(size_t merges) {
  size_t capacity = 16;
  while (capacity < 2 * merges) capacity *= 2;
  if (capacity > slots_.size()) rehash(capacity);
}

void BpeMerger::rehash(size_t capacity) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(capacity, Slot{});
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    size_t i = hash(s.key) & (capacity - 1);
    while (slots_[i].key != kEmpty) i = (i + 1) & (capacity - 1);
    slots_[i] = s;
  }
}

bool BpeMerger::add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank) {
  if (2 * (count_ + 1) > slots_.size()) rehash(slots_.empty() ? 16 : 2 * slots_.size());
  const uint64_t k = key(left, right);
  const size_t mask = slots_.size() - 1;
  size_t i = hash(k) & mask;
  while (slots_[i].key != kEmpty && slots_[i].key != k) i = (i + 1) & mask;
  const bool fresh = slots_[i].key == kEmpty;
  slots_[i] = Slot{k, rank, merged};
  count_ += fresh ? 1 : 0;
  return fresh;
}

const BpeMerger::Slot* BpeMerger::find(int32_t left, int32_t right) const {
  if (slots_.empty()) return nullptr;
  const uint64_t k = key(left, right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash(k) & mask;; i = (i + 1) & mask) {
    if (slots_[i].key == k) return &slots_[i];
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

void BpeMerger::merge(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool removed;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged;
    // std::priority_queue pops the "largest": make that the lowest rank, then the lowest position.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = static_cast<int32_t>(bytes.size());
  if (n == 1) {
    out.push_back(byte_token_[static_cast<uint8_t>(bytes[0])]);
    return;
  }
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = Symbol{byte_token_[static_cast<uint8_t>(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1, false};
  }
  std::vector<Candidate> initial;
  initial.reserve(n);
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const Slot* r = find(symbols[i].id, symbols[i + 1].id)) initial.push_back({r->rank, i, r->merged});
  }
  std::priority_queue<Candidate> queue(std::less<Candidate>(), std::move(initial));

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.removed || cur.next < 0) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    // A stale entry: the pair at this position changed since it was queued (HF compares the result id).
    const Slot* now = find(cur.id, right.id);
    if (!now || now->merged != top.merged) continue;

    cur.id = top.merged;
    cur.next = right.next;
    symbols[next_pos].removed = true;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const Slot* r = find(symbols[cur.prev].id, cur.id)) queue.push({r->rank, cur.prev, r->merged});
    }
    if (cur.next >= 0) {
      if (const Slot* r = find(cur.id, symbols[cur.next].id)) queue.push({r->rank, top.pos, r->merged});
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace omni
