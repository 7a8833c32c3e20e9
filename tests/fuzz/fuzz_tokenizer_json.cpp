// libFuzzer target: loading tokenizer.json (Tokenizer::load, engine/src/tokenizer/tokenizer_load.cpp and the SAX
// reader of tokenizer_json.cpp) from hostile small files. The loader reads a path, so each input is
// written to one scratch file. Properties: omni::Error naming the file, or a tokenizer that encodes and
// decodes a short text without a crash, whose ids are all below the bound it was loaded with: a model
// vocabulary of 4096 for inputs of even length, the bound of a tokenizer loaded alone (limits::kMaxVocab)
// for odd ones. libFuzzer's -malloc_limit_mb makes an allocation sized by an id a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "omni/errors.h"
#include "omni/limits.h"
#include "omni/tokenizer.h"

namespace {

const std::string& scratch_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/omni_fuzz_tokenizer_" + std::to_string(::getpid()) + ".json";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = scratch_path();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  try {
    const bool alone = size % 2 == 1;
    const int64_t bound = alone ? omni::limits::kMaxVocab : 4096;
    auto tok = alone ? omni::Tokenizer::load(path) : omni::Tokenizer::load(path, bound, "the fuzz target's vocabulary");
    if (tok->vocab_size() > size_t(bound)) std::abort();
    std::string text = "Hello, world! <|im_start|>user\n 123 ";
    try {
      auto ids = tok->encode(text);
      tok->decode(ids);
      tok->decode(ids, true);
    } catch (const omni::Error&) {
    }
  } catch (const omni::Error& e) {
    if (std::string(e.what()).find(path) == std::string::npos) std::abort();
  }
  std::remove(path.c_str());
  return 0;
}
