// libFuzzer target: config.json (ModelConfig::parse, engine/src/io/model_config.cpp).
// Property: a ConfigError naming the problem or a parsed config; never another exception or a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "io/model_config.h"
#include "omni/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    omni::ModelConfig::parse(text, "<fuzz>/config.json");
  } catch (const omni::ConfigError&) {
  }
  return 0;
}
