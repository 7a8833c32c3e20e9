#include "audio_input.h"

#include <algorithm>

#include "omni/errors.h"

namespace omni {

AudioInput::AudioInput(Backend& be, const Checkpoint& ck, const ModelConfig& cfg, const std::string& model_dir,
                       int max_audio_tokens)
    : be_(be),
      audio_pad_id_(cfg.ids.audio_pad),
      max_tokens_(max_audio_tokens),
      mel_(MelConfig::load(model_dir + "/preprocessor_config.json")),
      encoder_(be, cfg.audio, load_audio_encoder_weights(ck, be, cfg.audio)) {
  if (mel_.config().feature_size != cfg.audio.num_mel_bins)
    throw ConfigError(model_dir + "/preprocessor_config.json: feature_size " +
                      std::to_string(mel_.config().feature_size) + " does not match the audio encoder's num_mel_bins " +
                      std::to_string(cfg.audio.num_mel_bins));
  if (max_audio_tokens <= 0) throw Error("audio input: max_audio_tokens must be positive");
  encoded_rows_ = be.alloc({int64_t(max_audio_tokens), int64_t(cfg.audio.output_dim)});
}

int AudioInput::token_count(size_t num_samples) const {
  if (num_samples < mel_.min_samples())
    throw Error("audio input: the clip has " + std::to_string(num_samples) + " samples; at least " +
                std::to_string(mel_.min_samples()) + " are needed");
  const int n = encoder_.token_count(mel_.frame_count(num_samples));
  if (n > max_tokens_)
    throw Error("audio input: the clip (" + std::to_string(double(num_samples) / sample_rate()) + " s) needs " +
                std::to_string(n) + " audio tokens; at most " + std::to_string(max_tokens_) + " fit");
  return n;
}

int AudioInput::encode(const float* wave, size_t num_samples) {
  clear();
  return append(wave, num_samples);
}

int AudioInput::append(const float* wave, size_t num_samples) {
  const int n = token_count(num_samples);
  if (encoded_ + n > max_tokens_)
    throw Error("audio input: " + std::to_string(encoded_) + " audio tokens are held and this clip adds " +
                std::to_string(n) + "; at most " + std::to_string(max_tokens_) + " fit");
  const MelFeatures features = mel_.compute(wave, num_samples);
  encoder_.encode(features, encoded_rows_.rows(encoded_, n));
  encoded_ += n;
  return n;
}

void AudioInput::fill_prefill_chunk(const std::vector<int32_t>& ids, size_t begin, const Tensor& x) const {
  const size_t count = size_t(x.dim(0));
  if (begin + count > ids.size())
    throw Error("audio input: chunk [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                ") is outside the " + std::to_string(ids.size()) + " prompt ids");
  const auto chunk_begin = ids.begin() + long(begin), chunk_end = chunk_begin + long(count);
  if (std::find(chunk_begin, chunk_end, audio_pad_id_) == chunk_end) return;  // text-only chunk
  const int64_t pads = std::count(ids.begin(), ids.end(), audio_pad_id_);
  if (pads != encoded_)
    throw Error("audio input: the prompt has " + std::to_string(pads) + " <|audio_pad|> tokens but the encoded clip " +
                "has " + std::to_string(encoded_) + " audio tokens");
  int64_t rank = std::count(ids.begin(), ids.begin() + long(begin), audio_pad_id_);
  // Copy runs of consecutive pads at once (a clip's pads are one run in a rendered prompt).
  for (size_t i = 0; i < count;) {
    if (ids[begin + i] != audio_pad_id_) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < count && ids[begin + j] == audio_pad_id_) ++j;
    const int64_t run = int64_t(j - i);
    be_.copy(encoded_rows_.rows(rank, run), x.rows(int64_t(i), run));
    rank += run;
    i = j;
  }
}

}  // namespace omni
