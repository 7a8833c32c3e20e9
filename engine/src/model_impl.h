// The engine's Model and Session implementations behind engine.h.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "audio_input.h"
#include "backend.h"
#include "chat.h"
#include "grammar/tool_calls.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "model/thinker.h"
#include "omni/engine.h"
#include "omni/tokenizer.h"
#include "speech.h"
#include "vision/vision_input.h"

namespace omni {

class ModelImpl : public Model {
 public:
  explicit ModelImpl(const LoadOptions& opt);
  std::unique_ptr<Session> new_session(const SessionOptions& opt) override;
  std::vector<int32_t> tokenize(std::string_view text) const override { return tokenizer_->encode(text); }
  std::vector<int32_t> render_prompt(const std::string& system, const UserTurn& turn) const override;
  std::string decode(const std::vector<int32_t>& ids) const override { return tokenizer_->decode(ids); }
  bool has_talker() const override { return speech_ != nullptr; }
  bool has_vision() const override { return cfg_.has_vision; }
  void load_vision() override { vision(); }
  std::vector<std::string> speakers() const override;
  int speech_sample_rate() const override { return 24000; }
  std::string device_name() const override { return backend_->name(); }
  double load_ms() const override { return load_ms_; }
  Sampling default_sampling() const override { return default_sampling_; }
  uint64_t load_bytes() const override { return load_bytes_; }

  // For sessions.
  Backend& backend() { return *backend_; }
  Thinker& thinker() { return *thinker_; }
  const ModelConfig& config() const { return cfg_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int context_tokens() const { return context_tokens_; }
  // Number of <|audio_pad|> tokens for a 16 kHz clip; throws for clips out of range.
  int audio_tokens_for(size_t samples_16k) const { return audio_->token_count(samples_16k); }
  AudioInput& audio() { return *audio_; }
  SpeechModel* speech() { return speech_.get(); }  // null when the talker is not loaded
  // The vision tower and its buffers, loaded on first use (a deployment that never sees an image does not pay
  // for them); throws omni::Error when the checkpoint has no vision tower or its preprocessor does not fit it.
  VisionInput& vision();
  // Decodes and preprocesses a turn's images, in order; an ImageError names the image (its path, or
  // "images[i]"). Nothing of a session changes, so a bad image leaves the conversation as it was.
  std::vector<std::shared_ptr<const VisualPatches>> prepare_images(const std::vector<ImageInput>& images);
  // A video's patches (its frames read and preprocessed, VideoInput); throws ImageError naming the folder or frame,
  // ContextFullError when it needs more tokens than the context holds.
  std::shared_ptr<const VisualPatches> prepare_video(const VideoInput& video);
  // A user turn's prompt ids (its user part and the generation prompt, no system turn) and what fills them: the
  // clips in prompt order (the turn's audio, then the videos' soundtracks) and the images and videos in prompt
  // order. Everything is read and checked here, before a session changes anything.
  struct PreparedTurn {
    std::vector<int32_t> ids;
    std::vector<std::vector<float>> clips;
    std::vector<std::shared_ptr<const VisualPatches>> visuals;
  };
  PreparedTurn prepare_turn(const UserTurn& turn);
  // The prompt part of a prepared image or video: its pad count, and a video's pairs and seconds per pair.
  ChatPart visual_part(const VisualPatches& p);
  // A video's soundtrack (use_audio_in_video): its <|audio_pad|> count, its clip appended to `clips`; -1 without
  // one. An unusable clip throws omni::Error prefixed with `where`.
  int soundtrack(const VideoInput& video, const std::string& where, std::vector<std::vector<float>>& clips);
  // Throws ContextFullError "<what> N images and videos need T tokens; ..." when `visuals` need more tokens than
  // the context holds.
  void check_visual_tokens(const std::vector<std::shared_ptr<const VisualPatches>>& visuals, const std::string& what);
  // The vocabulary's byte strings for constrained decoding, built on first use (thread-safe).
  std::shared_ptr<const TokenTable> token_table();

 private:
  std::unique_ptr<Backend> backend_;
  ModelConfig cfg_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Thinker> thinker_;
  std::unique_ptr<AudioInput> audio_;
  std::unique_ptr<SpeechModel> speech_;
  std::mutex vision_mu_;
  std::unique_ptr<VisionInput> vision_;
  std::string model_dir_;
  int context_tokens_ = 0;
  double load_ms_ = 0;
  Sampling default_sampling_;
  uint64_t load_bytes_ = 0;
  std::mutex token_table_mu_;
  std::shared_ptr<const TokenTable> token_table_;
};

// What Session::mark() saves: the session and cache epoch it belongs to, and the lengths and the
// small per-turn state that a rollback restores.
struct SessionImplMark : SessionMarkState {
  const void* session = nullptr;
  uint64_t epoch = 0;         // SessionImpl::epoch_ when marked; a rebuild of the cache changes it
  int used = 0;               // tokens in the cache (== context_ids_.size())
  std::vector<int32_t> pending;
  size_t history_turns = 0;
  size_t last_turn_ids = 0;   // ids of the last history turn (respond() appends pending_ to it)
  float rope_delta = 0;
  bool system_in_cache = false;
};

// One conversation: its KV cache, its history, and the turn being generated.
class SessionImpl : public Session {
 public:
  SessionImpl(ModelImpl& model, const SessionOptions& opt);
  TurnResult respond(const UserTurn& turn, const GenerateOptions& opt, const Callbacks& cb) override;
  TurnResult generate_from_ids(const std::vector<int32_t>& ids, const GenerateOptions& opt,
                               const Callbacks& cb) override;
  TurnResult say(const std::string& text, const GenerateOptions& opt, const Callbacks& cb) override;
  void cancel() override {
    cancelled_.store(true);
    if (SpeechPipeline* sp = active_speech_.load()) sp->cancel();
  }
  void reset() override;
  void set_system_prompt(const std::string& s) override;
  void set_tools(const std::string& tools_json) override;
  TurnResult respond_tool_results(const std::vector<ToolResult>& results, const GenerateOptions& opt,
                                  const Callbacks& cb) override;
  TurnResult respond_messages(const std::vector<Message>& messages, const GenerateOptions& opt,
                              const Callbacks& cb) override;
  int context_used() const override { return used_; }
  SessionMark mark() const override;
  void rollback(const SessionMark& mark) override;

 private:
  // One past turn as it sits in the cache (kept to rebuild the cache after trimming).
  struct HistoryTurn {
    std::vector<int32_t> ids;
    std::vector<std::vector<float>> clips;  // the clips behind the turn's <|audio_pad|> spans, in order
    std::vector<std::shared_ptr<const VisualPatches>> images;  // the images behind its <|image_pad|> rows
  };
  // Feeds `ids` into cache slots used_.. in chunks; leaves the logits of the last row in logits_. With
  // `audio_spans` (each clip's token count, in order), the clips the audio input holds fill the <|audio_pad|>
  // rows; with `images`, the images the vision input
  // holds fill the <|image_pad|> rows and add their DeepStack rows. Rotary positions follow docs/model.md §3.5:
  // text continues at used_ + rope_delta_, image and video spans take their grids' 3-row positions, and rope_delta_
  // (a float: a video's time row need not be whole) becomes the next position less the next slot. Throws if the
  // context is full.
  void prefill(const std::vector<int32_t>& ids, const std::vector<int>& audio_spans = {}, bool images = false);
  // Encodes `clips` into the audio input (replacing what it held); returns each clip's token count.
  std::vector<int> encode_clips(const std::vector<std::vector<float>>& clips);
  // Encodes `images` into the vision input (replacing what it held).
  void encode_images(const std::vector<std::shared_ptr<const VisualPatches>>& images);
  // Generates after a prefill; fills result.tokens/text/stop. With `speech`, every token is
  // handed to the speech pipeline as it is made (the talker runs interleaved).
  // With `con`, every step's logits are masked to the tokens it allows (computed while the step runs).
  void decode_loop(const GenerateOptions& opt, const Callbacks& cb, TurnResult& result,
                   SpeechPipeline* speech = nullptr, DecodeConstraint* con = nullptr);
  // A speech pipeline started for the turn whose prompt ends the context (user part of every
  // user turn with its accept-layer hidden rows, docs/model.md §3.7); `turn_images` are the images of that
  // turn (the earlier turns' come from history_). Null when opt.speak is false.
  std::unique_ptr<SpeechPipeline> start_speech(const GenerateOptions& opt, const Callbacks& cb,
                                               const std::vector<int32_t>& header,
                                               const std::vector<std::shared_ptr<const VisualPatches>>& turn_images);
  void finish_speech(SpeechPipeline& sp, TurnResult& r);
  SpeechOptions speech_options(const GenerateOptions& opt) const;
  std::unique_ptr<SpeechPipeline> make_speech(const Callbacks& cb);
  // The system turn: the system prompt and, with tools, their list (docs/model.md "Tool calls").
  std::vector<int32_t> system_ids() const;
  // Generates the answer to a user turn (its ids, the system turn first when the cache is new).
  TurnResult run_turn(std::vector<int32_t> turn_ids, std::vector<std::vector<float>> clips, const GenerateOptions& opt,
                      const Callbacks& cb, const std::vector<std::shared_ptr<const VisualPatches>>& images = {});
  // The constraint for this turn's options (null: unconstrained).
  std::unique_ptr<DecodeConstraint> make_constraint(const GenerateOptions& opt);
  // Drops the oldest history turns until `needed` more tokens fit, then rebuilds the cache.
  // With `drop` false, throws instead (before changing anything).
  void make_room(int needed, bool drop);
  // One decode step for the token in ids_dev_[0] at slot pos_dev_[0]: embed, decoder, lm_head. With `table`,
  // the rotary comes from rotary_'s row 0 (a position other than the slot, after an image).
  void decode_step(bool table);

  ModelImpl& model_;
  Backend& be_;
  Thinker& thinker_;
  std::string system_prompt_;
  std::vector<std::string> tool_lines_;       // the tools as listed in the system turn
  std::vector<JsonGrammar::Tool> tools_;      // compiled, for constrained calls
  std::vector<KVCache> caches_;
  Tensor ids_dev_, pos_dev_, x_, logits_;
  RotaryRows rotary_;  // per-row rotary where positions are not the slots
  // Speech: hidden_states[accept_hidden_layer] of every cache slot, and room to gather the
  // user-part rows of it for the talker.
  Tensor accept_hidden_, talker_rows_;
  std::vector<int32_t> context_ids_;  // the ids in the cache, slot by slot
  std::chrono::steady_clock::time_point first_token_time_;
  std::atomic<SpeechPipeline*> active_speech_{nullptr};
  std::vector<int32_t> pos_host_;
  int used_ = 0;                   // tokens in the cache
  int decode_graph_ = -1;          // the captured decode step (backends with graphs)
  int decode_graph_table_ = -1;    // the same with the rotary from rotary_
  // Rotary position of the next slot less the slot (docs/model.md §3.5): 0 for text and audio, the span's
  // max + 1 less its end after an image (negative: an image of h×w patches takes h·w/4 slots but advances
  // the positions by max(h, w)/2).
  float rope_delta_ = 0;
  std::vector<int32_t> pending_;   // ids to feed before the next turn (end of the last answer)
  std::vector<HistoryTurn> history_;
  bool system_in_cache_ = false;
  // Counts rebuilds of the cache from scratch (reset, dropping the oldest turns): a mark from an
  // earlier epoch describes slots that no longer hold what it saved.
  uint64_t epoch_ = 0;
  std::atomic<bool> cancelled_{false};
};

}  // namespace omni
