// Speech output for one assistant turn (docs/model.md §3.7-§3.9), streamed: the talker steps as soon as
// the text it needs exists, the code predictor completes each 80 ms frame, and code2wav turns
// frames into 24 kHz samples that are handed out as soon as they are final.
//
// Use (one turn, on the thread that runs the thinker):
//   SpeechPipeline sp(speech_model, thinker.embed_table(), on_audio);
//   sp.start(user_ids, user_hidden, {im_start, assistant, '\n'}, options);
//   for each generated thinker token t: sp.on_thinker_token(t);   // runs talker steps
//   sp.finish_text();                                              // speaks the rest, until codec EOS
//
// Differences from HF (documented in docs/architecture.md, "Speech pipeline"):
//  * HF never feeds the thinker's LAST generated token to the talker (it has no hidden state,
//    docs/model.md §9.12). With a normal <|im_end|> stop that token is <|im_end|> and nothing differs; when
//    the thinker stops on its token limit HF drops the final text token, while this pipeline
//    speaks every generated text token.
//  * An answer with no text token (the thinker's first token is <|im_end|>) produces no speech.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/code2wav.h"
#include "model/code_predictor.h"
#include "model/mrope_positions.h"
#include "model/talker.h"

namespace omni {

// The loaded speech stack of a model plus the buffers of one speaking turn (one turn at a time
// per SpeechModel).
class SpeechModel {
 public:
  // `max_prompt_rows`: longest talker user part (+9 rows are added); `max_frames`: most frames per turn.
  SpeechModel(const Checkpoint& ck, Backend& be, const ModelConfig& cfg, int max_prompt_rows, int max_frames,
              int code2wav_push_frames = 1, DType talker_format = DType::BF16);
  Backend& backend() { return be_; }
  const ModelConfig& config() const { return cfg_; }
  Talker& talker() { return talker_; }
  CodePredictor& code_predictor() { return predictor_; }
  Code2WavDecoder& code2wav_decoder() { return decoder_; }
  int max_frames() const { return max_frames_; }
  int push_frames() const { return push_frames_; }
  int sample_rate() const { return 24000; }
  // Lower-case speaker name -> codec id; throws Error listing the known names.
  int speaker_id(const std::string& name) const;

  // Device buffers of one speaking turn, allocated here once.
  struct Scratch {
    Tensor ids, positions;      // I32 [max_rows]
    Tensor thinker_rows;        // [max_rows, thinker_hidden]
    Tensor x, tmp;              // [max_rows, hidden]
    Tensor tts;                 // [3, hidden]: TP(E[tts_pad, tts_bos, tts_eos])
    Tensor c0_embed, codec_sum, step_in, h_last;  // [1, hidden]
    Tensor logits;              // [1, talker vocab]
  };
  Scratch& scratch() { return scratch_; }
  RotaryRows& rotary() { return rotary_; }  // the talker's rows with 3-row positions (image spans)

 private:
  Backend& be_;
  ModelConfig cfg_;
  Talker talker_;
  CodePredictor predictor_;
  Code2Wav code2wav_;
  Code2WavDecoder decoder_;
  int max_frames_, push_frames_;
  Scratch scratch_;
  RotaryRows rotary_;
};

struct SpeechOptions {
  std::string speaker = "ethan";
  // The talker's sampling; HF's defaults (talker_do_sample=True, temperature 0.9, top-k 50, penalty 1.05).
  // Greedy makes the code predictor greedy too.
  Sampling sampling{.greedy = false, .temperature = 0.9f, .top_k = 50, .top_p = 1.0f, .repetition_penalty = 1.05f};
  int max_frames = 4096;  // stop after this many frames (HF talker_max_new_tokens = max_frames + 1)
};

// Positions of `prompt` that belong to user turns (HF: a token belongs to the turn whose
// <|im_start|> precedes it; the turn is a user turn when the id after that <|im_start|> is
// `user`), in order: the talker's user part is these ids.
std::vector<int> talker_user_positions(const std::vector<int32_t>& prompt, const TokenIds& ids);

class SpeechPipeline {
 public:
  using AudioSink = std::function<void(const float* samples, size_t count)>;
  SpeechPipeline(SpeechModel& model, const Tensor& thinker_embed_table, AudioSink on_audio);

  // user_ids: the prompt ids of every user turn, in order (header, content, <|im_end|>, "\n").
  // user_hidden: [P, thinker_hidden] accept-layer hidden states for those ids; only rows of
  // audio/image/video placeholders are read, so it may be empty when there are none.
  // assistant_header: the 3 ids <|im_start|> assistant "\n".
  // images, videos: the grids of the image and video spans in user_ids, each in order (empty when there are
  // none; a video's seconds_per_pair set). With them the talker's rows take 3-row positions as transformers'
  // get_rope_index gives them over the user part and the assistant rows (docs/model.md §3.7), and each decode
  // step continues at its slot + that prompt's delta.
  void start(const std::vector<int32_t>& user_ids, const Tensor& user_hidden,
             const std::vector<int32_t>& assistant_header, const SpeechOptions& opt,
             const std::vector<VisualSpan>& images = {}, const std::vector<VisualSpan>& videos = {});
  // Each generated thinker token, in order. <|im_end|> ends the text (same as finish_text()).
  void on_thinker_token(int32_t id);
  // The thinker stopped: speaks the remaining text and runs until codec EOS or max_frames.
  void finish_text();
  void cancel() { cancelled_.store(true); }  // any thread; the pipeline stops between steps
  // Speaks `text_ids` verbatim with no thinker run (Session::say): the talker sees no user part
  // (there is no conversation to condition on) and the assistant part is built from the text
  // exactly as if the thinker had generated it and stopped with <|im_end|>.
  void say(const std::vector<int32_t>& text_ids, const std::vector<int32_t>& assistant_header,
           const SpeechOptions& opt);

  bool done() const { return done_; }
  bool cancelled() const { return cancelled_.load(); }
  const std::vector<std::vector<int32_t>>& frames() const { return frames_; }  // [T][Q] codes
  const std::vector<int32_t>& talker_tokens() const { return talker_tokens_; }  // codebook-0 incl. EOS
  size_t samples() const { return samples_; }
  bool has_audio() const { return samples_ > 0; }
  std::chrono::steady_clock::time_point first_audio_time() const { return first_audio_; }
  bool reached_eos() const { return eos_; }
  // For tests: keep a host copy of the prefill rows [S, hidden] and the trailing text rows.
  void keep_inputs_for_tests(bool on) { keep_inputs_ = on; }
  const std::vector<float>& prefill_rows() const { return prefill_host_; }
  const std::vector<float>& text_rows() const { return text_rows_host_; }  // one row per decode step

 private:
  void prefill(int32_t first_text);
  void advance();  // runs every talker step whose inputs exist
  bool text_input(size_t step, Tensor row);  // trailing text row for `step`; false: not known yet
  void emit(const std::vector<float>& samples);
  int32_t draw(const Tensor& logits, const SamplingParams& p, const std::vector<int32_t>& history);

  SpeechModel& m_;
  Backend& be_;
  Tensor embed_table_;
  AudioSink on_audio_;
  SpeechOptions opt_;
  SamplingParams talker_sp_, predictor_sp_;
  std::mt19937_64 rng_;
  std::unique_ptr<Code2WavStream> stream_;

  std::vector<int32_t> user_ids_, header_;
  Tensor user_hidden_;
  std::vector<int32_t> text_;  // generated text tokens (g1, g2, ...)
  bool text_done_ = false, started_ = false, prefilled_ = false, done_ = false, eos_ = false;
  bool have_c0_ = false;
  int32_t c0_ = 0;
  size_t step_ = 0;  // talker decode steps done (= index into the trailing text)
  int prefill_rows_ = 0;
  // With image spans: the prefill rows' 3-row positions (empty without), and the decode steps' offset from their
  // slot.
  MropePositions rope_;
  float rope_delta_ = 0;
  std::atomic<bool> cancelled_{false};
  std::vector<std::vector<int32_t>> frames_;
  std::vector<int32_t> talker_tokens_;
  size_t samples_ = 0;
  std::chrono::steady_clock::time_point first_audio_{};
  bool keep_inputs_ = false;
  std::vector<float> prefill_host_, text_rows_host_;
  SpeechModel::Scratch& s_;
};

}  // namespace omni
