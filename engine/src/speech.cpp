#include "speech.h"

#include <algorithm>
#include <cctype>

#include "omni/errors.h"

namespace omni {
namespace {

constexpr int kAssistantRows = 9;  // docs/model.md §3.7: the talker's assistant part
constexpr int kHfChunkFrames = 300, kHfLeftContext = 25;  // HF chunked_decode

}  // namespace

SpeechModel::SpeechModel(const Checkpoint& ck, Backend& be, const ModelConfig& cfg, int max_prompt_rows,
                         int max_frames, int code2wav_push_frames, DType talker_format)
    : be_(be),
      cfg_(cfg),
      talker_(ck, be, cfg, max_prompt_rows + kAssistantRows, max_frames, talker_format),
      predictor_(ck, be, cfg.talker),
      code2wav_(be, ck, cfg.code2wav),
      decoder_(code2wav_, std::max(1, code2wav_push_frames), kHfChunkFrames + kHfLeftContext),
      max_frames_(max_frames),
      push_frames_(std::max(1, code2wav_push_frames)),
      rotary_(be, cfg.talker.text, max_prompt_rows + kAssistantRows) {
  if (cfg.talker.thinker_hidden_size != cfg.thinker.hidden_size)
    throw ConfigError("talker_config.thinker_hidden_size must equal the thinker's hidden_size");
  if (cfg.talker.code_predictor.vocab_size != cfg.code2wav.codebook_size)
    throw ConfigError("talker code_predictor_config.vocab_size must equal code2wav_config.codebook_size");
  const int64_t R = max_prompt_rows + kAssistantRows, H = talker_.hidden_size();
  scratch_.ids = be.alloc({R}, DType::I32);
  scratch_.positions = be.alloc({R}, DType::I32);
  scratch_.thinker_rows = be.alloc({R, int64_t(cfg.talker.thinker_hidden_size)});
  scratch_.x = be.alloc({R, H});
  scratch_.tmp = be.alloc({R, H});
  scratch_.tts = be.alloc({3, H});
  scratch_.c0_embed = be.alloc({1, H});
  scratch_.codec_sum = be.alloc({1, H});
  scratch_.step_in = be.alloc({1, H});
  scratch_.h_last = be.alloc({1, H});
  scratch_.logits = be.alloc({1, int64_t(talker_.vocab_size())});
}

int SpeechModel::speaker_id(const std::string& name) const {
  std::string lower = name;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  auto it = cfg_.talker.speaker_ids.find(lower);
  if (it == cfg_.talker.speaker_ids.end()) {
    std::string known;
    for (const auto& [k, v] : cfg_.talker.speaker_ids) known += (known.empty() ? "" : ", ") + k;
    throw Error("unknown speaker '" + name + "' (this model has: " + known + ")");
  }
  return it->second;
}

std::vector<int> talker_user_positions(const std::vector<int32_t>& prompt, const TokenIds& ids) {
  std::vector<int> out;
  const int n = int(prompt.size());
  int turn_start = 0;  // HF clamps "no <|im_start|> yet" to position 0
  for (int p = 0; p < n; ++p) {
    if (prompt[size_t(p)] == ids.im_start) turn_start = p;
    const int role = prompt[size_t(std::min(turn_start + 1, n - 1))];
    if (role == ids.user) out.push_back(p);
  }
  return out;
}

SpeechPipeline::SpeechPipeline(SpeechModel& model, const Tensor& thinker_embed_table, AudioSink on_audio)
    : m_(model), be_(model.backend()), embed_table_(thinker_embed_table), on_audio_(std::move(on_audio)),
      s_(model.scratch()) {}

int32_t SpeechPipeline::draw(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history) {
  const float u = float(rng_() >> 40) * (1.0f / 16777216.0f);  // 24 random bits in [0, 1)
  return be_.sample(logits, p, history, u);
}

void SpeechPipeline::start(const std::vector<int32_t>& user_ids, const Tensor& user_hidden,
                           const std::vector<int32_t>& assistant_header, const SpeechOptions& opt,
                           const std::vector<VisualSpan>& images, const std::vector<VisualSpan>& videos) {
  const ModelConfig& cfg = m_.config();
  const TalkerConfig& tc = cfg.talker;
  const int P = int(user_ids.size());
  if (assistant_header.size() != 3)
    throw Error("speech: the assistant header must be the 3 ids <|im_start|> assistant \\n");
  if (P + kAssistantRows > m_.talker().max_rows())
    throw Error("speech: the talker prompt of " + std::to_string(P + kAssistantRows) + " rows exceeds the " +
                std::to_string(m_.talker().max_rows()) + " it was sized for");
  if (opt.max_frames <= 0 || opt.max_frames > m_.max_frames())
    throw Error("speech: max_frames must be in [1, " + std::to_string(m_.max_frames()) + "]");
  const int speaker = m_.speaker_id(opt.speaker);
  // 3-row positions (checked before anything changes): transformers runs get_rope_index over the user part and
  // the assistant rows, whose ids are no span markers, so those rows continue as text after the user part.
  rope_ = MropePositions();
  rope_delta_ = 0;
  if (!images.empty() || !videos.empty()) {
    const TokenIds& tok = cfg.ids;
    MropeInput in;
    in.images = images;
    in.videos = videos;
    in.use_audio_in_video = true;  // a video with its soundtrack is one interleaved span (the ids show which)
    in.spatial_merge_size = tc.spatial_merge_size;
    for (size_t i = 0; i < user_ids.size(); ++i)  // each audio span's placeholder count (to its end), in order
      if (user_ids[i] == tok.audio_start) {
        int n = 0;
        for (size_t j = i + 1; j < user_ids.size() && user_ids[j] != tok.audio_end; ++j) n += user_ids[j] == tok.audio_pad;
        in.audio_tokens.push_back(n);
      }
    rope_ = mrope_positions(user_ids, tok, in);
    for (int i = 0; i < kAssistantRows; ++i) {
      const float p = rope_.next + float(i);
      rope_.t.push_back(p);
      rope_.h.push_back(p);
      rope_.w.push_back(p);
    }
    rope_delta_ = rope_.next - float(P);
  }
  opt_ = opt;
  user_ids_ = user_ids;
  header_ = assistant_header;
  user_hidden_ = user_hidden;
  text_.clear();
  frames_.clear();
  talker_tokens_.clear();
  prefill_host_.clear();
  text_rows_host_.clear();
  text_done_ = prefilled_ = done_ = eos_ = have_c0_ = false;
  step_ = 0;
  samples_ = 0;
  first_audio_ = {};
  cancelled_.store(false);
  rng_.seed(opt.sampling.seed);

  talker_sp_ = SamplingParams();
  static_cast<Sampling&>(talker_sp_) = opt.sampling;
  talker_sp_.suppress_begin = tc.text.vocab_size - 1024;  // HF: all codec specials but EOS
  talker_sp_.suppress_end = tc.text.vocab_size;
  talker_sp_.suppress_except = tc.codec_eos_id;
  predictor_sp_ = SamplingParams();  // 5.17: the code predictor samples iff the talker does
  predictor_sp_.greedy = opt.sampling.greedy;
  predictor_sp_.top_k = 50;
  predictor_sp_.top_p = 0.8f;
  stream_ = std::make_unique<Code2WavStream>(m_.code2wav_decoder(), kHfChunkFrames, kHfLeftContext, m_.push_frames());

  Talker& t = m_.talker();
  const TokenIds& ids = cfg.ids;
  // tts_pad / tts_bos / tts_eos text-side rows.
  const int32_t tts_ids[3] = {ids.tts_pad, ids.tts_bos, ids.tts_eos};
  be_.upload(s_.ids.rows(0, 3), tts_ids);
  be_.embed(embed_table_, s_.ids.rows(0, 3), s_.thinker_rows.rows(0, 3));
  t.project_text(s_.thinker_rows.rows(0, 3), s_.tts);

  // User part and the 3 header rows: text_projection of the token embeddings ...
  std::vector<int32_t> all = user_ids;
  all.insert(all.end(), assistant_header.begin(), assistant_header.end());
  const int n = int(all.size());
  be_.upload(s_.ids.rows(0, n), all.data());
  be_.embed(embed_table_, s_.ids.rows(0, n), s_.thinker_rows.rows(0, n));
  t.project_text(s_.thinker_rows.rows(0, n), s_.x.rows(0, n));
  // ... except audio/image/video placeholders, which take hidden_projection of the thinker's
  // accept-layer hidden state at that position.
  auto is_mm = [&](int32_t id) { return id == ids.audio_pad || id == ids.image_pad || id == ids.video_pad; };
  if (std::any_of(user_ids.begin(), user_ids.end(), is_mm)) {
    if (user_hidden.empty() || user_hidden.ndim != 2 || user_hidden.dim(0) != P ||
        user_hidden.dim(1) != tc.thinker_hidden_size)
      throw Error("speech: user_hidden must be [" + std::to_string(P) + ", " + std::to_string(tc.thinker_hidden_size) +
                  "] when the user part has audio/image/video tokens (got " + user_hidden.shape_str() + ")");
    t.project_hidden(user_hidden, s_.tmp.rows(0, P));
    for (int p = 0; p < P; ++p)
      if (is_mm(user_ids[size_t(p)])) be_.copy(s_.tmp.rows(p, 1), s_.x.rows(p, 1));
  }
  // Rows 3..7 of the assistant part: tts_pad + C(nothink, think_bos, think_eos, speaker), tts_bos + C(codec_pad).
  const int32_t codec[5] = {tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id, speaker, tc.codec_pad_id};
  be_.upload(s_.ids.rows(0, 5), codec);
  t.codec_embed(s_.ids.rows(0, 5), s_.tmp.rows(0, 5));
  for (int i = 0; i < 5; ++i)
    be_.add(s_.tts.rows(i < 4 ? 0 : 1, 1), s_.tmp.rows(i, 1), s_.x.rows(P + 3 + i, 1));
  prefill_rows_ = P + kAssistantRows;
  started_ = true;
}

void SpeechPipeline::prefill(int32_t first_text) {
  const int S = prefill_rows_;
  Talker& t = m_.talker();
  // Row 8: the first generated text token + C(codec_bos).
  be_.upload(s_.ids.rows(0, 1), &first_text);
  be_.embed(embed_table_, s_.ids.rows(0, 1), s_.thinker_rows.rows(0, 1));
  t.project_text(s_.thinker_rows.rows(0, 1), s_.x.rows(S - 1, 1));
  const int32_t bos = m_.config().talker.codec_bos_id;
  be_.upload(s_.ids.rows(0, 1), &bos);
  t.codec_embed(s_.ids.rows(0, 1), s_.tmp.rows(0, 1));
  be_.add(s_.x.rows(S - 1, 1), s_.tmp.rows(0, 1), s_.x.rows(S - 1, 1));
  if (keep_inputs_) {
    prefill_host_.resize(size_t(S) * size_t(t.hidden_size()));
    be_.download_f32(prefill_host_.data(), s_.x.rows(0, S));
  }
  // Slots 0..S-1. With text/audio inputs the talker's MRoPE rows are identical and the rotary position is the
  // slot (docs/model.md §3.5); with image spans the rows take their 3-row positions through tables.
  std::vector<int32_t> pos(static_cast<size_t>(S));
  for (int i = 0; i < S; ++i) pos[size_t(i)] = i;
  be_.upload(s_.positions.rows(0, S), pos.data());
  if (rope_.t.empty()) {
    t.forward(s_.x.rows(0, S), s_.positions.rows(0, S));
  } else {
    const DecoderExtras extras = m_.rotary().fill(rope_.t.data(), rope_.h.data(), rope_.w.data(), S);
    t.forward(s_.x.rows(0, S), s_.positions.rows(0, S), &extras);
  }
  be_.copy(s_.x.rows(S - 1, 1), s_.h_last);
  t.logits(s_.h_last, s_.logits);
  prefilled_ = true;
}

bool SpeechPipeline::text_input(size_t step, Tensor row) {
  // trailing[step] = TP(E[g_{step+2}]) while text lasts, then tts_eos once, then tts_pad.
  const size_t next = step + 1;
  if (next < text_.size()) {
    be_.upload(s_.ids.rows(0, 1), &text_[next]);
    be_.embed(embed_table_, s_.ids.rows(0, 1), s_.thinker_rows.rows(0, 1));
    m_.talker().project_text(s_.thinker_rows.rows(0, 1), row);
  } else if (!text_done_) {
    return false;
  } else {
    be_.copy(s_.tts.rows(next == text_.size() ? 2 : 0, 1), row);
  }
  if (keep_inputs_) {
    const size_t H = size_t(m_.talker().hidden_size());
    text_rows_host_.resize(text_rows_host_.size() + H);
    be_.download_f32(text_rows_host_.data() + text_rows_host_.size() - H, row);
  }
  return true;
}

void SpeechPipeline::emit(const std::vector<float>& samples) {
  if (samples.empty()) return;
  if (samples_ == 0) first_audio_ = std::chrono::steady_clock::now();
  samples_ += samples.size();
  if (on_audio_) on_audio_(samples.data(), samples.size());
}

void SpeechPipeline::advance() {
  const TalkerConfig& tc = m_.config().talker;
  Talker& t = m_.talker();
  std::vector<float> out;
  std::vector<int32_t> residual;
  auto pick = [&](const Tensor& logits) { return draw(logits, predictor_sp_, {}); };
  while (!done_) {
    if (cancelled_.load()) {
      done_ = true;
      return;
    }
    if (!have_c0_) {
      c0_ = draw(s_.logits, talker_sp_, talker_tokens_);
      talker_tokens_.push_back(c0_);
      have_c0_ = true;
      // The token that ends generation (EOS, or the one after max_frames) gets no residual codes.
      if (c0_ == tc.codec_eos_id || int(frames_.size()) == opt_.max_frames) {
        eos_ = c0_ == tc.codec_eos_id;
        out.clear();
        stream_->flush(out);
        emit(out);
        done_ = true;
        return;
      }
      be_.upload(s_.ids.rows(0, 1), &c0_);
      t.codec_embed(s_.ids.rows(0, 1), s_.c0_embed);
      m_.code_predictor().predict(s_.h_last, s_.c0_embed, pick, residual, s_.codec_sum);
      std::vector<int32_t> frame{c0_};
      frame.insert(frame.end(), residual.begin(), residual.end());
      out.clear();
      stream_->add_frame(frame.data(), out);
      frames_.push_back(std::move(frame));
      emit(out);
    }
    // The next talker input needs the trailing text of this step.
    if (!text_input(step_, s_.step_in)) return;
    be_.add(s_.step_in, s_.codec_sum, s_.step_in);
    const int32_t pos = prefill_rows_ + int32_t(step_);
    be_.upload(s_.positions.rows(0, 1), &pos);
    if (rope_.t.empty()) {
      t.forward(s_.step_in, s_.positions.rows(0, 1));
    } else {  // after image spans: the slot + the prompt's delta, the same on all three rows
      const float p = float(pos) + rope_delta_;
      const DecoderExtras extras = m_.rotary().fill(&p, &p, &p, 1);
      t.forward(s_.step_in, s_.positions.rows(0, 1), &extras);
    }
    be_.copy(s_.step_in, s_.h_last);
    t.logits(s_.h_last, s_.logits);
    ++step_;
    have_c0_ = false;
  }
}

void SpeechPipeline::on_thinker_token(int32_t id) {
  if (!started_) throw Error("speech: on_thinker_token() before start()");
  if (done_ || text_done_) return;
  if (id == m_.config().ids.im_end) {
    finish_text();
    return;
  }
  text_.push_back(id);
  if (!prefilled_) prefill(text_.front());
  advance();
}

void SpeechPipeline::finish_text() {
  if (!started_) throw Error("speech: finish_text() before start()");
  text_done_ = true;
  if (done_) return;
  if (text_.empty()) {  // nothing to say
    done_ = true;
    return;
  }
  if (!prefilled_) prefill(text_.front());
  advance();
}

}  // namespace omni

namespace omni {

void SpeechPipeline::say(const std::vector<int32_t>& text_ids, const std::vector<int32_t>& assistant_header,
                         const SpeechOptions& opt) {
  start({}, Tensor(), assistant_header, opt);
  for (int32_t id : text_ids) {
    if (done_) break;
    on_thinker_token(id);
  }
  finish_text();
}

}  // namespace omni
