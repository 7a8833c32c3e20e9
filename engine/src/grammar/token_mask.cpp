#include "grammar/token_mask.h"

#include <algorithm>

namespace omni {

TokenTable::Trie TokenTable::make_trie(std::vector<std::pair<std::string, int32_t>> items) {
  std::sort(items.begin(), items.end());
  Trie t;
  // Builds the node for items[lo, hi), which share their first `depth` bytes; children's edges
  // are contiguous.
  auto build = [&](auto&& self, size_t lo, size_t hi, size_t depth) -> uint32_t {
    const uint32_t id = uint32_t(t.nodes.size());
    t.nodes.push_back({});
    t.nodes[id].lo = uint32_t(lo);
    t.nodes[id].hi = uint32_t(hi);
    t.max_depth = std::max(t.max_depth, depth);
    while (lo < hi && items[lo].first.size() == depth) {
      if (t.nodes[id].token < 0) t.nodes[id].token = items[lo].second;
      ++lo;
    }
    std::vector<std::pair<size_t, size_t>> groups;
    for (size_t i = lo; i < hi;) {
      size_t j = i + 1;
      while (j < hi && items[j].first[depth] == items[i].first[depth]) ++j;
      groups.push_back({i, j});
      i = j;
    }
    const uint32_t first = uint32_t(t.edges.size());
    t.nodes[id].first_edge = first;
    t.nodes[id].edges = uint32_t(groups.size());
    t.edges.resize(t.edges.size() + groups.size());
    for (size_t k = 0; k < groups.size(); ++k) {
      const uint8_t b = uint8_t(items[groups[k].first].first[depth]);
      const uint32_t child = self(self, groups[k].first, groups[k].second, depth + 1);
      t.edges[first + k] = {b, child};
    }
    return id;
  };
  build(build, 0, items.size(), 0);
  for (const auto& it : items) t.ids.push_back(it.second);
  // Tokens with the same bytes as an earlier one are never set by the walk; keep the subtree ranges
  // equal to what the walk would set.
  for (size_t i = 1; i < items.size(); ++i)
    if (items[i].first == items[i - 1].first) t.ids[i] = t.ids[i - 1];
  // Children have higher indices than their parent: from the last node back, each child's value is ready.
  for (size_t n = t.nodes.size(); n-- > 0;) t.nodes[n].plain_rest = plain_rest(t, uint32_t(n), 0, true);
  return t;
}

// The most characters of the subtree's rests after `node` when they are plain string text with
// `pending` UTF-8 continuation bytes still due first; -1 when some rest is not. Lead bytes whose
// first continuation has a narrower range (E0, ED, F0, F4) count as not plain: those subtrees are
// walked byte by byte, which is exact.
int TokenTable::plain_rest(const Trie& t, uint32_t node, int pending, bool top) {
  const Node& n = t.nodes[node];
  if (pending == 0 && !top) return n.plain_rest;  // computed already (a later node)
  if (n.token >= 0 && pending > 0) return -1;
  int best = 0;
  for (uint32_t e = n.first_edge; e < n.first_edge + n.edges; ++e) {
    const uint8_t b = t.edges[e].byte;
    int r;
    if (pending > 0) {
      if (b < 0x80 || b > 0xBF) return -1;
      r = plain_rest(t, t.edges[e].child, pending - 1, false);
      if (r < 0) return -1;
    } else {
      int need;
      if (b == '"' || b == '\\' || b < 0x20) return -1;
      if (b < 0x80) need = 0;
      else if (b >= 0xC2 && b <= 0xDF) need = 1;
      else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
      else if (b >= 0xF1 && b <= 0xF3) need = 3;
      else return -1;
      r = plain_rest(t, t.edges[e].child, need, false);
      if (r < 0) return -1;
      ++r;
    }
    best = std::max(best, r);
  }
  return best;
}

std::shared_ptr<const TokenTable> TokenTable::build(const Tokenizer& tok, size_t vocab) {
  auto t = std::make_shared<TokenTable>();
  t->vocab_ = vocab;
  const size_t n = std::min(vocab, tok.vocab_size());
  t->bytes_.resize(vocab);
  // Plain string text: complete UTF-8 characters, none of them '"', '\' or a control character.
  // The string grammar itself decides, so both agree byte for byte.
  ojson str_schema = {{"type", "string"}, {"maxLength", 1 << 16}};
  const JsonGrammar str = JsonGrammar::value(Schema::compile(str_schema, "plain"));
  GrammarState open = str.start();
  str.feed(open, uint8_t('"'));
  std::vector<std::pair<std::string, int32_t>> all, other;
  std::vector<std::pair<int, int32_t>> plain;  // (characters, id)
  int max_chars = 0;
  for (size_t id = 0; id < n; ++id) {
    if (tok.is_added(int32_t(id))) continue;
    std::string b = tok.token_bytes(int32_t(id));
    if (b.empty()) continue;
    t->bytes_[id] = b;
    all.push_back({b, int32_t(id)});
    bool is_plain = b.find('"') == std::string::npos && b.find('\\') == std::string::npos;
    int chars = 0;
    if (is_plain) {
      GrammarState s;
      s.copy_from(open);
      is_plain = str.feed(s, b) && str.string_room(s) >= 0;
      if (is_plain) chars = (1 << 16) - str.string_room(s);
    }
    if (is_plain) {
      plain.push_back({chars, int32_t(id)});
      max_chars = std::max(max_chars, chars);
    } else {
      other.push_back({b, int32_t(id)});
    }
  }
  t->all_ = make_trie(std::move(all));
  t->other_ = make_trie(std::move(other));
  t->plain_upto_.assign(size_t(max_chars) + 1, TokenBits(t->words(), 0));
  for (const auto& [chars, id] : plain) set_bit(t->plain_upto_[size_t(chars)], id);
  for (size_t c = 1; c < t->plain_upto_.size(); ++c)
    for (size_t w = 0; w < t->words(); ++w) t->plain_upto_[c][w] |= t->plain_upto_[c - 1][w];
  return t;
}

void TokenTable::walk(const Trie& t, uint32_t node, size_t depth, const JsonGrammar& g, TokenBits& bits,
                      Scratch& scratch) const {
  const Node& nd = t.nodes[node];
  const GrammarState& from = scratch.states[depth];
  GrammarState& st = scratch.states[depth + 1];
  for (uint32_t e = nd.first_edge; e < nd.first_edge + nd.edges; ++e) {
    const Edge& edge = t.edges[e];
    st.copy_from(from);
    if (!g.feed(st, edge.byte)) continue;
    const Node& child = t.nodes[edge.child];
    if (child.plain_rest >= 0 && child.edges) {
      const int room = g.string_room(st);
      if (room >= 0 && child.plain_rest <= room) {  // the whole subtree stays inside the string
        for (uint32_t i = child.lo; i < child.hi; ++i) set_bit(bits, t.ids[i]);
        continue;
      }
    }
    if (child.token >= 0) set_bit(bits, child.token);
    if (child.edges) walk(t, edge.child, depth + 1, g, bits, scratch);
  }
}

void TokenTable::grammar_mask(const JsonGrammar& g, const GrammarState& s, TokenBits& bits, Scratch& scratch) const {
  if (bits.size() < words()) bits.resize(words(), 0);
  if (scratch.states.size() < all_.max_depth + 2) scratch.states.resize(all_.max_depth + 2);
  scratch.states[0].copy_from(s);
  const int room = g.string_room(s);
  if (room >= 0 && !plain_upto_.empty()) {
    const TokenBits& plain = plain_upto_[std::min(size_t(room), plain_upto_.size() - 1)];
    for (size_t w = 0; w < plain.size(); ++w) bits[w] |= plain[w];
    walk(other_, 0, 0, g, bits, scratch);
  } else {
    walk(all_, 0, 0, g, bits, scratch);
  }
}

}  // namespace omni
