// Log lines on stderr. Under systemd ($JOURNAL_STREAM set) each line starts with "<N>"
// (sd-daemon.h's SD_ERR/SD_WARNING/SD_INFO) so the journal records its priority.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace omnid {

inline void log_line(int priority, const char* format, ...) __attribute__((format(printf, 2, 3)));
inline void log_line(int priority, const char* format, ...) {
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  char line[2048];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof line, format, args);
  va_end(args);
  if (journal)
    std::fprintf(stderr, "<%d>%s\n", priority, line);
  else
    std::fprintf(stderr, "omnid: %s\n", line);
}

}  // namespace omnid

#define log_error(...) ::omnid::log_line(3, __VA_ARGS__)
#define log_warning(...) ::omnid::log_line(4, __VA_ARGS__)
#define log_info(...) ::omnid::log_line(6, __VA_ARGS__)
