// Shared by test_tokenizer.cpp and test_chat.cpp: the real Qwen3-Omni tokenizer (unpacked by
// tests/CMakeLists.txt to OMNI_TEST_TOKENIZER) and the HF reference cases of
// tests/fixtures/tokenizer/cases.json (tools/gen_tokenizer_fixtures.py).
#pragma once
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "omni/tokenizer.h"

namespace omni::testing_fixtures {

inline const Tokenizer& real_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    if (!std::filesystem::exists(OMNI_TEST_TOKENIZER))
      throw std::runtime_error(std::string("tokenizer fixture missing: ") + OMNI_TEST_TOKENIZER +
                               " (re-run cmake; it unpacks tests/fixtures/tokenizer/tokenizer.json.xz with xz)");
    return Tokenizer::load(OMNI_TEST_TOKENIZER);
  }();
  return *tok;
}

inline const nlohmann::json& tokenizer_cases() {
  static const nlohmann::json cases = [] {
    const std::string path = std::string(OMNI_FIXTURES) + "/tokenizer/cases.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
  }();
  return cases;
}

// The text with non-printable and non-ASCII bytes escaped, for failure messages.
inline std::string escaped(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace omni::testing_fixtures
