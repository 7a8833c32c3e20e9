// UTF-8 helpers for the tokenizer: strict decoding of input text, and the lossy conversion of
// token bytes to text that Hugging Face `tokenizers` applies when decoding (Rust's
// String::from_utf8_lossy: each maximal ill-formed subpart becomes one U+FFFD).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace omni::utf8 {

// Code points of `text` and the byte offset where each starts (offsets has one extra entry: text.size()).
// Throws omni::Error naming `what` and the byte offset of the first invalid sequence.
void decode_strict(std::string_view text, std::vector<char32_t>& cps, std::vector<size_t>& offsets,
                   const char* what);
// Throws like decode_strict when `text` is not well-formed UTF-8.
void validate(std::string_view text, const char* what);

void append(std::string& out, char32_t cp);

// The code point starting at bytes[pos] of well-formed text, and its length in bytes.
char32_t decode_one(std::string_view text, size_t pos, int* length);
// Start of the code point that ends at bytes[pos] (exclusive) in well-formed text.
size_t previous_start(std::string_view text, size_t pos);

// The Unicode White_Space property: Oniguruma's \s and Rust's char::is_whitespace.
bool is_white_space(char32_t c);

// Length of the well-formed (or ill-formed) sequence starting at bytes[pos]:
//   > 0  a complete valid character of that many bytes,
//   < 0  an ill-formed subpart of -n bytes (replaced by one U+FFFD),
//   0    a valid but truncated prefix that runs into the end of `bytes`.
int next_sequence(std::string_view bytes, size_t pos);

// Bytes → text with U+FFFD for ill-formed parts, exactly as from_utf8_lossy.
std::string lossy(std::string_view bytes);

// Length of the longest prefix of `bytes` that does not end inside a character that more
// bytes could still complete.
size_t complete_prefix(std::string_view bytes);

// NFC of well-formed UTF-8 as HF `tokenizers` computes it: utf8proc's NFC, except that the code
// points HF's (older) normalization data does not know are left alone (unicode_compat_tables.h).
std::string nfc(std::string_view text);

}  // namespace omni::utf8
