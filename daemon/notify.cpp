#include "daemon/notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdio>

namespace omnid {

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
}

void ServiceNotifier::send(const std::string& message) {
  const int rc = sd_notify(0, message.c_str());
  if (rc < 0) std::fprintf(stderr, "omnid: sd_notify failed (%d) for '%s'\n", rc, message.c_str());
}

void ServiceNotifier::ready(const std::string& status) { send("READY=1\nSTATUS=" + status); }

void ServiceNotifier::status(const std::string& status) { send("STATUS=" + status); }

void ServiceNotifier::extend_timeout(uint64_t usec, const std::string& status) {
  send("EXTEND_TIMEOUT_USEC=" + std::to_string(usec) + "\nSTATUS=" + status);
}

void ServiceNotifier::reloading(const std::string& status) {
  // MONOTONIC_USEC lets systemd >= 253 match this reload to the `systemctl reload` that asked for it.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now) + "\nSTATUS=" + status);
}

void ServiceNotifier::stopping(const std::string& status) { send("STOPPING=1\nSTATUS=" + status); }

void ServiceNotifier::watchdog_ping() { send("WATCHDOG=1"); }

}  // namespace omnid
