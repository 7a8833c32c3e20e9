// The byte-level BPE tokenizer behind omni::Tokenizer (tokenizer.cpp runs it, tokenizer_load.cpp
// fills it from tokenizer.json). Internal to the engine.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "omni/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"

namespace omni {

class BpeTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override;
  std::vector<int32_t> encode_plain(std::string_view text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t token_id(std::string_view token) const override;
  bool is_special(int32_t id) const override;
  bool is_added(int32_t id) const override;
  size_t vocab_size() const override { return id_bytes.size(); }

  // Filled by the loader.
  std::string origin;                  // the file it came from, for messages
  bool nfc = false;                    // normalizer NFC
  bool ignore_merges = false;          // a pre-token that is a vocab entry maps to it directly
  BpeMerger bpe;
  AddedTokenMatcher raw_added;         // added tokens with normalized=false
  AddedTokenMatcher normalized_added;  // added tokens with normalized=true (matched after NFC)
  std::vector<std::string> id_bytes;  // bytes each id decodes to ("" for ids no entry uses)
  std::vector<uint8_t> id_special;
  std::unordered_map<std::string, int32_t> vocab_by_bytes;  // model vocab, by decoded bytes
  std::unordered_map<std::string, int32_t> added_by_content;

 private:
  std::vector<int32_t> encode_impl(std::string_view text, bool skip_special) const;
  void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
};

}  // namespace omni
