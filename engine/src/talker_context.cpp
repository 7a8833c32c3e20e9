#include "talker_context.h"

#include "omni/errors.h"

namespace omni {

TalkerUserContext::TalkerUserContext(Backend& be, const ModelConfig& cfg, int max_rows)
    : be_(be),
      tok_(cfg.ids),
      rows_(be.alloc({max_rows, int64_t(cfg.thinker.hidden_size)})),
      pending_row_(be.alloc({1, int64_t(cfg.thinker.hidden_size)})) {}

void TalkerUserContext::reset() {
  ids_.clear();
  in_user_ = pending_im_start_ = false;
}

void TalkerUserContext::append(const std::vector<int32_t>& ids, const Tensor& accept_rows) {
  const int64_t n = int64_t(ids.size());
  if (accept_rows.ndim != 2 || accept_rows.dim(0) != n || accept_rows.dim(1) != rows_.dim(1))
    throw Error("talker context: accept rows " + accept_rows.shape_str() + " do not match " + std::to_string(n) +
                " ids of width " + std::to_string(rows_.dim(1)));
  // Source rows of this chunk to keep, in order (-1: the pending <|im_start|> of the last chunk).
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = ids[size_t(i)];
    if (pending_im_start_) {  // the previous chunk ended with <|im_start|>; this id is its role
      pending_im_start_ = false;
      in_user_ = id == tok_.user;
      if (in_user_) keep.push_back(-1);
    }
    if (id == tok_.im_start) {
      if (i + 1 < n) {
        in_user_ = ids[size_t(i + 1)] == tok_.user;
      } else {
        pending_im_start_ = true;
        in_user_ = false;
        be_.copy(accept_rows.rows(i, 1), pending_row_);
        continue;
      }
    }
    if (in_user_) keep.push_back(i);
  }
  if (int64_t(ids_.size() + keep.size()) > rows_.dim(0))
    throw Error("talker context: " + std::to_string(ids_.size() + keep.size()) + " user tokens exceed its " +
                std::to_string(rows_.dim(0)) + " rows");
  for (size_t k = 0; k < keep.size();) {
    const int64_t dst = int64_t(ids_.size());
    if (keep[k] < 0) {
      be_.copy(pending_row_, rows_.rows(dst, 1));
      ids_.push_back(tok_.im_start);
      ++k;
      continue;
    }
    size_t e = k + 1;  // a run of consecutive source rows is one copy
    while (e < keep.size() && keep[e] == keep[e - 1] + 1) ++e;
    const int64_t count = int64_t(e - k);
    be_.copy(accept_rows.rows(keep[k], count), rows_.rows(dst, count));
    for (size_t j = k; j < e; ++j) ids_.push_back(ids[size_t(keep[j])]);
    k = e;
  }
}

}  // namespace omni
