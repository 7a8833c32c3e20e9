// Tokenizer: byte-level BPE as Qwen2/Qwen3 `tokenizer.json` describes it (NFC normalizer,
// the Split regex pre-tokenizer, ByteLevel, merges; added tokens matched before BPE).
// encode() gives exactly the ids of Hugging Face `tokenizers` for any string. Public (tools tokenize
// with it); the implementation's internals are in engine/src/tokenizer/.
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
  // Every id in the file must be below `vocab_size`, the width of the model's embedding (the checkpoint's
  // thinker vocab_size; `vocab_source` says where that number came from, for messages). Without them the
  // bound is limits::kMaxVocab. The file is refused before anything is sized by an id outside it.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  static std::unique_ptr<Tokenizer> load(const std::string& path, int64_t vocab_size, const std::string& vocab_source);
  // <model_dir>/tokenizer.json bounded by <model_dir>/config.json's thinker vocab_size when that file exists
  // (a config.json that cannot be read is an error), else as load(path) (omni-run --tokenize).
  static std::unique_ptr<Tokenizer> load_for_model(const std::string& model_dir);
  virtual ~Tokenizer() = default;

  // Text → ids. Added tokens (<|im_start|>, <|audio_pad|>, …) in the text are matched as such.
  // Throws omni::Error when `text` is not well-formed UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Text → ids with special added tokens written in the text tokenized as plain text, so user text
  // cannot inject <|im_end|> and the like (HF: encode_special_tokens=True; non-special added tokens
  // such as <think> still match).
  virtual std::vector<int32_t> encode_plain(std::string_view text) const = 0;
  // Ids → text (complete bytes; invalid UTF-8 replaced by U+FFFD as HF does). Special tokens are
  // kept as their text (HF decode(..., skip_special_tokens=False)); unknown ids are skipped as HF does.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const = 0;
  // The raw bytes one id stands for (added tokens: their content; "" for an unknown id).
  virtual std::string token_bytes(int32_t id) const = 0;
  // The id whose bytes are exactly `token` (an added token's content, or e.g. "\n" → 198); -1 if none.
  virtual int32_t token_id(std::string_view token) const = 0;
  virtual bool is_special(int32_t id) const = 0;  // added tokens marked "special"
  virtual bool is_added(int32_t id) const = 0;    // any added token (<|im_end|>, <tool_call>, <think>, ...)
  virtual size_t vocab_size() const = 0;          // highest id + 1
};

// Streaming decode: feed ids one at a time, get text that never ends in half a UTF-8 character.
// The concatenation of everything push() and flush() return equals decode() of all the ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = false)
      : tok_(tok), skip_special_(skip_special_tokens) {}
  std::string push(int32_t id);  // the newly completed text (may be empty)
  std::string flush();           // whatever is left (incomplete bytes become U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_ = false;
  std::string pending_;
};

}  // namespace omni
