// omni-bench --mask (omni_bench_mask.cpp).
#pragma once
#include <cstddef>
#include <string>

namespace omni {
// Times `runs` constrained answers' token masks on the tokenizer's vocabulary padded to `vocab` ids.
int bench_mask(const std::string& tokenizer_path, size_t vocab, int runs);
}  // namespace omni
