// AudioInput: everything the Session needs to put a spoken clip into the thinker's prompt.
//   1. token_count(samples): how many <|audio_pad|> tokens the prompt gets (docs/model.md §5.2);
//   2. encode(wave): mel features + audio encoder, once per clip, into a buffer sized at load;
//   3. after each thinker embed() of a prefill chunk: fill_prefill_chunk(ids, begin, x)
//      overwrites that chunk's <|audio_pad|> rows with the encoded rows, in order (HF's
//      masked_scatter, docs/model.md §3.2). The n-th pad of `ids` gets encoder row n, whatever the chunking.
// The waveform must already be mono float at 16 kHz (audio/io's load_wav_mono does that).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/audio_encoder.h"
#include "backend.h"
#include "io/checkpoint.h"
#include "model/mel.h"
#include "io/model_config.h"

namespace omni {

class AudioInput {
 public:
  // Reads <model_dir>/preprocessor_config.json and the thinker.audio_tower.* weights; allocates
  // room for clips of up to `max_audio_tokens` tokens (13 per second; at most the context).
  AudioInput(Backend& be, const Checkpoint& ck, const ModelConfig& cfg, const std::string& model_dir,
             int max_audio_tokens);

  int sample_rate() const { return mel_.config().sampling_rate; }
  int max_audio_tokens() const { return max_tokens_; }
  // Audio tokens for a clip of `num_samples` samples. Throws omni::Error for a clip too short
  // for the front end or too long for max_audio_tokens, so the prompt is never built for it.
  int token_count(size_t num_samples) const;

  // Encodes one clip (replacing whatever was held); returns its token count.
  int encode(const float* wave, size_t num_samples);
  // Encodes a further clip after those held, for prompts with several clips (e.g. re-prefilling
  // a history of spoken turns): clip k's rows follow clip k-1's, as its pads do in the prompt.
  // Each clip is encoded alone (HF batches the clips of one prompt, which changes the last
  // token of a clip under 1 s by ~1e-5 when another clip is longer, docs/model.md §9.8).
  int append(const float* wave, size_t num_samples);
  void clear() { encoded_ = 0; }
  int encoded_tokens() const { return encoded_; }
  // `x` ([count, hidden], backend tensor) holds the embeddings of ids[begin, begin + count).
  // Every <|audio_pad|> row among them is overwritten with the encoded row of the same rank
  // among all pads of `ids`. A chunk without pads is left alone, so every prefill chunk can be
  // passed; one with pads throws unless `ids` holds exactly encoded_tokens() pads.
  void fill_prefill_chunk(const std::vector<int32_t>& ids, size_t begin, const Tensor& x) const;

  MelFrontend& mel() { return mel_; }
  AudioEncoder& encoder() { return encoder_; }

 private:
  Backend& be_;
  int32_t audio_pad_id_;
  int max_tokens_;
  MelFrontend mel_;
  AudioEncoder encoder_;
  Tensor encoded_rows_;  // [max_audio_tokens, output_dim]
  int encoded_ = 0;
};

}  // namespace omni
