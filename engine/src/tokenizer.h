// Tokenizer: byte-level BPE as Qwen2/Qwen3 `tokenizer.json` describes it (NFC normalizer,
// the Split regex pre-tokenizer, ByteLevel, merges; added tokens matched before BPE).
// encode() gives exactly the ids of Hugging Face `tokenizers` for any string.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace omni {

class Tokenizer {
 public:
  // Reads <path> (a tokenizer.json). Throws omni::Error naming the file and the problem.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  virtual ~Tokenizer() = default;

  // Text → ids. Added tokens (<|im_start|>, <|audio_pad|>, …) in the text are matched as such.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Ids → text (complete bytes; invalid UTF-8 replaced by U+FFFD as HF does).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // The raw bytes one id stands for (added tokens: their content).
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual int32_t token_id(std::string_view token) const = 0;  // -1 if unknown
  virtual size_t vocab_size() const = 0;
};

// Streaming decode: feed ids one at a time, get text that never ends in half a UTF-8 character.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);  // the newly completed text (may be empty)
  std::string flush();           // whatever is left (incomplete bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace omni
