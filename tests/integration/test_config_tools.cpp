// The tools section of the configuration (docs/config.md "tools"): read, defaults, and out-of-range
// values named with file, line and key.
#include <gtest/gtest.h>

#include "daemon/config.h"

using omnid::ConfigError;
using omnid::parse_config;

namespace {

std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ConfigTools, KeysAreReadWithTheirDefaults) {
  const auto d = parse_config("", "t.yaml");
  EXPECT_EQ(d.tools.call_timeout_ms, 10000);
  EXPECT_EQ(d.tools.max_rounds, 4);
  const auto c = parse_config("tools:\n  call_timeout_ms: 2500\n  max_rounds: 1\n", "t.yaml");
  EXPECT_EQ(c.tools.call_timeout_ms, 2500);
  EXPECT_EQ(c.tools.max_rounds, 1);
}

TEST(ConfigTools, BadValuesNameTheKeyAndLine) {
  EXPECT_NE(error_of("tools:\n  call_timeout_ms: 50\n").find("t.yaml:2: tools.call_timeout_ms"), std::string::npos)
      << error_of("tools:\n  call_timeout_ms: 50\n");
  EXPECT_NE(error_of("tools:\n  max_rounds: 0\n").find("tools.max_rounds"), std::string::npos);
  EXPECT_NE(error_of("tools:\n  max_rounds: 17\n").find("tools.max_rounds"), std::string::npos);
  EXPECT_NE(error_of("tools:\n  max_rounds: many\n").find("tools.max_rounds"), std::string::npos);
  EXPECT_NE(error_of("tools:\n  timeout: 5\n").find("tools.timeout: unknown key (known here: call_timeout_ms, max_rounds)"),
            std::string::npos)
      << error_of("tools:\n  timeout: 5\n");
  EXPECT_NE(error_of("tools: 5\n").find("tools"), std::string::npos);
}
