// The daemon's single event loop: it owns all state. Other threads (engine worker, audio capture,
// playback, model loader) never touch that state; they post closures that run here, in order.
// Signals arrive through a signalfd, so handlers run here too, not in async-signal context.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace omnid {

class EventLoop {
 public:
  using Task = std::function<void()>;

  // Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every thread started later)
  // and receives them through a signalfd. Construct before starting any thread.
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Thread-safe.
  void post(Task task);
  // Calls `on_readable` on the loop when `fd` polls readable (level-triggered).
  void watch_fd(int fd, Task on_readable);
  // Calls `fn` every `interval` on the loop, first after one interval.
  void every(std::chrono::milliseconds interval, Task fn);
  void on_signal(std::function<void(int signo)> handler) { signal_handler_ = std::move(handler); }
  // Runs after every wake-up. ZeroMQ's ZMQ_FD is edge-style: the control socket is drained here
  // too, so a request that arrived while the loop was busy is never left waiting.
  void after_each(Task fn) { after_each_.push_back(std::move(fn)); }

  void run();   // until stop()
  void stop();  // from the loop thread
  bool running() const { return running_; }

 private:
  void drain_posted();
  struct Timer {
    std::chrono::milliseconds interval;
    std::chrono::steady_clock::time_point due;
    Task fn;
  };
  int wake_fd_ = -1;
  int signal_fd_ = -1;
  std::mutex mu_;
  std::deque<Task> posted_;
  std::vector<std::pair<int, Task>> watched_;
  std::vector<Timer> timers_;
  std::vector<Task> after_each_;
  std::function<void(int)> signal_handler_;
  bool running_ = false;
};

}  // namespace omnid
