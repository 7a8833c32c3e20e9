#include "tokenizer/utf8.h"

#include <utf8proc.h>

#include <cstdlib>

#include <algorithm>
#include <iterator>

#include "omni/errors.h"
#include "tokenizer/unicode_compat_tables.h"

namespace omni::utf8 {
namespace {

// Allowed range of the second byte for each lead byte (Unicode Table 3-7); later bytes are 80..BF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

int sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return -1;
}

char32_t decode_at(std::string_view s, size_t pos, int len) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[pos + i]); };
  switch (len) {
    case 1: return b(0);
    case 2: return (char32_t(b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return (char32_t(b(0) & 0x0F) << 12) | (char32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return (char32_t(b(0) & 0x07) << 18) | (char32_t(b(1) & 0x3F) << 12) | (char32_t(b(2) & 0x3F) << 6) |
             (b(3) & 0x3F);
  }
}

[[noreturn]] void fail(const char* what, size_t pos) {
  throw Error(std::string(what) + ": not valid UTF-8 (bad byte sequence at byte " + std::to_string(pos) + ")");
}

}  // namespace

int next_sequence(std::string_view bytes, size_t pos) {
  const auto lead = static_cast<unsigned char>(bytes[pos]);
  const int len = sequence_length(lead);
  if (len < 0) return -1;
  for (int i = 1; i < len; ++i) {
    if (pos + i >= bytes.size()) return 0;
    const auto b = static_cast<unsigned char>(bytes[pos + i]);
    const bool ok = i == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return -i;
  }
  return len;
}

void decode_strict(std::string_view text, std::vector<char32_t>& cps, std::vector<size_t>& offsets,
                   const char* what) {
  cps.clear();
  offsets.clear();
  cps.reserve(text.size());
  offsets.reserve(text.size() + 1);
  size_t pos = 0;
  while (pos < text.size()) {
    const int len = next_sequence(text, pos);
    if (len <= 0) fail(what, pos);
    cps.push_back(decode_at(text, pos, len));
    offsets.push_back(pos);
    pos += len;
  }
  offsets.push_back(text.size());
}

void validate(std::string_view text, const char* what) {
  size_t pos = 0;
  while (pos < text.size()) {
    const auto b = static_cast<unsigned char>(text[pos]);
    if (b < 0x80) {
      ++pos;
      continue;
    }
    const int len = next_sequence(text, pos);
    if (len <= 0) fail(what, pos);
    pos += len;
  }
}

char32_t decode_one(std::string_view text, size_t pos, int* length) {
  int len = next_sequence(text, pos);
  if (len <= 0) len = 1;  // callers pass well-formed text; never read past the end regardless
  *length = len;
  return len == 1 ? static_cast<unsigned char>(text[pos]) : decode_at(text, pos, len);
}

size_t previous_start(std::string_view text, size_t pos) {
  if (pos == 0) return 0;
  --pos;
  while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string lossy(std::string_view bytes) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const int len = next_sequence(bytes, pos);
    if (len > 0) {
      out.append(bytes.substr(pos, len));
      pos += len;
    } else {
      out += kReplacement;
      // A truncated sequence at the end is one maximal subpart: everything that is left.
      pos += len < 0 ? static_cast<size_t>(-len) : bytes.size() - pos;
    }
  }
  return out;
}

size_t complete_prefix(std::string_view bytes) {
  // A character is at most 4 bytes, so only the last 3 lead positions can start a truncated one.
  const size_t first = bytes.size() > 3 ? bytes.size() - 3 : 0;
  size_t pos = first;
  // Re-synchronise: scanning from `first` may start in the middle of a character, which then
  // reads as ill-formed continuation bytes; those are complete (they will be replaced anyway),
  // but a truncated sequence can only begin at a lead byte, which is recognised either way.
  while (pos < bytes.size()) {
    const int len = next_sequence(bytes, pos);
    if (len == 0) return pos;
    pos += len > 0 ? static_cast<size_t>(len) : static_cast<size_t>(-len);
  }
  return bytes.size();
}

namespace {

std::string utf8proc_nfc(std::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &out,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("NFC normalization failed: ") + utf8proc_errmsg(n));
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

bool nfc_opaque(char32_t c) {
  return std::binary_search(std::begin(unicode_compat::kNfcOpaque), std::end(unicode_compat::kNfcOpaque), c);
}

}  // namespace

std::string nfc(std::string_view text) {
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(text);  // ASCII is already NFC
  // Code points HF's normalizer does not know act as starters that never decompose or compose, so
  // the text between them is normalized piece by piece (see unicode_compat_tables.h).
  std::string out;
  size_t segment = 0, pos = 0;
  while (pos < text.size()) {
    int len = 0;
    const char32_t c = decode_one(text, pos, &len);
    if (c >= unicode_compat::kNfcOpaque[0] && nfc_opaque(c)) {
      if (pos > segment) out += utf8proc_nfc(text.substr(segment, pos - segment));
      out.append(text.substr(pos, len));
      segment = pos + len;
    }
    pos += len;
  }
  if (segment == 0) return utf8proc_nfc(text);
  out += utf8proc_nfc(text.substr(segment));
  return out;
}

}  // namespace omni::utf8
