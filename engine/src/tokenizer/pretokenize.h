// The pre-tokenizer of Qwen2/Qwen3 tokenizer.json: a Split with this regex, behavior "Isolated",
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// matched by hand over code points (Oniguruma semantics: leftmost-first alternation, greedy
// quantifiers with backtracking; \s is the Unicode White_Space property).
#pragma once
#include <string_view>
#include <vector>

namespace omni {

// The regex string as it appears in tokenizer.json (pre_tokenizer.pretokenizers[0].pattern.Regex).
extern const std::string_view kQwen2SplitPattern;

// Splits well-formed UTF-8 `text` into the pieces the regex isolates (they cover the whole text).
std::vector<std::string_view> qwen2_pretokenize(std::string_view text);

}  // namespace omni
