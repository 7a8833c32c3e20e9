#include "audio_input.h"

#include "omni/errors.h"

namespace omni {

AudioInput::AudioInput(Backend& be, const Checkpoint& ck, const ModelConfig& cfg, const std::string& model_dir)
    : mel_(MelConfig::load(model_dir + "/preprocessor_config.json")),
      encoder_(be, cfg.audio, load_audio_encoder_weights(ck, be, cfg.audio)) {
  if (mel_.config().feature_size != cfg.audio.num_mel_bins)
    throw ConfigError(model_dir + "/preprocessor_config.json: feature_size " +
                      std::to_string(mel_.config().feature_size) + " does not match the audio encoder's num_mel_bins " +
                      std::to_string(cfg.audio.num_mel_bins));
}

int AudioInput::token_count(size_t num_samples) const {
  if (num_samples < mel_.min_samples())
    throw Error("audio input: the clip has " + std::to_string(num_samples) + " samples; at least " +
                std::to_string(mel_.min_samples()) + " are needed");
  return encoder_.token_count(mel_.frame_count(num_samples));
}

std::vector<int64_t> AudioInput::audio_pad_rows(const std::vector<int32_t>& ids, int32_t audio_pad_id) {
  std::vector<int64_t> rows;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == audio_pad_id) rows.push_back(int64_t(i));
  return rows;
}

void AudioInput::fill_embeddings(const float* wave, size_t num_samples, const Tensor& embeddings,
                                 const std::vector<int64_t>& rows) {
  const MelFeatures features = mel_.compute(wave, num_samples);
  encoder_.encode_into_rows(features, embeddings, rows);
}

}  // namespace omni
