#include "bpe.h"

#include <queue>

namespace omni {

bool BpeMerger::add_merge(int32_t left, int32_t right, int32_t merged, int32_t rank) {
  return merges_.insert_or_assign(key(left, right), Rule{rank, merged}).second;
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
    if (const Rule* r = find(symbols[i].id, symbols[i + 1].id)) initial.push_back({r->rank, i, r->merged});
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
    const Rule* now = find(cur.id, right.id);
    if (!now || now->merged != top.merged) continue;

    cur.id = top.merged;
    cur.next = right.next;
    symbols[next_pos].removed = true;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const Rule* r = find(symbols[cur.prev].id, cur.id)) queue.push({r->rank, cur.prev, r->merged});
    }
    if (cur.next >= 0) {
      if (const Rule* r = find(cur.id, symbols[cur.next].id)) queue.push({r->rank, top.pos, r->merged});
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace omni
