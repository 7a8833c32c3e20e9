// A conversation over the thinker's KV cache. Turns append to the cache (prefix reuse); when
// the context fills, the oldest turns are dropped and the rest recomputed once.
#include <algorithm>

#include "grammar/mask_worker.h"
#include "model/mrope_positions.h"
#include "model_impl.h"
#include "omni/errors.h"

namespace omni {
namespace {

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

SessionImpl::SessionImpl(ModelImpl& model, const SessionOptions& opt)
    : model_(model),
      be_(model.backend()),
      thinker_(model.thinker()),
      system_prompt_(opt.system_prompt),
      rotary_(be_, thinker_.config(), thinker_.max_rows()) {
  const DecoderConfig& c = thinker_.config();
  const int rows = thinker_.max_rows();
  caches_ = alloc_kv_caches(be_, c, model.context_tokens());
  ids_dev_ = be_.alloc({rows}, DType::I32);
  pos_dev_ = be_.alloc({rows}, DType::I32);
  x_ = be_.alloc({rows, c.hidden_size});
  logits_ = be_.alloc({1, c.vocab_size}, DType::F32);
  pos_host_.resize(size_t(rows));
  if (!opt.tools.empty()) set_tools(opt.tools);
  if (model.speech()) {
    accept_hidden_ = be_.alloc({model.context_tokens(), c.hidden_size});
    talker_rows_ = be_.alloc({model.context_tokens(), c.hidden_size});
  }
}

void SessionImpl::reset() {
  ++epoch_;
  used_ = 0;
  rope_delta_ = 0;
  context_ids_.clear();
  pending_.clear();
  history_.clear();
  system_in_cache_ = false;
}

void SessionImpl::set_system_prompt(const std::string& s) {
  system_prompt_ = s;
  reset();  // the system turn heads the cache: a new one means a new conversation
}

void SessionImpl::set_tools(const std::string& tools_json) {
  std::vector<std::string> lines;
  std::vector<JsonGrammar::Tool> tools;
  if (!tools_json.empty()) {
    const ojson j = ojson::parse(tools_json, nullptr, false);
    if (j.is_discarded()) throw Error("tools: not valid JSON");
    tools = compile_tools(j);  // throws SchemaError naming the field
    lines = tool_lines(j);
    if (tools.empty()) lines.clear();  // an empty list renders like no tools
  }
  tool_lines_ = std::move(lines);
  tools_ = std::move(tools);
  reset();  // the tools are listed in the system turn: a new set means a new conversation
}

std::vector<int32_t> SessionImpl::system_ids() const {
  if (tool_lines_.empty()) return render_system(model_.tokenizer(), model_.config().ids, system_prompt_);
  std::vector<ChatMessage> msgs;
  if (!system_prompt_.empty()) msgs.push_back({"system", {{ChatPart::Kind::Text, system_prompt_, 0}}, {}});
  return render_conversation(model_.tokenizer(), model_.config().ids, msgs, tool_lines_, false);
}

std::unique_ptr<DecodeConstraint> SessionImpl::make_constraint(const GenerateOptions& opt) {
  const bool value = !opt.response_schema.empty();
  const ToolChoice choice = ToolChoice::parse(opt.tool_choice);
  if (!value && tools_.empty()) {
    if (choice.kind == ToolChoice::Kind::Auto || choice.kind == ToolChoice::Kind::None) return nullptr;
    throw Error("tool_choice '" + opt.tool_choice + "' needs tools, and this session has none");
  }
  if (!opt.forced_tokens.empty()) throw Error("forced tokens and constrained decoding cannot be combined");
  const ConstraintTokens ids = ConstraintTokens::from(model_.tokenizer(), model_.config().ids.im_end);
  if (value) {
    const ojson schema = ojson::parse(opt.response_schema, nullptr, false);
    if (schema.is_discarded()) throw Error("response_schema: not valid JSON");
    return DecodeConstraint::for_value(model_.token_table(), ids, Schema::compile(schema, "response_schema"));
  }
  return DecodeConstraint::for_tools(model_.token_table(), ids, tools_, choice, opt.max_tool_calls);
}

void SessionImpl::encode_images(const std::vector<std::shared_ptr<const VisualPatches>>& images) {
  VisionInput& v = model_.vision();
  v.clear();
  for (const auto& p : images) v.append(*p);
}

std::vector<int> SessionImpl::encode_clips(const std::vector<std::vector<float>>& clips) {
  AudioInput& a = model_.audio();
  a.clear();
  std::vector<int> spans;
  for (const std::vector<float>& c : clips) spans.push_back(a.append(c.data(), c.size()));
  return spans;
}

void SessionImpl::prefill(const std::vector<int32_t>& ids, const std::vector<int>& audio_spans, bool images) {
  const bool audio = !audio_spans.empty();
  const int rows = thinker_.max_rows();
  if (used_ + int(ids.size()) > model_.context_tokens())
    throw ContextFullError("context full: " + std::to_string(used_ + ids.size()) + " tokens exceed context_tokens " +
                std::to_string(model_.context_tokens()));
  // Rotary positions (docs/model.md §3.5). Text and audio continue at slot + rope_delta_ on all three rows;
  // image spans take their grids' positions. Where every position is its slot the plain 1-D RoPE applies.
  const float start = float(used_) + rope_delta_;
  MropePositions mp;
  if (images) {
    MropeInput in;
    in.images = model_.vision().image_spans();
    in.videos = model_.vision().video_spans();
    in.spatial_merge_size = model_.vision().merge_size();
    in.audio_tokens = audio_spans;
    in.use_audio_in_video = true;  // a video given with its audio is one interleaved span (the ids show which)
    mp = mrope_positions(ids, model_.config().ids, in);
    for (size_t i = 0; i < ids.size(); ++i) {
      mp.t[i] += start;
      mp.h[i] += start;
      mp.w[i] += start;
    }
    mp.next += start;
  } else if (rope_delta_ != 0) {
    for (size_t i = 0; i < ids.size(); ++i) {
      const float p = start + float(i);
      mp.t.push_back(p);
      mp.h.push_back(p);
      mp.w.push_back(p);
    }
    mp.next = start + float(ids.size());
  }
  const bool table = !mp.t.empty();
  for (size_t begin = 0; begin < ids.size(); begin += size_t(rows)) {
    const int n = int(std::min<size_t>(size_t(rows), ids.size() - begin));
    for (int i = 0; i < n; ++i) pos_host_[size_t(i)] = used_ + i;
    Tensor ids_t = ids_dev_.rows(0, n), pos_t = pos_dev_.rows(0, n), x = x_.rows(0, n);
    be_.upload(ids_t, ids.data() + begin);
    be_.upload(pos_t, pos_host_.data());
    thinker_.embed(ids_t, x);
    if (audio) model_.audio().fill_prefill_chunk(ids, begin, x);
    DecoderExtras extras;
    if (images) {
      model_.vision().fill_prefill_chunk(ids, begin, x);
      extras.adds = model_.vision().deepstack_adds(ids, begin, size_t(n));
    }
    if (table) {
      const DecoderExtras rows = rotary_.fill(mp.t.data() + begin, mp.h.data() + begin, mp.w.data() + begin, n);
      extras.rope_cos = rows.rope_cos;
      extras.rope_sin = rows.rope_sin;
    }
    const DecoderExtras* ex = table || !extras.adds.empty() ? &extras : nullptr;
    if (accept_hidden_.empty()) {
      thinker_.forward(x, pos_t, caches_, Tensor(), -1, ex);
    } else {
      thinker_.forward(x, pos_t, caches_, accept_hidden_.rows(used_, n), model_.config().talker.accept_hidden_layer,
                       ex);
    }
    context_ids_.insert(context_ids_.end(), ids.begin() + long(begin), ids.begin() + long(begin) + n);
    used_ += n;
    if (begin + size_t(n) == ids.size()) thinker_.logits(x.rows(n - 1, 1), logits_);
  }
  // A video's time row need not be whole (2/fps · 13 per pair): the delta is a float, as in transformers.
  if (table) rope_delta_ = mp.next - float(used_);
}

void SessionImpl::decode_step(bool table) {
  Tensor x = x_.rows(0, 1);
  thinker_.embed(ids_dev_.rows(0, 1), x);
  const DecoderExtras extras = rotary_.rows(1);
  thinker_.forward(x, pos_dev_.rows(0, 1), caches_, Tensor(), -1, table ? &extras : nullptr);
  thinker_.logits(x, logits_);
}

void SessionImpl::decode_loop(const GenerateOptions& opt, const Callbacks& cb, TurnResult& r, SpeechPipeline* speech,
                              DecodeConstraint* con) {
  const Sampling& s = opt.sampling;
  SamplingParams sp;
  static_cast<Sampling&>(sp) = s;
  std::mt19937_64 rng(s.seed);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  // HF applies the repetition penalty to the whole input sequence, prompt included.
  std::vector<int32_t> seen;
  if (sp.repetition_penalty != 1.0f) {
    for (const HistoryTurn& h : history_) seen.insert(seen.end(), h.ids.begin(), h.ids.end());
    seen.insert(seen.end(), r.prompt_tokens.begin(), r.prompt_tokens.end());
  }
  const int32_t im_end = model_.config().ids.im_end;
  // Constrained decoding: the mask for the next step is computed on a worker while the step runs.
  std::unique_ptr<MaskWorker> masker;
  if (con) {
    masker = std::make_unique<MaskWorker>();
    masker->start(*con);
  }
  StreamDecoder text(model_.tokenizer());
  std::vector<float> logits_host;
  const auto t0 = Clock::now();
  r.stop = StopReason::MaxTokens;
  for (int step = 0; step < opt.max_new_tokens; ++step) {
    if (cancelled_.load()) {
      r.stop = StopReason::Cancelled;
      break;
    }
    if (masker) be_.mask_logits(logits_, masker->wait().data());
    const int32_t picked = be_.sample(logits_, sp, seen, uniform(rng));
    const int32_t tok = size_t(step) < opt.forced_tokens.size() ? opt.forced_tokens[size_t(step)] : picked;
    if (cb.on_logits) {
      logits_host.resize(size_t(logits_.numel()));
      be_.download_f32(logits_host.data(), logits_);
      cb.on_logits(logits_host.data(), logits_host.size());
    }
    r.tokens.push_back(picked);
    if (step == 0) first_token_time_ = Clock::now();
    if (sp.repetition_penalty != 1.0f) seen.push_back(tok);
    if (cb.on_token) cb.on_token(tok);
    // Call markup is neither answer text nor speech.
    const bool markup = con && con->accept(tok);
    if (speech && !markup) speech->on_thinker_token(tok);  // runs every talker step whose text now exists
    if (tok == im_end) {
      r.stop = StopReason::EndOfTurn;
      break;
    }
    const std::string piece = markup ? std::string() : text.push(tok);
    if (!piece.empty()) {
      r.text += piece;
      if (cb.on_text) cb.on_text(piece);
    }
    if (step + 1 == opt.max_new_tokens) break;
    if (used_ >= model_.context_tokens()) {
      r.stop = StopReason::ContextFull;
      break;
    }
    // Feed the token: one row at position used_. The step reads the id and the position from
    // device memory, so on a backend with graphs it is captured once and replayed.
    pos_host_[0] = used_;
    be_.upload(ids_dev_.rows(0, 1), &tok);
    be_.upload(pos_dev_.rows(0, 1), pos_host_.data());
    // After an image the rotary position is the slot + rope_delta_ (docs/model.md §3.5): given as a table row.
    const bool table = rope_delta_ != 0;
    if (table) {
      const float p = float(used_) + rope_delta_;
      rotary_.fill(&p, &p, &p, 1);
    }
    if (masker) masker->start(*con);
    if (be_.supports_graphs()) {
      int& graph = table ? decode_graph_table_ : decode_graph_;
      if (graph < 0) {
        be_.begin_capture();
        decode_step(table);
        graph = be_.end_capture();
      }
      be_.replay(graph);
    } else {
      decode_step(table);
    }
    context_ids_.push_back(tok);
    ++used_;
  }
  const std::string tail = text.flush();
  if (!tail.empty()) {
    r.text += tail;
    if (cb.on_text) cb.on_text(tail);
  }
  const double ms = ms_between(t0, Clock::now());
  r.timings.decode_tok_s = ms > 0 ? 1000.0 * double(r.tokens.size()) / ms : 0;
  if (masker) {
    masker->wait();  // a mask may still be in flight
    r.timings.masked_steps = masker->count();
    r.timings.mask_ms = masker->count() ? masker->total_ms() / masker->count() : 0;
    for (const ParsedToolCall& c : con->calls()) r.tool_calls.push_back({c.name, json_dumps_py(c.arguments)});
  }
  // The last sampled token is not in the cache yet; close the assistant turn the ChatML way
  // before the next user turn.
  pending_.clear();
  if (!r.tokens.empty()) pending_.push_back(r.tokens.back());
  if (pending_.empty() || pending_.back() != im_end) pending_.push_back(im_end);
  pending_.push_back(model_.config().ids.newline);
}

void SessionImpl::make_room(int needed, bool drop) {
  const int capacity = model_.context_tokens();
  const std::vector<int32_t> sys = system_ids();
  auto total = [&] {
    size_t n = sys.size();
    for (const HistoryTurn& h : history_) n += h.ids.size();
    return int(n);
  };
  if (used_ + int(pending_.size()) + needed <= capacity) return;
  if (!drop)
    throw Error("context full: this turn needs " + std::to_string(int(pending_.size()) + needed) + " tokens, " +
                std::to_string(capacity - used_) +
                " are free, and dropping the oldest turns is off for it (drop_oldest_turns = false)");
  // The last answer's closing tokens belong to the last history turn.
  if (!history_.empty()) {
    history_.back().ids.insert(history_.back().ids.end(), pending_.begin(), pending_.end());
    pending_.clear();
  }
  while (!history_.empty() && total() + needed > capacity) history_.erase(history_.begin());
  if (total() + needed > capacity)
    throw ContextFullError("context full: this turn needs " + std::to_string(needed) + " tokens but context_tokens is " +
                std::to_string(capacity));
  // Rebuild: the system turn, then each kept turn (a spoken turn's clip is encoded again).
  ++epoch_;
  used_ = 0;
  rope_delta_ = 0;
  context_ids_.clear();
  system_in_cache_ = true;
  if (!sys.empty()) prefill(sys);
  for (const HistoryTurn& h : history_) {
    const std::vector<int> spans = encode_clips(h.clips);
    if (!h.images.empty()) encode_images(h.images);
    prefill(h.ids, spans, !h.images.empty());
  }
}

SpeechOptions SessionImpl::speech_options(const GenerateOptions& opt) const {
  SpeechOptions so;
  so.speaker = opt.speaker;
  so.sampling.greedy = opt.sampling.greedy;  // greedy text → greedy talker and code predictor (HF 5.17)
  so.sampling.seed = opt.sampling.seed;
  so.max_frames = std::min(opt.max_speech_frames, model_.speech()->max_frames());
  return so;
}

std::unique_ptr<SpeechPipeline> SessionImpl::make_speech(const Callbacks& cb) {
  return std::make_unique<SpeechPipeline>(*model_.speech(), thinker_.embed_table(), [&cb](const float* s, size_t n) {
    if (cb.on_audio) cb.on_audio(s, n);
  });
}

std::unique_ptr<SpeechPipeline> SessionImpl::start_speech(
    const GenerateOptions& opt, const Callbacks& cb, const std::vector<int32_t>& header,
    const std::vector<std::shared_ptr<const VisualPatches>>& turn_images) {
  auto sp = make_speech(cb);
  // The talker hears every user turn in the cache (docs/model.md §3.7): their ids, and the accept-layer
  // hidden rows of those slots, gathered into one block.
  std::vector<int32_t> ctx(context_ids_.begin(), context_ids_.end() - long(header.size()));
  std::vector<int> positions = talker_user_positions(ctx, model_.config().ids);
  std::vector<int32_t> user_ids;
  for (int p : positions) user_ids.push_back(ctx[size_t(p)]);
  // User turns are runs of consecutive slots: one device copy per run.
  Tensor rows;
  if (!positions.empty()) rows = talker_rows_.rows(0, int64_t(positions.size()));
  for (size_t i = 0; i < positions.size();) {
    size_t j = i + 1;
    while (j < positions.size() && positions[j] == positions[j - 1] + 1) ++j;
    be_.copy(accept_hidden_.rows(positions[i], int64_t(j - i)), rows.rows(int64_t(i), int64_t(j - i)));
    i = j;
  }
  // The grids of every image and video in those user turns, in order: the talker's 3-row positions need them.
  std::vector<VisualSpan> images, videos;
  auto add = [&](const std::vector<std::shared_ptr<const VisualPatches>>& visuals) {
    for (const auto& p : visuals)
      (p->video ? videos : images).push_back(VisualSpan{p->grid_t, p->grid_h, p->grid_w, p->seconds_per_pair});
  };
  for (const HistoryTurn& h : history_) add(h.images);
  add(turn_images);
  sp->start(user_ids, rows, header, speech_options(opt), images, videos);
  active_speech_.store(sp.get());
  if (cancelled_.load()) sp->cancel();
  return sp;
}

void SessionImpl::finish_speech(SpeechPipeline& sp, TurnResult& r) {
  if (!cancelled_.load()) sp.finish_text();
  active_speech_.store(nullptr);
  if (cancelled_.load()) r.stop = StopReason::Cancelled;
  r.speech_samples = sp.samples();
  r.speech_frames = int(sp.frames().size());
  if (sp.has_audio())
    r.timings.first_audio_ms = ms_between(first_token_time_, sp.first_audio_time());
}

TurnResult SessionImpl::respond(const UserTurn& turn, const GenerateOptions& opt, const Callbacks& cb) {
  cancelled_.store(false);
  if (opt.speak && !model_.speech())
    throw Error(model_.config().has_talker ? "speech was not loaded (load_talker is off)"
                                           : "this model has no talker: it cannot speak");
  // Images and videos are decoded and prepared before anything changes: a bad one leaves the conversation as it
  // was.
  ModelImpl::PreparedTurn t = model_.prepare_turn(turn);
  model_.check_visual_tokens(t.visuals, "images: the turn's");
  return run_turn(std::move(t.ids), std::move(t.clips), opt, cb, t.visuals);
}

TurnResult SessionImpl::respond_tool_results(const std::vector<ToolResult>& results, const GenerateOptions& opt,
                                             const Callbacks& cb) {
  cancelled_.store(false);
  if (results.empty()) throw Error("tool results: none given");
  if (history_.empty()) throw Error("tool results: no answer in this conversation called a tool");
  if (opt.speak && !model_.speech())
    throw Error(model_.config().has_talker ? "speech was not loaded (load_talker is off)"
                                           : "this model has no talker: it cannot speak");
  std::vector<ChatMessage> msgs;
  for (const ToolResult& t : results) msgs.push_back({"tool", {{ChatPart::Kind::Text, t.content, 0}}, {}});
  return run_turn(render_conversation(model_.tokenizer(), model_.config().ids, msgs, {}, true), {}, opt, cb);
}

TurnResult SessionImpl::run_turn(std::vector<int32_t> turn_ids, std::vector<std::vector<float>> clips,
                                 const GenerateOptions& opt, const Callbacks& cb,
                                 const std::vector<std::shared_ptr<const VisualPatches>>& images) {
  TurnResult r;
  const std::unique_ptr<DecodeConstraint> con = make_constraint(opt);  // checks the options before anything changes
  const bool add_system = !system_in_cache_ && used_ == 0;
  if (add_system) {
    auto sys = system_ids();
    turn_ids.insert(turn_ids.begin(), sys.begin(), sys.end());
  }
  make_room(int(turn_ids.size()) + opt.max_new_tokens, opt.drop_oldest_turns);
  if (add_system) system_in_cache_ = true;
  std::vector<int32_t> feed = pending_;
  feed.insert(feed.end(), turn_ids.begin(), turn_ids.end());
  r.prompt_tokens = turn_ids;
  const auto t0 = Clock::now();
  // The closing tokens of the previous answer join the previous history turn.
  if (!history_.empty()) history_.back().ids.insert(history_.back().ids.end(), pending_.begin(), pending_.end());
  pending_.clear();
  const auto ta = Clock::now();
  const std::vector<int> spans = encode_clips(clips);
  if (!clips.empty()) r.timings.audio_encode_ms = ms_between(ta, Clock::now());
  if (!images.empty()) encode_images(images);
  prefill(feed, spans, !images.empty());
  r.timings.prefill_ms = ms_between(t0, Clock::now());
  std::unique_ptr<SpeechPipeline> speech;
  if (opt.speak) speech = start_speech(opt, cb, std::vector<int32_t>(turn_ids.end() - 3, turn_ids.end()), images);
  decode_loop(opt, cb, r, speech.get(), con.get());
  if (speech) finish_speech(*speech, r);
  HistoryTurn h;
  h.ids = turn_ids;
  h.clips = std::move(clips);
  h.images = images;
  // Tokens fed during decoding (all generated but the last; the last is in pending_).
  if (r.tokens.size() > 1) h.ids.insert(h.ids.end(), r.tokens.begin(), r.tokens.end() - 1);
  history_.push_back(std::move(h));
  return r;
}

SessionMark SessionImpl::mark() const {
  auto m = std::make_shared<SessionImplMark>();
  m->session = this;
  m->epoch = epoch_;
  m->used = used_;
  m->pending = pending_;
  m->history_turns = history_.size();
  m->last_turn_ids = history_.empty() ? 0 : history_.back().ids.size();
  m->system_in_cache = system_in_cache_;
  m->rope_delta = rope_delta_;
  return SessionMark{std::move(m)};
}

void SessionImpl::rollback(const SessionMark& mark) {
  const auto* m = dynamic_cast<const SessionImplMark*>(mark.state.get());
  if (!mark.valid()) throw Error("rollback: the mark is empty (make one with Session::mark())");
  if (!m || m->session != this) throw Error("rollback: the mark belongs to another session");
  if (m->epoch != epoch_)
    throw Error("rollback: the conversation's cache was rebuilt since the mark (the oldest turns were dropped "
                "because the context filled, or it was reset); the turns since cannot be taken back");
  // Same epoch: the cache only grew since the mark and the history only gained turns (the mark's
  // last turn only gained the closing tokens of its answer).
  if (used_ < m->used || history_.size() < m->history_turns ||
      (m->history_turns > 0 && history_[m->history_turns - 1].ids.size() < m->last_turn_ids))
    throw Error("rollback: the mark is ahead of the conversation");
  used_ = m->used;
  context_ids_.resize(size_t(m->used));
  history_.resize(m->history_turns);
  if (!history_.empty()) history_.back().ids.resize(m->last_turn_ids);
  pending_ = m->pending;
  system_in_cache_ = m->system_in_cache;
  rope_delta_ = m->rope_delta;
}

TurnResult SessionImpl::generate_from_ids(const std::vector<int32_t>& ids, const GenerateOptions& opt,
                                          const Callbacks& cb) {
  cancelled_.store(false);
  if (opt.speak) throw Error("--ids prompts are raw token ids; speech needs a chat prompt (--prompt/--audio)");
  if (ids.empty()) throw Error("no prompt ids given");
  const std::unique_ptr<DecodeConstraint> con = make_constraint(opt);
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
  decode_loop(opt, cb, r, nullptr, con.get());
  HistoryTurn h;
  h.ids = ids;
  if (r.tokens.size() > 1) h.ids.insert(h.ids.end(), r.tokens.begin(), r.tokens.end() - 1);
  history_.push_back(std::move(h));
  return r;
}

TurnResult SessionImpl::say(const std::string& text, const GenerateOptions& opt, const Callbacks& cb) {
  cancelled_.store(false);
  if (!model_.speech()) throw Error("this model cannot speak (no talker loaded)");
  // The talker reads `text` as if the thinker had written it: no user part, the assistant
  // header, then the text tokens. The conversation's cache is not touched.
  const TokenIds& ids = model_.config().ids;
  TurnResult r;
  r.tokens = model_.tokenizer().encode_plain(text);
  r.text = text;
  auto speech = make_speech(cb);
  SpeechPipeline& sp = *speech;
  sp.start({}, Tensor(), {ids.im_start, ids.assistant, ids.newline}, speech_options(opt));
  active_speech_.store(&sp);
  first_token_time_ = Clock::now();
  for (int32_t t : r.tokens) {
    if (cancelled_.load()) break;
    sp.on_thinker_token(t);
  }
  finish_speech(sp, r);
  if (r.stop != StopReason::Cancelled) r.stop = StopReason::EndOfTurn;
  return r;
}

}  // namespace omni
