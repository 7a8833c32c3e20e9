#include "daemon/event_loop.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "daemon/log.h"

namespace omnid {
namespace {

// A failure inside one task is a bug or a device error to log, never a reason for the daemon to die.
void run_guarded(const EventLoop::Task& task) {
  try {
    task();
  } catch (const std::exception& e) {
    log_error("internal error in the event loop (continuing): %s", e.what());
  } catch (...) {
    log_error("internal error in the event loop (continuing): unknown exception");
  }
}

}  // namespace

EventLoop::EventLoop() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) throw std::runtime_error("cannot block signals");
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (signal_fd_ < 0 || wake_fd_ < 0)
    throw std::runtime_error(std::string("event loop: cannot create signalfd/eventfd: ") + std::strerror(errno));
}

EventLoop::~EventLoop() {
  if (signal_fd_ >= 0) close(signal_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void EventLoop::post(Task task) {
  {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(task));
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

void EventLoop::watch_fd(int fd, Task on_readable) { watched_.emplace_back(fd, std::move(on_readable)); }

void EventLoop::every(std::chrono::milliseconds interval, Task fn) {
  timers_.push_back({interval, std::chrono::steady_clock::now() + interval, std::move(fn)});
}

void EventLoop::stop() { running_ = false; }

void EventLoop::drain_posted() {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = read(wake_fd_, &count, sizeof count);
  for (;;) {
    Task task;
    {
      std::lock_guard lock(mu_);
      if (posted_.empty()) return;
      task = std::move(posted_.front());
      posted_.pop_front();
    }
    run_guarded(task);
  }
}

void EventLoop::run() {
  running_ = true;
  while (running_) {
    std::vector<pollfd> fds = {{wake_fd_, POLLIN, 0}, {signal_fd_, POLLIN, 0}};
    for (const auto& w : watched_) fds.push_back({w.first, POLLIN, 0});
    auto now = std::chrono::steady_clock::now();
    auto next = now + std::chrono::milliseconds(100);
    for (const auto& t : timers_) next = std::min(next, t.due);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    const int rc = poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(0, wait)));
    if (rc < 0 && errno != EINTR) throw std::runtime_error(std::string("event loop poll: ") + std::strerror(errno));
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      while (read(signal_fd_, &info, sizeof info) == sizeof info)
        if (signal_handler_) signal_handler_(static_cast<int>(info.ssi_signo));
    }
    if (fds[0].revents & POLLIN) drain_posted();
    for (size_t i = 2; i < fds.size() && running_; ++i)
      if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) run_guarded(watched_[i - 2].second);
    now = std::chrono::steady_clock::now();
    for (auto& t : timers_) {
      if (!running_) break;
      if (t.due <= now) {
        t.due = now + t.interval;
        run_guarded(t.fn);
      }
    }
    for (auto& fn : after_each_)
      if (running_) run_guarded(fn);
  }
}

}  // namespace omnid
