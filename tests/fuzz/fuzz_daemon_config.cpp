// libFuzzer target: the daemon's YAML configuration (omnid::parse_config, daemon/config.cpp, over yaml-cpp).
// Property: a ConfigError listing the problems, or a config; never another exception or a crash, so a
// hostile /etc/omnid/omnid.yaml or a bad SIGHUP reload can only be refused.
#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    omnid::parse_config(text, "<fuzz>.yaml");
  } catch (const omnid::ConfigError&) {
  }
  return 0;
}
