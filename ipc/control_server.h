// ControlServer: the daemon's end of control protocol 2 (docs/protocol.md).
//
// Usage from the daemon's single event loop thread:
//
//   omni::ipc::ServerConfig cfg;                       // endpoints, limits, optional CURVE / uid filter
//   cfg.control_endpoint = yaml ipc.control; cfg.events_endpoint = yaml ipc.events;
//   cfg.max_message_bytes = yaml ipc.max_message_bytes;
//   omni::ipc::ControlServer server(cfg);              // throws ipc::SetupError naming endpoint + reason
//   for (;;) {
//     // either block here, or put server.fd() in your own poll()/epoll set (see fd() for its rules)
//     while (auto in = server.poll(std::chrono::milliseconds(100))) {
//       std::visit(overloaded{
//         [&](const omni::ipc::AskRequest& r) { ...; server.reply_ok(in->handle, {{"turn_id", id}}); },
//         [&](const omni::ipc::SetRequest& r) { ...; server.reply_error(in->handle, ErrorCode::not_found, "..."); },
//         ...}, in->request.command);
//     }
//   }
//   server.events().publish("response.delta", {{"turn_id", 7}, {"text", "Hel"}});   // from any thread
//
// poll() answers malformed requests itself (bad_request / unknown_command / too_large, with the request id when
// it could be read), requests past their deadline_ms (`expired`), `ping` and `events` (from the publisher's
// buffer), so the daemon only ever sees valid, timely requests of the other commands. Every reply carries the
// server's `instance` and the last event `seq`.
// Every request returned by poll() must be answered exactly once with reply()/reply_ok()/reply_error() (from the
// thread that calls poll(); the ROUTER socket is not thread-safe). A handle may be kept and answered later.
//
// Size limit: a request whose frames add up to more than max_message_bytes gets a too_large reply. The transport
// also refuses any single frame above 2 * max_message_bytes (ZMQ_MAXMSGSIZE): libzmq then drops that client's
// connection without reading the frame into memory, and the client gets no reply (it sees a timeout).
//
// Security: ipc:// socket directories are created mode 0750 when missing and socket files are chmod 0660 after
// bind, so only the service user and its group can connect. tcp:// is refused unless CURVE keys are configured.
// If allowed_uids/allowed_gids are non-empty a ZAP handler admits only ipc peers whose SO_PEERCRED uid is listed
// or whose primary gid is listed (and, with CURVE, only clients whose public key is in curve.client_public_keys
// when that list is non-empty).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipc/protocol.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace omni::ipc {

// A server that cannot start: bad endpoint, refused transport, bind failure, directory/permission problem.
class SetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CurveServerKeys {
  std::string server_secret_key;                 // Z85, 40 characters
  std::vector<std::string> client_public_keys;   // Z85; empty: any client that knows the server key may connect
};

struct ServerConfig {
  std::string control_endpoint = "ipc:///run/omnid/control.sock";
  std::string events_endpoint = "ipc:///run/omnid/events.sock";
  std::size_t max_message_bytes = 16u << 20;  // total bytes of a request's frames
  int events_send_hwm = 10000;                 // per-subscriber queue; events beyond it are dropped for that one
  std::size_t event_history = 4096;            // events kept for `events {"since": N}`
  std::string instance;                        // this daemon process's id, in every reply
  std::optional<CurveServerKeys> curve;        // required for tcp:// endpoints
  std::vector<uid_t> allowed_uids;             // ipc peer filter (see above); empty + empty gids: no filter
  std::vector<gid_t> allowed_gids;
  // Called (on the ZAP thread) for each refused connection: why, and who (see ZapPolicy::on_denied).
  std::function<void(const std::string& reason, const std::string& peer)> on_denied;
};

// Thread-safe: publish() may be called from any thread (engine callbacks, audio threads, the daemon loop).
// A mutex serializes sequence numbering and the send, so seq is gap-free and in send order on the wire.
// Sends never block: a subscriber whose queue is full (events_send_hwm) silently misses events (it sees a gap
// in seq); nobody else is affected.
class EventPublisher {
 public:
  // Adds "seq" (1, 2, 3, ...), "ts_ms" (Unix time in ms) and "mono_ms" (CLOCK_MONOTONIC in ms, the clock of
  // stream positions; never jumps) to fields (an object), sends [name, json] and keeps it in the history.
  // Returns the seq given to the event.
  std::uint64_t publish(std::string_view name, const nlohmann::json& fields = nlohmann::json::object());
  // A stream event with a binary frame (speech.audio): sends [name, json, binary], the json being fields plus
  // "ts_ms" and "mono_ms". It takes no seq (last_seq() does not move, so subscribers see no gap) and is not kept
  // in the history: `events since` never returns it. Same mutex as publish(): on the wire it sits in publish
  // order among the numbered events.
  void publish_binary(std::string_view name, const nlohmann::json& fields, std::string_view binary);
  // The seq of the last event published (0 before the first); what `status` reports as "seq".
  std::uint64_t last_seq() const { return last_seq_.load(); }
  // The kept events after `since` whose name starts with one of `topics` (all when empty), oldest first, each
  // {"event": name, ...body}. `complete`: no event after `since` has left the history.
  nlohmann::json since(std::uint64_t since, const std::vector<std::string>& topics, bool& complete,
                       std::uint64_t& oldest_seq);

  EventPublisher(const EventPublisher&) = delete;
  EventPublisher& operator=(const EventPublisher&) = delete;
  ~EventPublisher();

 private:
  friend class ControlServer;
  EventPublisher(std::unique_ptr<zmq::socket_t> pub, std::size_t history);
  struct Kept {
    std::string name;
    nlohmann::json body;
  };
  std::mutex mutex_;
  std::size_t history_limit_;
  std::deque<Kept> history_;  // the last history_limit_ events, by seq
  std::unique_ptr<zmq::socket_t> pub_;
  std::atomic<std::uint64_t> last_seq_{0};
};

// Opaque: who to answer and with which id. Copyable; answer it exactly once.
class ReplyHandle {
 public:
  const nlohmann::json& request_id() const { return id_; }
  // The client's ZeroMQ routing id: the same for every request on one connection (tools' owner).
  const std::string& client_id() const { return routing_id_; }

 private:
  friend class ControlServer;
  std::string routing_id_;
  bool req_envelope_ = false;  // the client is a REQ socket: the reply needs the empty delimiter frame
  nlohmann::json id_;
};

struct IncomingRequest {
  ReplyHandle handle;
  Request request;
};

class ControlServer {
 public:
  explicit ControlServer(ServerConfig config);
  ~ControlServer();  // closes sockets, removes the ipc socket files it created
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Waits up to `timeout` (0: don't wait) for the next valid request. Malformed requests and pings that arrive
  // meanwhile are answered here and do not end the wait early. Never throws on anything a client sends.
  std::optional<IncomingRequest> poll(std::chrono::milliseconds timeout);

  // The ROUTER's ZMQ_FD for an external poll()/epoll: it signals edge-style "something may have changed".
  // When it becomes readable, call poll(0ms) until it returns nullopt; also do that after each reply().
  int fd() const;

  // Sends the reply (must be an object; its "id" is set to the request's id). Never throws on a vanished client
  // (the reply is dropped).
  void reply(const ReplyHandle& handle, nlohmann::json reply);
  void reply_ok(const ReplyHandle& handle, const nlohmann::json& fields = nlohmann::json::object());
  void reply_error(const ReplyHandle& handle, ErrorCode code, std::string_view message);

  EventPublisher& events() { return *events_; }
  const ServerConfig& config() const { return config_; }
  // The endpoints as bound (a tcp://HOST:* wildcard resolved to its port).
  std::string bound_control_endpoint() const;
  std::string bound_events_endpoint() const;

  // Counters for tests and status logs.
  std::uint64_t requests_rejected() const { return rejected_; }

 private:
  bool receive_one(std::optional<IncomingRequest>& out);
  void send_reply(const std::string& routing_id, bool req_envelope, nlohmann::json reply);
  void start_zap_handler();

  ServerConfig config_;
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> router_;
  std::unique_ptr<EventPublisher> events_;
  std::vector<std::string> socket_files_;  // ipc socket paths to unlink on destruction
  struct ZapHandler;
  std::unique_ptr<ZapHandler> zap_;
  std::uint64_t rejected_ = 0;
};

}  // namespace omni::ipc
