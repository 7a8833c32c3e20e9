// TalkerUserContext: what a Session must remember for the talker across turns (spec 3.7, 9.17):
// the ids of every user turn in the conversation and, for them, the thinker's accept-layer
// hidden states (hidden_states[accept_hidden_layer], read only at audio/image/video pads).
//
// The Session calls append() after each thinker prefill chunk with the chunk's ids and the rows
// the thinker captured (Thinker::forward(..., capture, accept_hidden_layer)); the chunks may cut
// turns anywhere, the role is tracked across calls with HF's rule (a token belongs to the turn of
// the preceding <|im_start|>, a user turn when the next id is `user`). When the Session rebuilds
// its cache after trimming, it calls reset() and appends again. Tokens before the first
// <|im_start|> count as non-user (Session prompts always start with one).
#pragma once
#include <vector>

#include "backend.h"
#include "model_config.h"

namespace omni {

class TalkerUserContext {
 public:
  // `max_rows`: the most user-turn tokens kept (the session's context size is enough).
  TalkerUserContext(Backend& be, const ModelConfig& cfg, int max_rows);
  void reset();
  // ids of one prefill chunk in conversation order; accept_rows [ids.size(), thinker_hidden].
  void append(const std::vector<int32_t>& ids, const Tensor& accept_rows);
  const std::vector<int32_t>& user_ids() const { return ids_; }
  Tensor user_hidden() const { return rows_.rows(0, int64_t(ids_.size())); }  // [P, thinker_hidden]

 private:
  Backend& be_;
  TokenIds tok_;
  Tensor rows_;         // [max_rows, thinker_hidden]
  Tensor pending_row_;  // [1, thinker_hidden]: a chunk's last <|im_start|>, role not yet known
  std::vector<int32_t> ids_;
  bool in_user_ = false;
  bool pending_im_start_ = false;
};

}  // namespace omni
