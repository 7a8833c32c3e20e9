// Fast reading of tokenizer.json: a SAX pass that collects model.vocab and model.merges (about 300k
// entries in Qwen's file) straight into flat vectors and builds an ordinary JSON tree for the rest.
// A full DOM of the file takes most of a second to build; this takes a fraction of that.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace omni {

struct TokenizerJson {
  nlohmann::json rest;  // the whole file except model.vocab and model.merges
  bool has_vocab = false;
  bool has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;    // in file order
  std::vector<std::pair<std::string, std::string>> merges;  // "a b" strings are split at the space
  std::string error;       // the first problem inside vocab/merges ("model.merges[3]: ..."), or empty
  std::string json_error;  // set when `text` is not valid JSON (then nothing else is meaningful)
  // Set when reading stopped early at a bound (an id >= max_ids, more entries than max_entries): the key
  // and the value. Then `rest` is incomplete and only this is meaningful.
  std::string bound_key;
  std::string bound_error;
};

// Ids in model.vocab must be below `max_ids`, and model.vocab / model.merges may hold at most
// `max_entries` entries each; the first violation stops the parse at once (nothing more is allocated).
TokenizerJson parse_tokenizer_json(const std::string& text, int64_t max_ids, size_t max_entries);

}  // namespace omni
