#include "tokenizer/pretokenize.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>

#include "tokenizer/unicode_compat_tables.h"
#include "tokenizer/utf8.h"

namespace omni {

const std::string_view kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

using unicode_compat::CharClass;

using utf8::is_white_space;  // \s; note U+001C..U+001F are not White_Space (checked against HF)

CharClass classify(char32_t c) {
  if (c < 0x80) {  // fast path for ASCII
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::kLetter;
    if (c >= '0' && c <= '9') return CharClass::kNumber;
    if (is_white_space(c)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (is_white_space(c)) return CharClass::kSpace;
  // Characters HF's regex engine (newer Unicode data) classifies differently from utf8proc.
  const auto& overrides = unicode_compat::kRegexClassOverrides;
  const auto* it = std::upper_bound(std::begin(overrides), std::end(overrides), c,
                                    [](char32_t v, const unicode_compat::ClassRange& r) { return v < r.lo; });
  if (it != std::begin(overrides) && c <= (it - 1)->hi) return (it - 1)->cls;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CharClass::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CharClass::kNumber;
    default: return CharClass::kOther;
  }
}

bool is_cr_or_lf(char32_t c) { return c == '\r' || c == '\n'; }

char32_t ascii_lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

// Length of (?i:'s|'t|'re|'ve|'m|'ll|'d) at i, or 0. Only ASCII letters fold here: Oniguruma does
// not match U+017F (long s) for 's' in this pattern (checked against HF).
size_t match_contraction(const std::vector<char32_t>& cps, size_t i) {
  if (cps[i] != '\'' || i + 1 >= cps.size()) return 0;
  static constexpr std::u32string_view kSuffixes[] = {U"s", U"t", U"re", U"ve", U"m", U"ll", U"d"};
  for (std::u32string_view suffix : kSuffixes) {
    if (i + 1 + suffix.size() > cps.size()) continue;
    bool ok = true;
    for (size_t k = 0; k < suffix.size() && ok; ++k) ok = ascii_lower(cps[i + 1 + k]) == suffix[k];
    if (ok) return 1 + suffix.size();
  }
  return 0;
}

// End (exclusive) of the match that starts at i; every position starts a match of this regex.
size_t match_at(const std::vector<char32_t>& cps, const std::vector<CharClass>& cls, size_t i) {
  const size_t n = cps.size();
  auto run_end = [&](size_t j, CharClass c) {
    while (j < n && cls[j] == c) ++j;
    return j;
  };
  // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (size_t len = match_contraction(cps, i)) return i + len;
  // 2. [^\r\n\p{L}\p{N}]?\p{L}+
  if (cls[i] == CharClass::kLetter) return run_end(i, CharClass::kLetter);
  if (!is_cr_or_lf(cps[i]) && cls[i] != CharClass::kNumber && i + 1 < n && cls[i + 1] == CharClass::kLetter)
    return run_end(i + 1, CharClass::kLetter);
  // 3. \p{N}
  if (cls[i] == CharClass::kNumber) return i + 1;
  // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  size_t k = (cps[i] == ' ' && i + 1 < n && cls[i + 1] == CharClass::kOther) ? i + 1 : i;
  if (cls[k] == CharClass::kOther) {
    size_t j = run_end(k, CharClass::kOther);
    while (j < n && is_cr_or_lf(cps[j])) ++j;
    return j;
  }
  // Only white space is left here. j = end of the white-space run.
  const size_t j = run_end(i, CharClass::kSpace);
  // 5. \s*[\r\n]+  — backtracking leaves the match ending after the run's last CR/LF.
  for (size_t last = j; last > i; --last) {
    if (is_cr_or_lf(cps[last - 1])) return last;
  }
  // 6. \s+(?!\S)  — the whole run at the end of text, else all but its last character.
  if (j == n) return j;
  if (j - i >= 2) return j - 1;
  // 7. \s+
  return j;
}

}  // namespace

std::vector<std::string_view> qwen2_pretokenize(std::string_view text) {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
  utf8::decode_strict(text, cps, offsets, "pre-tokenizer input");
  std::vector<CharClass> cls(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) cls[i] = classify(cps[i]);

  std::vector<std::string_view> pieces;
  size_t i = 0;
  while (i < cps.size()) {
    const size_t end = match_at(cps, cls, i);
    pieces.push_back(text.substr(offsets[i], offsets[end] - offsets[i]));
    i = end;
  }
  return pieces;
}

}  // namespace omni
