#include "ipc/client.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
#include <zmq.hpp>

#include "ipc/control_server.h"
#include "ipc/endpoint.h"
#include "ipc/protocol.h"

namespace omni::ipc {
namespace {

using nlohmann::json;

// Checks the endpoint before connecting, so that "not running" is reported at once instead of as a timeout.
void check_reachable(const std::string& endpoint, bool have_curve) {
  ParsedEndpoint parsed;
  try {
    parsed = parse_endpoint(endpoint);
  } catch (const SetupError& e) {
    throw ClientError(ClientError::Kind::bad_endpoint, e.what());
  }
  if (parsed.transport == Transport::tcp) {
    if (!have_curve)
      throw ClientError(ClientError::Kind::bad_endpoint,
                        "endpoint '" + endpoint + "' is tcp://; omnid serves tcp only with CURVE keys");
    return;
  }
  int err = 0;
  switch (probe_unix_socket(parsed.address, &err)) {
    case SocketProbe::listening: return;
    case SocketProbe::absent:
      throw ClientError(ClientError::Kind::not_running, "omnid is not running (no socket at " + parsed.address + ")");
    case SocketProbe::refused:
      throw ClientError(ClientError::Kind::not_running,
                        "omnid is not running (socket " + parsed.address + " exists but nobody is listening)");
    case SocketProbe::permission_denied:
      throw ClientError(ClientError::Kind::permission_denied,
                        "access denied: no permission to open " + parsed.address + " (" + std::strerror(err) +
                            "; the socket's directory or file mode keeps this user out)");
    case SocketProbe::not_a_socket:
      throw ClientError(ClientError::Kind::bad_endpoint, parsed.address + " is not a socket");
    case SocketProbe::other_error:
      throw ClientError(ClientError::Kind::not_running,
                        "cannot connect to " + parsed.address + ": " + std::strerror(err));
  }
}

void apply_curve(zmq::socket_t& socket, const std::optional<ClientCurveKeys>& curve) {
  if (!curve) return;
  socket.set(zmq::sockopt::curve_serverkey, curve->server_public_key);
  socket.set(zmq::sockopt::curve_publickey, curve->client_public_key);
  socket.set(zmq::sockopt::curve_secretkey, curve->client_secret_key);
}

// A PAIR socket that receives `events` of `watched` (zmq_socket_monitor), connected before `watched` connects.
std::unique_ptr<zmq::socket_t> monitor_socket(zmq::context_t& context, zmq::socket_t& watched, int events) {
  static std::atomic<int> monitor_counter{0};
  const std::string endpoint = "inproc://omni-client-monitor-" + std::to_string(++monitor_counter);
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(), events) != 0)
    throw ClientError(ClientError::Kind::protocol, "cannot monitor a client socket");
  auto monitor = std::make_unique<zmq::socket_t>(context, zmq::socket_type::pair);
  monitor->set(zmq::sockopt::linger, 0);
  monitor->connect(endpoint);
  return monitor;
}

// Reads one monitor event: (event id, value).
std::pair<int, std::uint32_t> read_monitor_event(zmq::socket_t& monitor) {
  std::vector<zmq::message_t> frames;
  zmq::message_t msg;
  do {
    if (!monitor.recv(msg, zmq::recv_flags::none)) break;
    frames.push_back(std::move(msg));
    msg = zmq::message_t();
  } while (frames.back().more());
  if (frames.empty() || frames[0].size() < 6) return {0, 0};
  std::uint16_t event = 0;
  std::uint32_t value = 0;
  std::memcpy(&event, frames[0].data(), 2);
  std::memcpy(&value, static_cast<const char*>(frames[0].data()) + 2, 4);
  return {event, value};
}

// omnid's ZAP handler answered the handshake with a refusal (libzmq reports its status code, 400).
ClientError access_denied(const std::string& endpoint, std::uint32_t status) {
  return ClientError(ClientError::Kind::permission_denied,
                     "access denied: omnid refused this connection to " + endpoint + " (status " +
                         std::to_string(status) + "): uid " + std::to_string(::getuid()) +
                         " is neither in ipc.allow_uids nor in a group of ipc.allow_gids (by default omnid's own "
                         "user and group; `usermod -aG omnid USER` adds a user); the refusal is in omnid's log");
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

std::string default_control_endpoint() { return env_or("OMNID_CONTROL", "ipc:///run/omnid/control.sock"); }
std::string default_events_endpoint() { return env_or("OMNID_EVENTS", "ipc:///run/omnid/events.sock"); }

// ---------------------------------------------------------------------------------------------- ControlClient

ControlClient::ControlClient(std::string endpoint, std::optional<ClientCurveKeys> curve)
    : endpoint_(std::move(endpoint)) {
  check_reachable(endpoint_, curve.has_value());
  context_ = std::make_unique<zmq::context_t>(1);
  dealer_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::dealer);
  dealer_->set(zmq::sockopt::linger, 0);
  monitor_ = monitor_socket(*context_, *dealer_, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  // A request is only ever queued on a connection that is up: a daemon that is not there never receives it
  // later (the next omnid to start would otherwise run it).
  dealer_->set(zmq::sockopt::immediate, 1);
  try {
    apply_curve(*dealer_, curve);
    dealer_->connect(endpoint_);
  } catch (const zmq::error_t& e) {
    throw ClientError(ClientError::Kind::bad_endpoint, "cannot connect to '" + endpoint_ + "': " + e.what());
  }
}

ControlClient::~ControlClient() {
  if (dealer_) zmq_socket_monitor(dealer_->handle(), nullptr, 0);
  monitor_.reset();
  dealer_.reset();
}

json ControlClient::request(json request, const std::optional<std::string>& binary_frame,
                            std::chrono::milliseconds timeout) {
  if (!request.is_object()) throw ClientError(ClientError::Kind::protocol, "a request must be a JSON object");
  if (!request.contains("id")) request["id"] = next_id_++;
  json id = request["id"];
  std::vector<std::string> frames{serialize(request)};
  if (binary_frame) frames.push_back(*binary_frame);
  send_frames(frames, timeout);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    json reply = receive_reply(deadline, timeout);
    // Skip replies to earlier requests that timed out on our side and arrived late.
    if (reply.is_object() && reply.contains("id") && reply["id"] == id) return reply;
  }
}

json ControlClient::request_raw(const std::vector<std::string>& frames, std::chrono::milliseconds timeout) {
  send_frames(frames, timeout);
  return receive_reply(std::chrono::steady_clock::now() + timeout, timeout);
}

// Polls the dealer until it is ready for `events` (true) or `deadline` passes (false). A handshake that omnid's
// access check refuses throws access_denied at once: such a connection never becomes ready.
bool ControlClient::wait_for_dealer(short events, std::chrono::steady_clock::time_point deadline) {
  zmq::pollitem_t items[2] = {{dealer_->handle(), 0, events, 0}, {monitor_->handle(), 0, ZMQ_POLLIN, 0}};
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    int ready = 0;
    try {
      ready = zmq::poll(items, 2, left);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (ready > 0 && (items[1].revents & ZMQ_POLLIN)) {
      auto [event, value] = read_monitor_event(*monitor_);
      if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) throw access_denied(endpoint_, value);
    }
    if (ready > 0 && (items[0].revents & events)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

void ControlClient::send_frames(const std::vector<std::string>& frames, std::chrono::milliseconds timeout) {
  // With ZMQ_IMMEDIATE the socket is writable only once the connection is up (handshake done); wait for that,
  // not longer. A refused handshake never makes it writable: the monitor says so.
  if (!wait_for_dealer(ZMQ_POLLOUT, std::chrono::steady_clock::now() + timeout))
    throw ClientError(ClientError::Kind::not_running,
                      "no connection to omnid at " + endpoint_ + " within " + std::to_string(timeout.count()) +
                          " ms (is it running?); the request was not sent");
  for (std::size_t i = 0; i < frames.size(); ++i) {
    auto flags = (i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none) | zmq::send_flags::dontwait;
    // DEALER queues messages while (re)connecting; it refuses only at its high-water mark.
    if (!dealer_->send(zmq::buffer(frames[i]), flags))
      throw ClientError(ClientError::Kind::timeout, "cannot queue the request for " + endpoint_ + " (queue full)");
  }
}

json ControlClient::receive_reply(std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout) {
  if (!wait_for_dealer(ZMQ_POLLIN, deadline))
    throw ClientError(ClientError::Kind::timeout, "timed out after " + std::to_string(timeout.count()) +
                                                      " ms waiting for omnid at " + endpoint_);
  std::vector<std::string> reply;
  zmq::message_t msg;
  do {
    if (!dealer_->recv(msg, zmq::recv_flags::none)) break;
    reply.push_back(msg.to_string());
  } while (msg.more());
  // A REQ-style empty delimiter precedes the body if the request started with an empty frame.
  std::string body = reply.empty() ? "" : reply.back();
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    throw ClientError(ClientError::Kind::protocol, "omnid sent a reply that is not JSON (" +
                                                       std::to_string(body.size()) + " bytes)");
  return parsed;
}

// ---------------------------------------------------------------------------------------------- EventSubscriber

EventSubscriber::EventSubscriber(std::string endpoint, const std::vector<std::string>& topics,
                                 std::optional<ClientCurveKeys> curve, int receive_hwm)
    : endpoint_(std::move(endpoint)) {
  check_reachable(endpoint_, curve.has_value());
  context_ = std::make_unique<zmq::context_t>(1);
  sub_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::sub);
  sub_->set(zmq::sockopt::linger, 0);
  sub_->set(zmq::sockopt::rcvhwm, receive_hwm);
  if (topics.empty()) sub_->set(zmq::sockopt::subscribe, "");
  for (const auto& t : topics) sub_->set(zmq::sockopt::subscribe, t);
  // A monitor tells when the handshake is done (wait_connected) or was refused.
  monitor_ = monitor_socket(*context_, *sub_, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  try {
    apply_curve(*sub_, curve);
    sub_->connect(endpoint_);
  } catch (const zmq::error_t& e) {
    throw ClientError(ClientError::Kind::bad_endpoint, "cannot connect to '" + endpoint_ + "': " + e.what());
  }
}

EventSubscriber::~EventSubscriber() {
  if (sub_) zmq_socket_monitor(sub_->handle(), nullptr, 0);
  monitor_.reset();
  sub_.reset();
}

bool EventSubscriber::wait_connected(std::chrono::milliseconds timeout) {
  if (connected_) return true;
  zmq::pollitem_t item{monitor_->handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) <= 0) return false;
  auto [event, value] = read_monitor_event(*monitor_);
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) throw access_denied(endpoint_, value);
  // The publisher's socket picks up the new subscription the next time it processes commands; give its I/O
  // thread a moment so that events published right after this call are not missed.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  connected_ = true;
  return true;
}

std::optional<Event> EventSubscriber::next(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{sub_->handle(), 0, ZMQ_POLLIN, 0};
  int ready = 0;
  try {
    ready = zmq::poll(&item, 1, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return std::nullopt;
    throw;
  }
  if (ready <= 0) return std::nullopt;
  std::vector<std::string> frames;
  zmq::message_t msg;
  do {
    if (!sub_->recv(msg, zmq::recv_flags::none)) break;
    frames.push_back(msg.to_string());
  } while (msg.more());
  if (frames.size() != 2 && frames.size() != 3)
    throw ClientError(ClientError::Kind::protocol, "event with " + std::to_string(frames.size()) + " frames from " +
                                                       endpoint_ + " (expected 2, or 3 with a binary frame)");
  json body = json::parse(frames[1], nullptr, false);
  if (!body.is_object())
    throw ClientError(ClientError::Kind::protocol, "event '" + frames[0] + "' has a body that is not a JSON object");
  Event e{std::move(frames[0]), std::move(body), std::nullopt};
  if (frames.size() == 3) e.binary = std::move(frames[2]);
  return e;
}

}  // namespace omni::ipc
