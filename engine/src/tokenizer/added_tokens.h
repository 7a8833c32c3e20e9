// Added tokens (tokenizer.json "added_tokens": <|im_start|>, <|audio_pad|>, <think>, …) are found in the
// text before the BPE model sees it, as Hugging Face's AddedVocabulary does: leftmost-longest,
// non-overlapping matches, honouring single_word / lstrip / rstrip; tokens with normalized=true are
// matched in the normalized text, the others in the raw text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace omni {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A piece of the text: either a matched added token (token_id >= 0) or plain text (-1).
struct TextSegment {
  size_t begin = 0;
  size_t end = 0;
  int32_t token_id = -1;
};

class AddedTokenMatcher {
 public:
  // `pattern` is what is searched for: the content, normalized when the token is normalized.
  void add(const AddedToken& token, std::string pattern);
  bool empty() const { return count_ == 0; }

  // Splits well-formed UTF-8 `text`; empty pieces are dropped. With skip_special, special tokens
  // are not matched (HF encode_special_tokens=True).
  std::vector<TextSegment> split(std::string_view text, bool skip_special) const;

 private:
  struct Pattern {
    std::string text;
    AddedToken token;
  };
  // Patterns by first byte, longest first, so the first hit at a position is the longest.
  std::vector<Pattern> by_first_byte_[256];
  size_t count_ = 0;
};

}  // namespace omni
