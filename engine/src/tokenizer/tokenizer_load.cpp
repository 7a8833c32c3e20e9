// Reads a Hugging Face tokenizer.json (Qwen2/Qwen3 byte-level BPE) into a BpeTokenizer. Every
// component is checked against what this implementation reproduces exactly; anything else is
// refused with a message naming the file and the key, rather than tokenizing differently from HF.

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "omni/errors.h"
#include "omni/limits.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/utf8.h"

namespace omni {
namespace {

using nlohmann::json;

// GPT-2 byte-level alphabet: printable bytes map to themselves, the others to U+0100 onwards.
struct ByteAlphabet {
  char32_t byte_to_char[256];
  int char_to_byte[0x144];  // -1 where a code point is not in the alphabet
  ByteAlphabet() {
    for (int& b : char_to_byte) b = -1;
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_char[b] = printable ? char32_t(b) : char32_t(256 + next++);
      char_to_byte[byte_to_char[b]] = b;
    }
  }
  // What HF's ByteLevel decoder makes of one token string: the bytes its characters stand for when
  // all of them are in the alphabet, else the string's own UTF-8 bytes. `ok` tells which case.
  std::string to_bytes(std::string_view token, bool* ok = nullptr) const {
    std::string out;
    out.reserve(token.size());
    size_t pos = 0;
    while (pos < token.size()) {
      int len = 0;
      const char32_t c = utf8::decode_one(token, pos, &len);
      if (c >= 0x144 || char_to_byte[c] < 0) {
        if (ok) *ok = false;
        return std::string(token);
      }
      out += static_cast<char>(char_to_byte[c]);
      pos += len;
    }
    if (ok) *ok = true;
    return out;
  }
};

// Vocab string → id over the parsed entries, open addressing. Resolving ~150k merges takes ~450k
// lookups; a flat table of (hash, entry) is several times faster here than std::unordered_map.
class VocabIndex {
 public:
  void build(const std::vector<std::pair<std::string, int64_t>>& entries) {
    entries_ = &entries;
    size_t capacity = 16;
    while (capacity < 2 * entries.size()) capacity *= 2;
    slots_.assign(capacity, Slot{});
    for (size_t e = 0; e < entries.size(); ++e) {
      const uint64_t h = hash(entries[e].first);
      size_t i = h & (capacity - 1);
      while (slots_[i].entry != 0) {
        // A repeated key: the later entry wins, as when HF reads the JSON object into a map.
        if (slots_[i].hash == h && entries[slots_[i].entry - 1].first == entries[e].first) break;
        i = (i + 1) & (capacity - 1);
      }
      slots_[i] = Slot{h, static_cast<uint32_t>(e + 1)};
    }
  }
  int32_t find(std::string_view token) const {
    const uint64_t h = hash(token);
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask; slots_[i].entry != 0; i = (i + 1) & mask) {
      const auto& entry = (*entries_)[slots_[i].entry - 1];
      if (slots_[i].hash == h && entry.first == token) return static_cast<int32_t>(entry.second);
    }
    return -1;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t entry = 0;  // index + 1 into entries_; 0 = empty
  };
  static uint64_t hash(std::string_view s) {  // FNV-1a
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
  }
  const std::vector<std::pair<std::string, int64_t>>* entries_ = nullptr;
  std::vector<Slot> slots_;
};

class Loader {
 public:
  Loader(std::string path, int64_t vocab_size, std::string vocab_source)
      : path_(std::move(path)), vocab_size_(vocab_size), vocab_source_(std::move(vocab_source)) {
    if (vocab_size_ <= 0 || vocab_size_ > limits::kMaxVocab)
      throw Error("tokenizer '" + path_ + "': the vocabulary size " + std::to_string(vocab_size_) + " (" +
                  vocab_source_ + ") is outside 1.." + std::to_string(limits::kMaxVocab));
  }

  std::unique_ptr<BpeTokenizer> load() {
    parse_file();
    const json& root = file_.rest;
    if (!root.is_object()) fail("", "the file is not a JSON object");
    auto tok = std::make_unique<BpeTokenizer>();
    tok->origin = path_;
    tok->nfc = check_normalizer(root);
    check_pre_tokenizer(root);
    check_component(root, "decoder", /*required=*/true);
    check_component(root, "post_processor", /*required=*/false);
    const json& model = object_at(root, "model");  // (without vocab and merges, see tokenizer_json.h)
    read_model(model, *tok);
    read_added_tokens(root, *tok);
    return tok;
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error("tokenizer '" + path_ + "': " + (key.empty() ? "" : key + ": ") + what);
  }

  // "id 7 is outside the vocabulary of N ids (<source>)": an id that the model cannot embed.
  [[noreturn]] void fail_id(const std::string& key, int64_t id) const {
    fail(key, "id " + std::to_string(id) + " is outside the model's vocabulary of " + std::to_string(vocab_size_) +
                  " ids (" + vocab_source_ + ")");
  }

  void parse_file() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw Error("tokenizer '" + path_ + "': cannot open the file (missing or unreadable)");
    std::string text;
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size > limits::kMaxTokenizerJsonBytes)
      fail("", "the file is " + std::to_string(size) + " bytes, more than the " +
                   std::to_string(limits::kMaxTokenizerJsonBytes) + " a tokenizer.json may have");
    if (size > 0) {
      text.resize(static_cast<size_t>(size));
      in.seekg(0);
      in.read(text.data(), size);
    }
    if (!in) throw Error("tokenizer '" + path_ + "': read error");
    // Entries: an id per entry at most, and no more merges than tokens they could make.
    file_ = parse_tokenizer_json(text, vocab_size_, static_cast<size_t>(limits::kMaxVocab));
    if (!file_.bound_key.empty()) {
      if (file_.bound_error.rfind("id ", 0) == 0) fail_id(file_.bound_key, std::stoll(file_.bound_error.substr(3)));
      fail(file_.bound_key, file_.bound_error);
    }
    if (!file_.json_error.empty()) fail("", "not valid JSON (" + file_.json_error + ")");
  }

  const json& object_at(const json& parent, const char* key, const std::string& prefix = "") const {
    if (!parent.contains(key) || !parent.at(key).is_object()) fail(prefix + key, "missing or not an object");
    return parent.at(key);
  }

  // obj[key] as true/false: `fallback` when obj is no object or the key is absent or null; any other value fails
  // naming `name` (json's value() would throw its own type_error, which names neither the file nor the key).
  bool flag(const json& obj, const char* key, bool fallback, const std::string& name) const {
    if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return fallback;
    if (!obj.at(key).is_boolean()) fail(name, "must be true or false");
    return obj.at(key).get<bool>();
  }
  // obj[key] when it is a string, else "".
  static std::string text_of(const json& obj, const char* key) {
    if (!obj.is_object() || !obj.contains(key) || !obj.at(key).is_string()) return "";
    return obj.at(key).get<std::string>();
  }

  static std::string type_of(const json& component) {
    if (!component.is_object() || !component.contains("type") || !component.at("type").is_string()) return "";
    return component.at("type").get<std::string>();
  }

  bool check_normalizer(const json& root) const {
    if (!root.contains("normalizer") || root.at("normalizer").is_null()) return false;
    const json& n = root.at("normalizer");
    const std::string type = type_of(n);
    if (type == "NFC") return true;
    if (type == "Sequence" && n.contains("normalizers") && n.at("normalizers").is_array()) {
      const json& list = n.at("normalizers");
      if (list.empty()) return false;
      if (list.size() == 1 && type_of(list[0]) == "NFC") return true;
    }
    fail("normalizer", "unsupported (" + n.dump().substr(0, 120) + "); only NFC or none is implemented");
  }

  void check_pre_tokenizer(const json& root) const {
    const char* key = "pre_tokenizer";
    if (!root.contains(key) || root.at(key).is_null()) fail(key, "missing");
    const json& p = root.at(key);
    const json* split = nullptr;
    const json* byte_level = nullptr;
    if (type_of(p) == "Sequence" && p.contains("pretokenizers") && p.at("pretokenizers").is_array() &&
        p.at("pretokenizers").size() == 2) {
      split = &p.at("pretokenizers")[0];
      byte_level = &p.at("pretokenizers")[1];
    }
    const bool split_ok = split && type_of(*split) == "Split" && text_of(*split, "behavior") == "Isolated" &&
                          !flag(*split, "invert", false, "pre_tokenizer.pretokenizers[0].invert") &&
                          split->contains("pattern") && text_of(split->at("pattern"), "Regex") == kQwen2SplitPattern;
    const bool byte_ok =
        byte_level && type_of(*byte_level) == "ByteLevel" &&
        !flag(*byte_level, "add_prefix_space", false, "pre_tokenizer.pretokenizers[1].add_prefix_space") &&
        !flag(*byte_level, "use_regex", true, "pre_tokenizer.pretokenizers[1].use_regex");
    if (!split_ok || !byte_ok) {
      fail(key, "unsupported; only Sequence[Split(Qwen2 regex, Isolated), ByteLevel(add_prefix_space=false, "
                "use_regex=false)] is implemented");
    }
  }

  void check_component(const json& root, const char* key, bool required) const {
    if (!root.contains(key) || root.at(key).is_null()) {
      if (required) fail(key, "missing");
      return;
    }
    if (type_of(root.at(key)) != "ByteLevel") fail(key, "unsupported type '" + type_of(root.at(key)) + "'; only ByteLevel is implemented");
  }

  void read_model(const json& model, BpeTokenizer& tok) {
    if (model.contains("type") && model.at("type") != "BPE")
      fail("model.type", "'" + type_of(model) + "' is not supported; only BPE is implemented");
    if (flag(model, "byte_fallback", false, "model.byte_fallback")) fail("model.byte_fallback", "true is not supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(k) && model.at(k).is_string() && !model.at(k).get<std::string>().empty())
        fail(std::string("model.") + k, "a non-empty value is not supported");
    }
    if (model.contains("dropout") && model.at("dropout").is_number() && model.at("dropout").get<double>() > 0)
      fail("model.dropout", "BPE dropout is not supported");
    if (model.contains("ignore_merges") && model.at("ignore_merges").is_boolean())
      tok.ignore_merges = model.at("ignore_merges").get<bool>();

    if (!file_.has_vocab) fail("model.vocab", "missing or not an object");
    if (!file_.has_merges) fail("model.merges", "missing or not an array");
    if (!file_.error.empty()) fail("", file_.error);
    const auto& vocab = file_.vocab;
    if (vocab.empty()) fail("model.vocab", "is empty");
    VocabIndex& by_string = vocab_index_;
    by_string.build(vocab);
    vocab_count_ = static_cast<int64_t>(vocab.size());
    tok.vocab_by_bytes.reserve(vocab.size());
    // The reader stopped at the first id >= vocab_size_, so every id here is in [0, vocab_size_) and
    // vocab_size_ <= limits::kMaxVocab: the tables below are at most that long and an id fits int32_t.
    int64_t max_id = 0;
    for (const auto& entry : vocab) {
      if (entry.second < 0 || entry.second >= vocab_size_) fail_id("model.vocab[\"" + entry.first + "\"]", entry.second);
      max_id = std::max(max_id, entry.second);
    }
    tok.id_bytes.resize(static_cast<size_t>(max_id) + 1);
    tok.id_special.resize(static_cast<size_t>(max_id) + 1, 0);
    for (const auto& [token, id64] : vocab) {
      const auto id = static_cast<int32_t>(id64);
      bool in_alphabet = false;
      std::string bytes = alphabet_.to_bytes(token, &in_alphabet);
      tok.id_bytes[id] = bytes;
      // Prefer the entry in the byte alphabet should two entries decode to the same bytes.
      if (in_alphabet) tok.vocab_by_bytes.insert_or_assign(std::move(bytes), id);
      else tok.vocab_by_bytes.emplace(std::move(bytes), id);
    }
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      utf8::append(ch, alphabet_.byte_to_char[b]);
      const int32_t id = by_string.find(ch);
      if (id < 0) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        fail("model.vocab", std::string("has no byte-level token for byte ") + hex + " ('" + ch + "')");
      }
      tok.bpe.set_byte_token(static_cast<uint8_t>(b), id);
    }
    read_merges(by_string, tok);
  }

  void read_merges(const VocabIndex& by_string, BpeTokenizer& tok) {
    const auto& merges = file_.merges;
    tok.bpe.reserve(merges.size());
    std::string joined;
    for (size_t i = 0; i < merges.size(); ++i) {
      const auto& [left, right] = merges[i];
      auto id_of = [&](const std::string& token) {
        const int32_t id = by_string.find(token);
        if (id < 0) fail("model.merges[" + std::to_string(i) + "]", "token \"" + token + "\" is not in model.vocab");
        return id;
      };
      joined.assign(left).append(right);
      tok.bpe.add_merge(id_of(left), id_of(right), id_of(joined), static_cast<int32_t>(i));
    }
  }

  // HF does not take the ids written in "added_tokens" at face value: a token whose content is a model
  // vocab entry (or an earlier added token) gets that id, any other the next id after the vocab and the
  // added tokens so far. The same rule is followed here so that odd files still tokenize like HF.
  void read_added_tokens(const json& root, BpeTokenizer& tok) {
    if (!root.contains("added_tokens") || root.at("added_tokens").is_null()) return;
    const json& list = root.at("added_tokens");
    if (!list.is_array()) fail("added_tokens", "not an array");
    if (static_cast<int64_t>(list.size()) > vocab_size_)
      fail("added_tokens", std::to_string(list.size()) + " entries, more than the model's vocabulary of " +
                               std::to_string(vocab_size_) + " ids (" + vocab_source_ + ")");
    std::vector<AddedToken> tokens;  // in first-seen order; a repeated content updates its entry
    int64_t max_added = -1;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& e = list[i];
      const std::string key = "added_tokens[" + std::to_string(i) + "]";
      if (!e.is_object() || !e.contains("content") || !e.at("content").is_string())
        fail(key, "needs a string \"content\"");
      AddedToken t;
      t.content = e.at("content").get<std::string>();
      t.special = flag(e, "special", false, key + ".special");
      t.single_word = flag(e, "single_word", false, key + ".single_word");
      t.lstrip = flag(e, "lstrip", false, key + ".lstrip");
      t.rstrip = flag(e, "rstrip", false, key + ".rstrip");
      t.normalized = flag(e, "normalized", !t.special, key + ".normalized");
      if (t.content.empty()) continue;  // HF ignores empty added tokens
      auto seen = std::find_if(tokens.begin(), tokens.end(), [&](const AddedToken& o) { return o.content == t.content; });
      if (seen != tokens.end()) {
        t.id = seen->id;
        *seen = t;
        continue;
      }
      if (const int32_t v = vocab_index_.find(t.content); v >= 0) {
        t.id = v;
      } else {
        const int64_t id = max_added < 0 || max_added < vocab_count_ ? vocab_count_ : max_added + 1;
        if (id >= vocab_size_) fail_id(key + " (\"" + t.content + "\", numbered after model.vocab)", id);
        t.id = static_cast<int32_t>(id);
      }
      max_added = std::max<int64_t>(max_added, t.id);
      tokens.push_back(t);
    }
    for (const AddedToken& t : tokens) {
      set_id_bytes(tok, t.id, alphabet_.to_bytes(t.content), t.special);
      tok.added_by_content.insert_or_assign(t.content, t.id);
      if (!t.normalized) {
        tok.raw_added.add(t, t.content);
      } else {
        tok.normalized_added.add(t, tok.nfc ? utf8::nfc(t.content) : t.content);
      }
    }
  }

  static void set_id_bytes(BpeTokenizer& tok, int32_t id, std::string bytes, bool special) {
    if (static_cast<size_t>(id) >= tok.id_bytes.size()) {
      tok.id_bytes.resize(static_cast<size_t>(id) + 1);
      tok.id_special.resize(static_cast<size_t>(id) + 1, 0);
    }
    tok.id_bytes[id] = std::move(bytes);
    tok.id_special[id] = special ? 1 : 0;
  }

  std::string path_;
  int64_t vocab_size_;        // every id is below this
  std::string vocab_source_;  // where vocab_size_ comes from
  TokenizerJson file_;
  ByteAlphabet alphabet_;
  VocabIndex vocab_index_;  // model vocab strings as written in the file
  int64_t vocab_count_ = 0;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  return Loader(path, limits::kMaxVocab, "the bound for a tokenizer loaded without its model's config.json").load();
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path, int64_t vocab_size, const std::string& vocab_source) {
  return Loader(path, vocab_size, vocab_source).load();
}

}  // namespace omni
