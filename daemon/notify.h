// systemd service notifications (sd_notify): READY, STATUS, EXTEND_TIMEOUT_USEC, WATCHDOG,
// RELOADING, STOPPING. Without $NOTIFY_SOCKET (run by hand) every call is a no-op.
#pragma once
#include <cstdint>
#include <string>

namespace omnid {

class ServiceNotifier {
 public:
  ServiceNotifier();
  void ready(const std::string& status);
  void status(const std::string& status);
  // Asks systemd for `usec` more start-up (or stop) time from now: sent while the model loads.
  void extend_timeout(uint64_t usec, const std::string& status);
  void reloading(const std::string& status);
  void stopping(const std::string& status);
  void watchdog_ping();
  // WatchdogSec= of the unit in microseconds, 0 when the watchdog is off.
  uint64_t watchdog_usec() const { return watchdog_usec_; }

 private:
  void send(const std::string& message);
  uint64_t watchdog_usec_ = 0;
};

}  // namespace omnid
