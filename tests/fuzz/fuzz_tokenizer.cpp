// libFuzzer target: the real Qwen tokenizer (engine/src/tokenizer*.cpp, bpe.cpp, pretokenize.cpp) on
// arbitrary bytes. The tokenizer is loaded once from OMNI_FUZZ_TOKENIZER (the unpacked fixture, set by
// tests/fuzz/CMakeLists.txt; override with the environment variable of the same name).
// Byte 0 picks the mode; the rest is the text (or, for decode, little-endian int32 ids):
//   encode / encode_plain: invalid UTF-8 throws omni::Error; valid text decodes back to its NFC form;
//   decode: any ids (negative, unknown, special) decode without a crash, and StreamDecoder's pieces
//   concatenate to exactly decode()'s text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "omni/errors.h"
#include "omni/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

const omni::Tokenizer& tokenizer() {
  static std::unique_ptr<omni::Tokenizer> tok = [] {
    const char* env = std::getenv("OMNI_FUZZ_TOKENIZER");
    return omni::Tokenizer::load(env ? env : OMNI_FUZZ_TOKENIZER);
  }();
  return *tok;
}

void check_round_trip(const std::string& text, bool plain) {
  const omni::Tokenizer& tok = tokenizer();
  std::vector<int32_t> ids;
  try {
    ids = plain ? tok.encode_plain(text) : tok.encode(text);
  } catch (const omni::Error&) {
    try {
      omni::utf8::validate(text, "fuzz input");
    } catch (const omni::Error&) {
      return;  // rejected because it is not UTF-8: correct
    }
    std::abort();  // valid UTF-8 must encode
  }
  for (int32_t id : ids)
    if (id < 0 || size_t(id) >= tok.vocab_size()) std::abort();
  if (tok.decode(ids) != omni::utf8::nfc(text)) std::abort();
}

void check_decode(const std::uint8_t* data, std::size_t size) {
  const omni::Tokenizer& tok = tokenizer();
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  for (bool skip : {false, true}) {
    const std::string whole = tok.decode(ids, skip);
    omni::StreamDecoder stream(tok, skip);
    std::string pieces;
    for (int32_t id : ids) pieces += stream.push(id);
    pieces += stream.flush();
    if (pieces != whole) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: check_round_trip(text, /*plain=*/false); break;
    case 1: check_round_trip(text, /*plain=*/true); break;
    default: check_decode(data + 1, size - 1); break;
  }
  return 0;
}
