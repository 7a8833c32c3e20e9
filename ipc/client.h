// Client side of control protocol v1 (docs/protocol.md): used by omnictl, tests and other C++ programs.
//
//   omni::ipc::ControlClient client("ipc:///run/omnid/control.sock");
//   nlohmann::json reply = client.request({{"cmd", "status"}}, std::nullopt, std::chrono::milliseconds(2000));
//   if (!reply["ok"]) ... reply["error"]["code"] ...
//
//   omni::ipc::EventSubscriber events("ipc:///run/omnid/events.sock", {"response.", "turn.cancelled"});
//   events.wait_connected(std::chrono::milliseconds(1000));   // before sending the request whose events you want
//   while (auto e = events.next(std::chrono::milliseconds(5000))) { e->name; e->body["seq"]; }
//
// request() returns the daemon's reply (ok or error alike) and throws ClientError only when no reply came:
// the daemon is not running, the socket is not accessible, omnid refused the connection, or the timeout passed.
// Messages are one line a person can act on: "omnid is not running (no socket at /run/omnid/control.sock)",
// "access denied: omnid refused this connection ...", "timed out after 2000 ms ...".
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace omni::ipc {

class ClientError : public std::runtime_error {
 public:
  enum class Kind { not_running, permission_denied, timeout, bad_endpoint, protocol };
  ClientError(Kind kind, const std::string& message) : std::runtime_error(message), kind(kind) {}
  Kind kind;
};

struct ClientCurveKeys {
  std::string server_public_key;  // Z85
  std::string client_public_key;  // Z85
  std::string client_secret_key;  // Z85
};

class ControlClient {
 public:
  // Connects a DEALER. For ipc:// endpoints the socket file is checked first (missing, refused, no permission:
  // ClientError at construction). tcp:// needs curve keys.
  explicit ControlClient(std::string endpoint, std::optional<ClientCurveKeys> curve = std::nullopt);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends request (an object with "cmd"; an "id" is added when absent) and an optional binary frame, and waits
  // for the reply carrying the same id (replies to earlier timed-out requests are skipped).
  nlohmann::json request(nlohmann::json request, const std::optional<std::string>& binary_frame,
                         std::chrono::milliseconds timeout);

  // Sends raw frames as they are (tests: malformed input). Returns the next reply frame, parsed when it is JSON.
  nlohmann::json request_raw(const std::vector<std::string>& frames, std::chrono::milliseconds timeout);

  const std::string& endpoint() const { return endpoint_; }

 private:
  void send_frames(const std::vector<std::string>& frames, std::chrono::milliseconds timeout);
  bool wait_for_dealer(short events, std::chrono::steady_clock::time_point deadline);
  nlohmann::json receive_reply(std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout);

  std::string endpoint_;
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> dealer_;
  std::unique_ptr<zmq::socket_t> monitor_;  // reports a refusal by omnid's access check (ZAP)
  std::uint64_t next_id_ = 1;
};

struct Event {
  std::string name;     // topic frame
  nlohmann::json body;  // {"seq", "ts_ms", ...}; speech.audio has no "seq" (docs/protocol.md)
  std::optional<std::string> binary;  // the third frame of an event that has one (speech.audio: the PCM)
};

class EventSubscriber {
 public:
  // topics: prefixes to subscribe to ("" or an empty list: everything).
  EventSubscriber(std::string endpoint, const std::vector<std::string>& topics,
                  std::optional<ClientCurveKeys> curve = std::nullopt, int receive_hwm = 100000);
  ~EventSubscriber();
  EventSubscriber(const EventSubscriber&) = delete;
  EventSubscriber& operator=(const EventSubscriber&) = delete;

  // Waits until the connection to the publisher is established (ZMQ handshake done) plus a short margin for the
  // subscription to reach it, so events published after this returns are received. false on timeout; throws
  // ClientError(permission_denied) when omnid refused the connection.
  bool wait_connected(std::chrono::milliseconds timeout);

  // The next event, or nullopt when none came within timeout. Throws ClientError(protocol) on a malformed event
  // (not 2 or 3 frames, a body that is not a JSON object).
  std::optional<Event> next(std::chrono::milliseconds timeout);

 private:
  std::string endpoint_;
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> sub_;
  std::unique_ptr<zmq::socket_t> monitor_;
  bool connected_ = false;
};

// Default endpoints, overridden by $OMNID_CONTROL / $OMNID_EVENTS.
std::string default_control_endpoint();
std::string default_events_endpoint();

}  // namespace omni::ipc
