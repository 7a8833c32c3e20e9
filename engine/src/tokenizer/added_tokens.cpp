#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>

#include "tokenizer/utf8.h"

namespace omni {
namespace {

// Regex \w in Unicode mode (what HF uses to decide single_word boundaries):
// Alphabetic, marks, decimal numbers, connector punctuation, Join_Control.
bool is_word_char(char32_t c) {
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC: return true;
    default: return false;
  }
}

bool ends_with_word(std::string_view text, size_t end) {
  if (end == 0) return false;
  int len = 0;
  return is_word_char(utf8::decode_one(text, utf8::previous_start(text, end), &len));
}

bool starts_with_word(std::string_view text, size_t begin) {
  if (begin >= text.size()) return false;
  int len = 0;
  return is_word_char(utf8::decode_one(text, begin, &len));
}

// Position after the last non-white-space character before `end` (0 when all of it is white space).
size_t strip_left(std::string_view text, size_t end) {
  while (end > 0) {
    const size_t start = utf8::previous_start(text, end);
    int len = 0;
    if (!utf8::is_white_space(utf8::decode_one(text, start, &len))) return end;
    end = start;
  }
  return 0;
}

// Position of the first non-white-space character at or after `begin` (text end when none).
size_t strip_right(std::string_view text, size_t begin) {
  while (begin < text.size()) {
    int len = 0;
    if (!utf8::is_white_space(utf8::decode_one(text, begin, &len))) return begin;
    begin += len;
  }
  return text.size();
}

}  // namespace

void AddedTokenMatcher::add(const AddedToken& token, std::string pattern) {
  if (pattern.empty()) return;  // an empty pattern never matches in HF either
  auto& bucket = by_first_byte_[static_cast<uint8_t>(pattern[0])];
  bucket.push_back(Pattern{std::move(pattern), token});
  std::stable_sort(bucket.begin(), bucket.end(),
                   [](const Pattern& a, const Pattern& b) { return a.text.size() > b.text.size(); });
  ++count_;
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text, bool skip_special) const {
  std::vector<TextSegment> out;
  auto push = [&](size_t begin, size_t end, int32_t id) {
    if (end > begin) out.push_back(TextSegment{begin, end, id});
  };
  size_t done = 0;  // end of the last emitted segment
  size_t pos = 0;   // where the search for the next match resumes
  while (pos < text.size() && count_ > 0) {
    const Pattern* hit = nullptr;
    for (const Pattern& p : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
      if (text.compare(pos, p.text.size(), p.text) == 0) {
        hit = &p;
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = pos + hit->text.size();
    pos = stop;  // the search resumes after the match even when the match is then discarded
    if (skip_special && hit->token.special) continue;
    if (hit->token.single_word && (ends_with_word(text, start) || starts_with_word(text, stop))) continue;
    if (hit->token.lstrip) start = std::max(strip_left(text, start), done);
    if (hit->token.rstrip) stop = strip_right(text, stop);
    push(done, start, -1);
    push(start, stop, hit->token.id);
    done = stop;
  }
  push(done, text.size(), -1);
  return out;
}

}  // namespace omni
