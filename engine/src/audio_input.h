// AudioInput: everything the Session needs to put a spoken clip into the thinker's prompt.
//   1. token_count(samples)  -> how many <|audio_pad|> tokens to write into the prompt;
//   2. after embed(ids):  fill_embeddings(wave, embeddings, audio_pad_rows(ids, pad_id))
//      overwrites those rows with the audio encoder's output (HF's masked_scatter, spec 3.2).
// The waveform must already be mono float at 16 kHz (audio/io's load_wav_mono does that).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "audio_encoder.h"
#include "backend.h"
#include "checkpoint.h"
#include "mel.h"
#include "model_config.h"

namespace omni {

class AudioInput {
 public:
  // Reads <model_dir>/preprocessor_config.json and the thinker.audio_tower.* weights.
  AudioInput(Backend& be, const Checkpoint& ck, const ModelConfig& cfg, const std::string& model_dir);

  int sample_rate() const { return mel_.config().sampling_rate; }
  // Audio tokens for a clip of `num_samples` samples; throws omni::Error if the clip is too short.
  int token_count(size_t num_samples) const;
  // Rows of `ids` holding `audio_pad_id`, in order.
  static std::vector<int64_t> audio_pad_rows(const std::vector<int32_t>& ids, int32_t audio_pad_id);
  // Features + encoder for one clip, written into `embeddings` ([S, hidden], backend tensor)
  // at `rows` (exactly token_count(num_samples) of them; several clips: call once per clip with
  // its own rows). Throws omni::Error naming the mismatch otherwise.
  void fill_embeddings(const float* wave, size_t num_samples, const Tensor& embeddings,
                       const std::vector<int64_t>& rows);

  MelFrontend& mel() { return mel_; }
  AudioEncoder& encoder() { return encoder_; }

 private:
  MelFrontend mel_;
  AudioEncoder encoder_;
};

}  // namespace omni
