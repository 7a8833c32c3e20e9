// Whether this test binary was built with AddressSanitizer (make test-asan, GCC or Clang): speed bounds and
// memory measurements say nothing about the code there (instrumented allocations, a quarantine of freed memory).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif
