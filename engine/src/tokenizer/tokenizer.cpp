// Encoding and decoding with a loaded BpeTokenizer, following the order of Hugging Face
// `tokenizers`: added tokens in the raw text → NFC of each remaining piece → added tokens with
// normalized=true → Qwen2 regex pre-tokenizer → byte-level BPE per pre-token.
#include "omni/errors.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace omni {

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const { return encode_impl(text, false); }

std::vector<int32_t> BpeTokenizer::encode_plain(std::string_view text) const { return encode_impl(text, true); }

std::vector<int32_t> BpeTokenizer::encode_impl(std::string_view text, bool skip_special) const {
  utf8::validate(text, "tokenizer input");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const TextSegment& raw : raw_added.split(text, skip_special)) {
    if (raw.token_id >= 0) {
      ids.push_back(raw.token_id);
      continue;
    }
    const std::string_view piece = text.substr(raw.begin, raw.end - raw.begin);
    const std::string normalized = nfc ? utf8::nfc(piece) : std::string(piece);
    for (const TextSegment& seg : normalized_added.split(normalized, skip_special)) {
      if (seg.token_id >= 0) {
        ids.push_back(seg.token_id);
      } else {
        encode_normalized(std::string_view(normalized).substr(seg.begin, seg.end - seg.begin), ids);
      }
    }
  }
  return ids;
}

void BpeTokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
  for (std::string_view word : qwen2_pretokenize(text)) {
    if (ignore_merges) {
      auto it = vocab_by_bytes.find(std::string(word));
      if (it != vocab_by_bytes.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    bpe.merge(word, out);
  }
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const { return decode(ids, false); }

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    if (id >= 0 && static_cast<size_t>(id) < id_bytes.size()) bytes += id_bytes[id];
  }
  return utf8::lossy(bytes);
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_bytes.size()) return {};
  return id_bytes[id];
}

int32_t BpeTokenizer::token_id(std::string_view token) const {
  const std::string key(token);
  if (auto it = added_by_content.find(key); it != added_by_content.end()) return it->second;
  if (auto it = vocab_by_bytes.find(key); it != vocab_by_bytes.end()) return it->second;
  return -1;
}

bool BpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < id_special.size() && id_special[id] != 0;
}

bool BpeTokenizer::is_added(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_bytes.size()) return false;
  auto it = added_by_content.find(id_bytes[size_t(id)]);
  return it != added_by_content.end() && it->second == id;
}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id);
  const size_t complete = utf8::complete_prefix(pending_);
  std::string text = utf8::lossy(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return text;
}

std::string StreamDecoder::flush() {
  std::string text = utf8::lossy(pending_);
  pending_.clear();
  return text;
}

}  // namespace omni
