// When a lost device (the microphone's pipeline, the camera) is rebuilt: 0.5 s after the loss, doubling with each
// failed rebuild up to 30 s, and back to 0.5 s after a device that ran 10 s. Also counts the rebuilds and the time
// down, for the device.restored event. Event loop only.
#pragma once
#include <algorithm>
#include <cstdint>

namespace omnid {

class RebuildBackoff {
 public:
  static constexpr int kFirstMs = 500;
  static constexpr int kMaxMs = 30000;
  static constexpr int64_t kHealthyRunMs = 10000;

  // The device, started at `started_ms`, was lost at `now_ms`. true: a new loss (not a failed rebuild).
  bool lost(int64_t now_ms, int64_t started_ms) {
    const bool first = !restoring_;
    if (first) {
      lost_ms_ = now_ms;
      attempts_ = 0;
    }
    const bool ran_well = now_ms - started_ms >= kHealthyRunMs;
    backoff_ms_ = (backoff_ms_ == 0 || ran_well) ? kFirstMs : std::min(backoff_ms_ * 2, kMaxMs);
    retry_at_ms_ = now_ms + backoff_ms_;
    return first;
  }
  bool due(int64_t now_ms) const { return now_ms >= retry_at_ms_; }
  // A rebuild starts.
  void attempt() {
    ++attempts_;
    restoring_ = true;
  }
  // Rebuilt after a loss and not yet reported working.
  bool restoring() const { return restoring_; }
  // The rebuilt device works: the time it was down.
  int64_t restored(int64_t now_ms) {
    restoring_ = false;
    return now_ms - lost_ms_;
  }
  // Stopped on purpose: no loss pending.
  void clear() { restoring_ = false; }
  int backoff_ms() const { return backoff_ms_; }
  int attempts() const { return attempts_; }

 private:
  bool restoring_ = false;
  int64_t lost_ms_ = 0, retry_at_ms_ = 0;
  int backoff_ms_ = 0, attempts_ = 0;
};

}  // namespace omnid
