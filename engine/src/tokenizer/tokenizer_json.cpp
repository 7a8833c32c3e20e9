#include "tokenizer/tokenizer_json.h"

namespace omni {
namespace {

using nlohmann::json;

class TokenizerSax : public nlohmann::json_sax<json> {
 public:
  TokenizerSax(TokenizerJson& out, int64_t max_ids, size_t max_entries)
      : out_(out), max_ids_(max_ids), max_entries_(max_entries) {}

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::kVocab && depth_ == 1) return vocab_id(v);
    return value(json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::kVocab && depth_ == 1)
      return vocab_id(v > uint64_t(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    return value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool string(string_t& v) override {
    if (mode_ == Mode::kMerges) {
      if (depth_ == 1) {
        const size_t space = v.find(' ');
        if (space == std::string::npos || v.find(' ', space + 1) != std::string::npos) {
          merge_error("\"" + v + "\" is not two tokens separated by one space");
        }
        if (out_.merges.size() >= max_entries_) return too_many("model.merges");
        out_.merges.emplace_back(v.substr(0, space == std::string::npos ? v.size() : space),
                                 space == std::string::npos ? std::string() : v.substr(space + 1));
        return true;
      }
      if (depth_ == 2) {
        if (pair_parts_.size() < 3) pair_parts_.push_back(std::move(v));  // a third part is an error anyway
        else pair_bad_ = true;
        return true;
      }
    }
    return value(json(std::move(v)));
  }
  bool binary(binary_t&) override { return value(json()); }

  bool start_object(std::size_t) override { return open(json::object()); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    if (mode_ != Mode::kDom) {
      if (mode_ == Mode::kVocab && depth_ == 1) vocab_key_ = k;
      return true;
    }
    key_ = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    out_.json_error = e.what();
    return false;
  }

 private:
  enum class Mode { kDom, kVocab, kMerges };

  // A scalar or an opened container in DOM mode; inside vocab/merges it is a misplaced value.
  bool value(json v) {
    if (mode_ == Mode::kVocab) {
      if (depth_ == 1) vocab_error();
      return true;
    }
    if (mode_ == Mode::kMerges) {
      if (depth_ == 1) merge_error("expected \"left right\" or [\"left\", \"right\"]");
      if (depth_ == 2) pair_bad_ = true;
      return true;
    }
    return insert(std::move(v)) != nullptr;
  }

  json* insert(json v) {
    // The tree of everything but vocab/merges is small in a real file (Qwen's: a few hundred values);
    // a file of millions of tiny values would cost ~16x its size in nodes.
    if (++dom_values_ > max_entries_) {
      too_many("the JSON outside model.vocab and model.merges");
      return nullptr;
    }
    if (stack_.empty()) {
      out_.rest = std::move(v);
      return &out_.rest;
    }
    json& parent = *stack_.back();
    if (parent.is_object()) return &(parent[key_] = std::move(v));
    parent.push_back(std::move(v));
    return &parent.back();
  }

  bool open(json container) {
    if (mode_ != Mode::kDom) {
      if (mode_ == Mode::kVocab && depth_ == 1) vocab_error();
      if (mode_ == Mode::kMerges && depth_ == 1) {
        if (container.is_array()) {
          pair_parts_.clear();
          pair_bad_ = false;
        } else {
          merge_error("expected \"left right\" or [\"left\", \"right\"]");
        }
      }
      if (mode_ == Mode::kMerges && depth_ == 2) pair_bad_ = true;
      ++depth_;
      return true;
    }
    // model.vocab / model.merges: the parent is the "model" object directly under the root.
    const bool in_model = stack_.size() == 2 && keys_.size() == 2 && keys_[1] == "model";
    if (in_model && key_ == "vocab" && container.is_object()) {
      mode_ = Mode::kVocab;
      out_.has_vocab = true;
      depth_ = 1;
      return true;
    }
    if (in_model && key_ == "merges" && container.is_array()) {
      mode_ = Mode::kMerges;
      out_.has_merges = true;
      depth_ = 1;
      return true;
    }
    keys_.push_back(stack_.empty() || !stack_.back()->is_object() ? std::string() : key_);
    json* inserted = insert(std::move(container));
    if (!inserted) return false;
    stack_.push_back(inserted);
    return true;
  }

  bool close() {
    if (mode_ != Mode::kDom) {
      if (mode_ == Mode::kMerges && depth_ == 2) {
        if (out_.merges.size() >= max_entries_) return too_many("model.merges");
        if (pair_bad_ || pair_parts_.size() != 2) {
          merge_error("expected \"left right\" or [\"left\", \"right\"]");
          out_.merges.emplace_back();
        } else {
          out_.merges.emplace_back(std::move(pair_parts_[0]), std::move(pair_parts_[1]));
        }
      }
      if (--depth_ == 0) mode_ = Mode::kDom;
      return true;
    }
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }

  bool vocab_id(int64_t id) {
    if (id < 0) {
      vocab_error();
      return true;
    }
    if (id >= max_ids_) {
      out_.bound_key = "model.vocab[\"" + shortened(vocab_key_) + "\"]";
      out_.bound_error = "id " + std::to_string(id);
      return false;
    }
    if (out_.vocab.size() >= max_entries_) return too_many("model.vocab");
    out_.vocab.emplace_back(vocab_key_, id);
    return true;
  }
  // A key can be any length: messages show its first 64 bytes, cut at a character boundary.
  static std::string shortened(const std::string& key) {
    if (key.size() <= 64) return key;
    size_t cut = 64;
    while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xC0) == 0x80) --cut;
    return key.substr(0, cut) + "...";
  }
  bool too_many(const char* key) {
    out_.bound_key = key;
    out_.bound_error = "more than " + std::to_string(max_entries_) + (mode_ == Mode::kDom ? " values" : " entries");
    return false;
  }
  void vocab_error() {
    if (out_.error.empty())
      out_.error = "model.vocab[\"" + vocab_key_ + "\"]: the id is not a non-negative integer";
  }
  void merge_error(const std::string& what) {
    if (out_.error.empty()) out_.error = "model.merges[" + std::to_string(out_.merges.size()) + "]: " + what;
  }

  TokenizerJson& out_;
  const int64_t max_ids_;
  const size_t max_entries_;
  size_t dom_values_ = 0;
  std::vector<json*> stack_;       // open DOM containers
  std::vector<std::string> keys_;  // the key each open container sits under
  std::string key_;
  Mode mode_ = Mode::kDom;
  int depth_ = 0;  // nesting inside vocab/merges (1 = the vocab object / merges array itself)
  std::string vocab_key_;
  std::vector<std::string> pair_parts_;
  bool pair_bad_ = false;
};

}  // namespace

TokenizerJson parse_tokenizer_json(const std::string& text, int64_t max_ids, size_t max_entries) {
  TokenizerJson out;
  TokenizerSax sax(out, max_ids, max_entries);
  json::sax_parse(text, &sax);
  return out;
}

}  // namespace omni
