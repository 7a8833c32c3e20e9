// Tokenizer::load_for_model: a model directory's tokenizer, its ids bounded by the model's vocabulary.
// Apart from tokenizer_load.cpp because it reads config.json (the fuzz targets build the loader alone).
#include <sys/stat.h>

#include "io/model_config.h"
#include "omni/tokenizer.h"

namespace omni {

std::unique_ptr<Tokenizer> Tokenizer::load_for_model(const std::string& model_dir) {
  const std::string config = model_dir + "/config.json";
  struct stat st {};
  if (::stat(config.c_str(), &st) != 0) return load(model_dir + "/tokenizer.json");
  return load(model_dir + "/tokenizer.json", ModelConfig::load(config).thinker.vocab_size,
              "thinker_config.text_config.vocab_size in " + config);
}

}  // namespace omni
