// Helpers for the ipc tests: a temporary socket directory and a stand-in daemon loop around ControlServer.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include "ipc/client.h"
#include "ipc/control_server.h"

namespace omni::ipc::test {

// A fresh directory under /tmp (short path: sockaddr_un holds 107 bytes), removed afterwards.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/omni-ipc-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs the daemon side: poll() in a thread, each valid request handed to `handler`, which must answer it.
class ServerLoop {
 public:
  using Handler = std::function<void(ControlServer&, IncomingRequest&)>;

  ServerLoop(ServerConfig config, Handler handler)
      : server_(std::make_unique<ControlServer>(std::move(config))), handler_(std::move(handler)) {
    thread_ = std::thread([this] {
      while (!stop_) {
        auto in = server_->poll(std::chrono::milliseconds(20));
        if (in) {
          ++handled_;
          handler_(*server_, *in);
        }
      }
    });
  }
  ~ServerLoop() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ControlServer& server() { return *server_; }
  std::uint64_t handled() const { return handled_; }

 private:
  std::unique_ptr<ControlServer> server_;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> handled_{0};
  std::thread thread_;
};

// Answers every request with {"cmd": <name>} so tests can see which command arrived.
inline void echo_handler(ControlServer& server, IncomingRequest& in) {
  nlohmann::json fields{{"cmd", command_name(in.request.command)}};
  if (auto* ask = std::get_if<AskRequest>(&in.request.command)) {
    fields["wav_bytes"] = ask->wav ? ask->wav->size() : 0;
    fields["turn_id"] = 1;
  }
  server.reply_ok(in.handle, fields);
}

inline ServerConfig config_in(const TempDir& dir, const std::string& sub = "run/omnid") {
  ServerConfig c;
  c.control_endpoint = "ipc://" + dir.path() + "/" + sub + "/control.sock";
  c.events_endpoint = "ipc://" + dir.path() + "/" + sub + "/events.sock";
  return c;
}

// Publishes `topic` probes until `sub` receives one, so that the subscription is known to be active whatever the
// machine's load; returns the seq of the last probe (later events start after it).
inline std::uint64_t sync_subscriber(ControlServer& server, EventSubscriber& sub, const std::string& topic) {
  EXPECT_TRUE(sub.wait_connected(std::chrono::milliseconds(5000)));
  for (int attempt = 0; attempt < 500; ++attempt) {
    std::uint64_t seq = server.events().publish(topic, {{"probe", attempt}});
    if (auto e = sub.next(std::chrono::milliseconds(10))) {
      // Drain probes still queued behind this one.
      std::uint64_t last = e->body["seq"];
      while (last < seq) {
        auto more = sub.next(std::chrono::milliseconds(1000));
        if (!more) break;
        last = more->body["seq"];
      }
      return last;
    }
  }
  ADD_FAILURE() << "the subscriber never received a probe";
  return 0;
}

}  // namespace omni::ipc::test
