// Assertions shared by the protocol's request-validation tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "ipc/protocol.h"

namespace omni::ipc::test_util {

// Asserts a refusal with `code` whose message contains `needle`.
inline void expect_error(const ParseResult& r, ErrorCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok());
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(to_string(r.error->code), to_string(code)) << r.error->message;
  EXPECT_NE(r.error->message.find(needle), std::string::npos) << "message: " << r.error->message;
}

// The parsed command of an accepted request, as T.
template <typename T>
const T& command_of(const ParseResult& r) {
  EXPECT_TRUE(r.ok()) << (r.error ? r.error->message : "");
  return std::get<T>(r.request->command);
}

}  // namespace omni::ipc::test_util
