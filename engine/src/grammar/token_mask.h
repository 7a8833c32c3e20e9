// Token masks for constrained decoding: which ids of the vocabulary keep the text valid under a
// JsonGrammar. Byte-level BPE tokens can span several grammar steps, so each token's bytes are
// fed through the grammar; a trie of the vocabulary's byte strings shares that work between tokens
// with a common prefix and cuts whole subtrees at the first refused byte. Inside a string's
// characters most of the vocabulary is allowed; there the mask starts from a precomputed set
// (tokens made only of plain string characters, by length) and only the other tokens are walked, and
// wherever a walk is inside a string, a subtree whose rests are all plain string characters is taken
// whole.
// docs/model.md "Tool calls".
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grammar/json_grammar.h"
#include "omni/tokenizer.h"

namespace omni {

// A bit per token id: bit (id & 63) of word id / 64.
using TokenBits = std::vector<uint64_t>;
inline void set_bit(TokenBits& b, int32_t id) { b[size_t(id) >> 6] |= 1ull << (id & 63); }
inline bool test_bit(const TokenBits& b, int32_t id) {
  return id >= 0 && size_t(id >> 6) < b.size() && (b[size_t(id) >> 6] >> (id & 63)) & 1;
}

class TokenTable {
 public:
  // `vocab`: the logits' width (ids at or above the tokenizer's vocabulary are never grammar text).
  // Added tokens (<|im_end|>, <tool_call>, ...) are not grammar text either: they are single
  // symbols the constraint allows by id. Built once per model (about 0.2 s for 152k tokens).
  static std::shared_ptr<const TokenTable> build(const Tokenizer& tok, size_t vocab);

  size_t vocab() const { return vocab_; }
  size_t words() const { return (vocab_ + 63) / 64; }
  const std::string& bytes(int32_t id) const { return bytes_[size_t(id)]; }
  bool is_text(int32_t id) const { return id >= 0 && size_t(id) < bytes_.size() && !bytes_[size_t(id)].empty(); }

  // ORs into `bits` every token whose bytes the grammar accepts from state `s`.
  // `scratch` is reused between calls (one per thread).
  struct Scratch {
    std::vector<GrammarState> states;
  };
  void grammar_mask(const JsonGrammar& g, const GrammarState& s, TokenBits& bits, Scratch& scratch) const;

 private:
  struct Node {
    int32_t token = -1;
    uint32_t first_edge = 0;
    uint32_t edges = 0;
    uint32_t lo = 0, hi = 0;  // the subtree's tokens: Trie::ids[lo, hi)
    // Inside a string with nothing pending, every token of the subtree is allowed when its bytes after
    // this node are plain string characters: the most characters such a rest has, or -1 when some rest
    // is not plain (then the subtree is walked byte by byte).
    int32_t plain_rest = -1;
  };
  struct Edge {
    uint8_t byte;
    uint32_t child;
  };
  struct Trie {
    std::vector<Node> nodes;
    std::vector<Edge> edges;
    std::vector<int32_t> ids;  // token ids in trie order
    size_t max_depth = 0;
  };
  static int plain_rest(const Trie& t, uint32_t node, int pending, bool top);
  static Trie make_trie(std::vector<std::pair<std::string, int32_t>> items);
  void walk(const Trie& t, uint32_t node, size_t depth, const JsonGrammar& g, TokenBits& bits,
            Scratch& scratch) const;

  size_t vocab_ = 0;
  std::vector<std::string> bytes_;
  Trie all_, other_;                  // every text token; the tokens that are not plain string text
  std::vector<TokenBits> plain_upto_;  // [n]: plain string-text tokens of at most n characters
};

}  // namespace omni
