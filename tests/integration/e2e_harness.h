// Runs a real daemon process for the end-to-end tests: writes its config, gives it a NOTIFY_SOCKET
// (a unix datagram socket the test reads, as systemd would), and talks to it with the ipc client.
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ipc/client.h"

namespace e2e {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Notification {
  Clock::time_point at;
  std::string text;
};

// Reads what the daemon sends to $NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path);
  ~NotifySocket();
  const std::string& path() const { return path_; }
  // Waits until a message containing `needle` (e.g. "READY=1") arrived; true when it did.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout, size_t from = 0);
  std::vector<Notification> all();
  size_t count();

 private:
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Notification> messages_;
};

struct DaemonOptions {
  std::string binary;
  std::string model_path;
  std::string device = "cpu";
  std::string input_pipeline;  // default: the quiet recording
  std::string input_source;    // audio.input.source when set (gstreamer | ipc)
  bool listen = false;
  bool restart_input_on_end = false;  // audio.input.restart_on_end (off: a recording is played once)
  std::string extra_ipc_yaml;         // more keys under ipc:
  bool barge_in = true;
  std::string extra_audio_yaml;  // more keys under audio:
  std::string extra_model_yaml;  // more keys under model:
  std::string extra_yaml;        // more top-level sections (camera:, tools:), at the end of the file
  long long max_message_bytes = 262144;
  int max_new_tokens = 64;
  uint64_t watchdog_usec = 0;
  std::string output_yaml;       // replaces the wav-file output (the lines under audio.output:)
  std::string extra_output_yaml;  // more lines under audio.output: (after the wav-file output or output_yaml)
  std::vector<std::pair<std::string, std::string>> env;  // extra environment of the daemon    // sets WATCHDOG_USEC/WATCHDOG_PID like systemd's WatchdogSec=
};

class DaemonProcess {
 public:
  explicit DaemonProcess(const DaemonOptions& options);
  ~DaemonProcess();  // SIGKILL if still running

  void start();
  // false when the timeout passes or the daemon exits first (then exit_status() has its status).
  bool wait_ready(std::chrono::milliseconds timeout);
  int exit_status() const { return exit_status_; }
  pid_t pid() const { return pid_; }
  // The process's executable and each thread's state and kernel wait channel (/proc), for a failure message.
  std::string describe_process() const;
  // Sends `signo` and waits up to `timeout`; returns the exit status (-1: did not exit, -2 - n: killed by n).
  int stop(int signo, std::chrono::milliseconds timeout, std::chrono::milliseconds* took = nullptr);
  // Waits for the process to exit by itself.
  int wait_exit(std::chrono::milliseconds timeout);
  void signal(int signo) {
    if (pid_ > 0) ::kill(pid_, signo);
  }

  nlohmann::json request(nlohmann::json req, std::chrono::milliseconds timeout = 5000ms,
                         const std::optional<std::string>& binary = std::nullopt);
  omni::ipc::ControlClient& client();
  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }
  std::string control() const { return "ipc://" + dir_ + "/control.sock"; }
  std::string events() const { return "ipc://" + dir_ + "/events.sock"; }
  std::string log() const;
  // Polls the log until it contains `text` (true) or `timeout` passes (false).
  bool wait_log(const std::string& text, std::chrono::milliseconds timeout) const;
  NotifySocket& notify() { return *notify_; }
  void write_config(const std::string& yaml);
  std::string default_config() const;

 private:
  DaemonOptions options_;
  std::string dir_, config_path_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::unique_ptr<NotifySocket> notify_;
  std::unique_ptr<omni::ipc::ControlClient> client_;
};

// Pings the daemon (`endpoint`) from its own connection every 10 ms until stopped; records the slowest round trip.
class Pinger {
 public:
  explicit Pinger(const std::string& endpoint) : client_(endpoint) {
    thread_ = std::thread([this] {
      while (!stop_) {
        const auto t0 = Clock::now();
        try {
          const auto r = client_.request({{"cmd", "ping"}}, std::nullopt, 2000ms);
          if (!r.value("ok", false)) fail(r.dump());
        } catch (const std::exception& e) {
          fail(e.what());
        }
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        worst_ms_ = std::max(worst_ms_.load(), ms);
        ++pings_;
        std::this_thread::sleep_for(10ms);
      }
    });
  }
  ~Pinger() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int pings() const { return pings_; }
  int failures() const { return failures_; }
  std::string first_failure() {
    std::lock_guard lock(mu_);
    return first_failure_;
  }
  double worst_ms() const { return worst_ms_; }

 private:
  void fail(const std::string& what) {
    std::lock_guard lock(mu_);
    if (failures_++ == 0) first_failure_ = what;
  }
  std::mutex mu_;
  std::string first_failure_;
  omni::ipc::ControlClient client_;
  std::atomic<bool> stop_{false};
  std::atomic<int> pings_{0}, failures_{0};
  std::atomic<double> worst_ms_{0};
  std::thread thread_;
};

// Collects events from the daemon's PUB socket.
class EventLog {
 public:
  explicit EventLog(const std::string& endpoint);
  // Waits for an event named `name` (any name when empty) matching `pred`; returns it. Fails the test on timeout.
  std::optional<omni::ipc::Event> wait_for(const std::string& name, std::chrono::milliseconds timeout,
                                           const std::function<bool(const omni::ipc::Event&)>& pred = nullptr);
  // Everything received so far (heartbeats excluded unless asked).
  const std::vector<omni::ipc::Event>& seen() const { return seen_; }
  // Reads what arrives during `d`.
  void pump(std::chrono::milliseconds d);

 private:
  omni::ipc::EventSubscriber sub_;
  std::vector<omni::ipc::Event> seen_;
  size_t cursor_ = 0;
};

std::string data_file(const std::string& name);
// The data chunk of a PCM WAV file, as bytes; fails the test (and returns "") when the file is not one.
std::string wav_data(const std::string& path);
// Names of the non-heartbeat events for one turn, in arrival order.
std::vector<std::string> names_for_turn(const std::vector<omni::ipc::Event>& events, uint64_t turn_id);
// Checks seq increases by exactly one across `events` (heartbeats included).
void expect_gap_free(const std::vector<omni::ipc::Event>& events);

// Options for omnid_scripted: the real omnid code with the engine replaced by `script`.
DaemonOptions scripted_options(const std::string& script = "step_ms=20,words=12");
// The real omnid on the committed tiny model (the build assembles it under OMNI_BUILD_DIR/models/tiny-a).
DaemonOptions tiny_model_options();
// Sends `request` as an ask, expects a turn, and returns its response.done (null, with a failure, when there is
// none within 60 s).
nlohmann::json ask_and_wait_done(DaemonProcess& d, EventLog& events, nlohmann::json request);
// omni-run's JSON for `args` (--json is added); a failed run or output that is no JSON fails the test (null).
nlohmann::json omni_run_json(const std::string& args);
// Starts the daemon and waits for READY=1; a missed wait fails the test with the daemon's log.
std::unique_ptr<DaemonProcess> start_ready(const DaemonOptions& o, std::chrono::milliseconds timeout = 60s);

}  // namespace e2e
