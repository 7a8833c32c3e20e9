// A conversation over the thinker's KV cache. Turns append to the cache (prefix reuse); when
// the context fills, the oldest turns are dropped and the rest recomputed once.
#include <algorithm>

#include "model_impl.h"
#include "omni/errors.h"

namespace omni {
namespace {

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

constexpr int32_t kNewline = 198;  // "\n" after <|im_end|> in ChatML (Qwen vocabulary)

}  // namespace

SessionImpl::SessionImpl(ModelImpl& model, const SessionOptions& opt)
    : model_(model), be_(model.backend()), thinker_(model.thinker()), system_prompt_(opt.system_prompt) {
  const DecoderConfig& c = thinker_.config();
  const int rows = thinker_.max_rows();
  caches_ = alloc_kv_caches(be_, c, model.context_tokens());
  ids_dev_ = be_.alloc({rows}, DType::I32);
  pos_dev_ = be_.alloc({rows}, DType::I32);
  x_ = be_.alloc({rows, c.hidden_size});
  logits_ = be_.alloc({1, c.vocab_size}, DType::F32);
  pos_host_.resize(size_t(rows));
}

void SessionImpl::reset() {
  used_ = 0;
  pending_.clear();
  history_.clear();
  system_in_cache_ = false;
}

void SessionImpl::set_system_prompt(const std::string& s) {
  system_prompt_ = s;
  reset();  // the system turn heads the cache: a new one means a new conversation
}

void SessionImpl::prefill(const std::vector<int32_t>& ids) {
  const int rows = thinker_.max_rows();
  if (used_ + int(ids.size()) > model_.context_tokens())
    throw Error("context full: " + std::to_string(used_ + ids.size()) + " tokens exceed context_tokens " +
                std::to_string(model_.context_tokens()));
  for (size_t begin = 0; begin < ids.size(); begin += size_t(rows)) {
    const int n = int(std::min<size_t>(size_t(rows), ids.size() - begin));
    for (int i = 0; i < n; ++i) pos_host_[size_t(i)] = used_ + i;
    Tensor ids_t = ids_dev_.rows(0, n), pos_t = pos_dev_.rows(0, n), x = x_.rows(0, n);
    be_.upload(ids_t, ids.data() + begin);
    be_.upload(pos_t, pos_host_.data());
    thinker_.embed(ids_t, x);
    thinker_.forward(x, pos_t, caches_);
    used_ += n;
    if (begin + size_t(n) == ids.size()) thinker_.logits(x.rows(n - 1, 1), logits_);
  }
}

void SessionImpl::decode_loop(const GenerateOptions& opt, const Callbacks& cb, TurnResult& r) {
  const Sampling& s = opt.sampling;
  SamplingParams sp;
  sp.greedy = s.greedy;
  sp.temperature = s.temperature;
  sp.top_k = s.top_k;
  sp.top_p = s.top_p;
  sp.repetition_penalty = s.repetition_penalty;
  std::mt19937_64 rng(s.seed);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  // HF applies the repetition penalty to the whole input sequence, prompt included.
  std::vector<int32_t> seen;
  if (sp.repetition_penalty != 1.0f) {
    for (const HistoryTurn& h : history_) seen.insert(seen.end(), h.ids.begin(), h.ids.end());
    seen.insert(seen.end(), r.prompt_tokens.begin(), r.prompt_tokens.end());
  }
  const int32_t im_end = model_.config().ids.im_end;
  StreamDecoder text(model_.tokenizer());
  std::vector<float> logits_host;
  const auto t0 = Clock::now();
  r.stop = StopReason::MaxTokens;
  for (int step = 0; step < opt.max_new_tokens; ++step) {
    if (cancelled_.load()) {
      r.stop = StopReason::Cancelled;
      break;
    }
    const int32_t tok = be_.sample(logits_, sp, seen, uniform(rng));
    if (cb.on_logits) {
      logits_host.resize(size_t(logits_.numel()));
      be_.download_f32(logits_host.data(), logits_);
      cb.on_logits(logits_host.data(), logits_host.size());
    }
    r.tokens.push_back(tok);
    if (sp.repetition_penalty != 1.0f) seen.push_back(tok);
    if (cb.on_token) cb.on_token(tok);
    if (tok == im_end) {
      r.stop = StopReason::EndOfTurn;
      break;
    }
    const std::string piece = text.push(tok);
    if (!piece.empty()) {
      r.text += piece;
      if (cb.on_text) cb.on_text(piece);
    }
    if (step + 1 == opt.max_new_tokens) break;
    if (used_ >= model_.context_tokens()) {
      r.stop = StopReason::ContextFull;
      break;
    }
    // Feed the token: one row at position used_.
    pos_host_[0] = used_;
    be_.upload(ids_dev_.rows(0, 1), &tok);
    be_.upload(pos_dev_.rows(0, 1), pos_host_.data());
    Tensor x = x_.rows(0, 1);
    thinker_.embed(ids_dev_.rows(0, 1), x);
    thinker_.forward(x, pos_dev_.rows(0, 1), caches_);
    thinker_.logits(x, logits_);
    ++used_;
  }
  const std::string tail = text.flush();
  if (!tail.empty()) {
    r.text += tail;
    if (cb.on_text) cb.on_text(tail);
  }
  const double ms = ms_between(t0, Clock::now());
  r.timings.decode_tok_s = ms > 0 ? 1000.0 * double(r.tokens.size()) / ms : 0;
  // The last sampled token is not in the cache yet; close the assistant turn the ChatML way
  // before the next user turn.
  pending_.clear();
  if (!r.tokens.empty()) pending_.push_back(r.tokens.back());
  if (pending_.empty() || pending_.back() != im_end) pending_.push_back(im_end);
  pending_.push_back(kNewline);
}

void SessionImpl::make_room(int needed) {
  const int capacity = model_.context_tokens();
  auto system_ids = render_system(model_.tokenizer(), model_.config().ids, system_prompt_);
  auto total = [&] {
    size_t n = system_ids.size();
    for (const HistoryTurn& h : history_) n += h.ids.size();
    return int(n);
  };
  if (used_ + int(pending_.size()) + needed <= capacity) return;
  // The last answer's closing tokens belong to the last history turn.
  if (!history_.empty()) {
    history_.back().ids.insert(history_.back().ids.end(), pending_.begin(), pending_.end());
    pending_.clear();
  }
  while (!history_.empty() && total() + needed > capacity) history_.erase(history_.begin());
  if (total() + needed > capacity)
    throw Error("context full: this turn needs " + std::to_string(needed) + " tokens but context_tokens is " +
                std::to_string(capacity));
  used_ = 0;
  std::vector<int32_t> all = system_ids;
  for (const HistoryTurn& h : history_) all.insert(all.end(), h.ids.begin(), h.ids.end());
  system_in_cache_ = true;
  if (!all.empty()) prefill(all);
}

TurnResult SessionImpl::respond(const UserTurn& turn, const GenerateOptions& opt, const Callbacks& cb) {
  cancelled_.store(false);
  if (opt.speak) throw Error("speech output is not available in this build of the engine yet");
  TurnResult r;
  ChatTurnInput in;
  in.text = turn.text;
  in.audio_tokens = turn.audio_16k.empty() ? -1 : model_.audio_tokens_for(turn.audio_16k.size());
  std::vector<int32_t> turn_ids = render_user_turn(model_.tokenizer(), model_.config().ids, in);
  if (!system_in_cache_ && used_ == 0) {
    auto sys = render_system(model_.tokenizer(), model_.config().ids, system_prompt_);
    turn_ids.insert(turn_ids.begin(), sys.begin(), sys.end());
    system_in_cache_ = true;
  }
  make_room(int(turn_ids.size()) + opt.max_new_tokens);
  std::vector<int32_t> feed = pending_;
  feed.insert(feed.end(), turn_ids.begin(), turn_ids.end());
  r.prompt_tokens = turn_ids;
  const auto t0 = Clock::now();
  // The closing tokens of the previous answer join the previous history turn.
  if (!history_.empty()) history_.back().ids.insert(history_.back().ids.end(), pending_.begin(), pending_.end());
  pending_.clear();
  prefill(feed);
  r.timings.prefill_ms = ms_between(t0, Clock::now());
  decode_loop(opt, cb, r);
  HistoryTurn h;
  h.ids = turn_ids;
  // Tokens fed during decoding (all generated but the last; the last is in pending_).
  if (r.tokens.size() > 1) h.ids.insert(h.ids.end(), r.tokens.begin(), r.tokens.end() - 1);
  history_.push_back(std::move(h));
  return r;
}

TurnResult SessionImpl::generate_from_ids(const std::vector<int32_t>& ids, const GenerateOptions& opt,
                                          const Callbacks& cb) {
  cancelled_.store(false);
  if (opt.speak) throw Error("speech output is not available in this build of the engine yet");
  if (ids.empty()) throw Error("no prompt ids given");
  reset();
  system_in_cache_ = true;  // raw ids: no template, no system turn
  TurnResult r;
  r.prompt_tokens = ids;
  if (int(ids.size()) + 1 > model_.context_tokens())
    throw Error("prompt of " + std::to_string(ids.size()) + " tokens exceeds context_tokens " +
                std::to_string(model_.context_tokens()));
  const auto t0 = Clock::now();
  prefill(ids);
  r.timings.prefill_ms = ms_between(t0, Clock::now());
  decode_loop(opt, cb, r);
  HistoryTurn h;
  h.ids = ids;
  if (r.tokens.size() > 1) h.ids.insert(h.ids.end(), r.tokens.begin(), r.tokens.end() - 1);
  history_.push_back(std::move(h));
  return r;
}

TurnResult SessionImpl::say(const std::string& text, const GenerateOptions& opt, const Callbacks& cb) {
  throw Error("speech output is not available in this build of the engine yet");
}

}  // namespace omni
