#include "ipc/control_server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <zmq.hpp>

#include "ipc/endpoint.h"
#include "ipc/zap_handler.h"

namespace omni::ipc {
namespace {

using nlohmann::json;

std::int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void check_z85_key(const std::string& key, const char* what) {
  std::uint8_t decoded[32];
  if (key.size() != 40 || zmq_z85_decode(decoded, key.c_str()) == nullptr)
    throw SetupError(std::string(what) + " is not a Z85 CURVE key (40 characters)");
}

// Applies transport security, binds, and fixes ipc file modes. Returns the ipc socket path ("" for tcp).
std::string bind_secured(zmq::socket_t& socket, const std::string& endpoint, const ServerConfig& config,
                         bool use_zap) {
  ParsedEndpoint parsed = parse_endpoint(endpoint);
  if (parsed.transport == Transport::tcp && !config.curve)
    throw SetupError("endpoint '" + endpoint +
                     "' refused: tcp:// is only allowed with CURVE keys configured (anyone on the network could "
                     "drive omnid); use ipc:// or configure curve keys");
  if (config.curve) {
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, config.curve->server_secret_key);
  }
  if (use_zap) socket.set(zmq::sockopt::zap_domain, "omnid");
  if (parsed.transport == Transport::ipc) {
    create_socket_directory(parsed.address);
    // libzmq unlinks an existing socket file on bind; never steal the socket of a running daemon.
    if (probe_unix_socket(parsed.address) == SocketProbe::listening)
      throw SetupError("endpoint '" + endpoint + "': another process is already listening on " + parsed.address);
  }
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    throw SetupError("cannot bind '" + endpoint + "': " + e.what());
  }
  if (parsed.transport != Transport::ipc) return {};
  // With a uid/gid access list the ZAP handler is the gate: it checks every connection's kernel credentials,
  // logs each refusal and tells the client, and admits listed users outside the socket's group; the file is then
  // open to every local user (the directory's mode still applies). Without one, the file's group is the gate.
  const bool credential_check = !config.allowed_uids.empty() || !config.allowed_gids.empty();
  const mode_t mode = credential_check ? 0666 : 0660;
  if (::chmod(parsed.address.c_str(), mode) != 0)
    throw SetupError("cannot set mode " + std::string(credential_check ? "0666" : "0660") + " on socket '" +
                     parsed.address + "': " + std::strerror(errno));
  return parsed.address;
}

// The "id" of a request that failed before validation (too many frames, too large), when it can be read.
json salvage_id(const zmq::message_t& first_frame, std::size_t max_bytes) {
  if (first_frame.size() > max_bytes) return nullptr;
  return parse_request(first_frame.to_string_view()).id;  // depth-checked; null when unreadable
}

}  // namespace

// ---------------------------------------------------------------------------------------------- EventPublisher

EventPublisher::EventPublisher(std::unique_ptr<zmq::socket_t> pub, std::size_t history)
    : history_limit_(history), pub_(std::move(pub)) {}
EventPublisher::~EventPublisher() = default;

std::uint64_t EventPublisher::publish(std::string_view name, const json& fields) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t seq = last_seq_.load() + 1;
  json body = fields.is_object() ? fields : json::object();
  body["seq"] = seq;
  body["ts_ms"] = now_ms();
  body["mono_ms"] = mono_ms();
  EventFrames frames{std::string(name), serialize(body)};
  if (history_limit_ > 0) {
    if (history_.size() == history_limit_) history_.pop_front();
    history_.push_back(Kept{std::string(name), std::move(body)});
  }
  try {
    // PUB never blocks: a subscriber at its high-water mark just misses this event.
    pub_->send(zmq::buffer(frames.topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_->send(zmq::buffer(frames.body), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // Only ETERM (shutting down) is possible here; the event is lost with the socket.
  }
  last_seq_.store(seq);
  return seq;
}

void EventPublisher::publish_binary(std::string_view name, const json& fields, std::string_view binary) {
  std::lock_guard<std::mutex> lock(mutex_);
  json body = fields.is_object() ? fields : json::object();
  body["ts_ms"] = now_ms();
  body["mono_ms"] = mono_ms();
  const std::string text = serialize(body);
  try {
    pub_->send(zmq::buffer(name), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_->send(zmq::buffer(text), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_->send(zmq::buffer(binary), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // Only ETERM (shutting down) is possible here.
  }
}

json EventPublisher::since(std::uint64_t since, const std::vector<std::string>& topics, bool& complete,
                           std::uint64_t& oldest_seq) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::uint64_t last = last_seq_.load();
  oldest_seq = history_.empty() ? last + 1 : history_.front().body["seq"].get<std::uint64_t>();
  complete = since + 1 >= oldest_seq || since >= last;
  json out = json::array();
  // Seqs in the history are consecutive: start at the first one after `since`.
  std::size_t first = since + 1 > oldest_seq ? static_cast<std::size_t>(since + 1 - oldest_seq) : 0;
  for (std::size_t i = first; i < history_.size(); ++i) {
    const Kept& k = history_[i];
    bool wanted = topics.empty();
    for (const auto& t : topics) wanted = wanted || k.name.rfind(t, 0) == 0;
    if (!wanted) continue;
    json e = k.body;
    e["event"] = k.name;
    out.push_back(std::move(e));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- ControlServer

struct ControlServer::ZapHandler {
  std::unique_ptr<ZapAuthenticator> authenticator;
};

ControlServer::ControlServer(ServerConfig config) : config_(std::move(config)) {
  if (config_.max_message_bytes == 0) throw SetupError("max_message_bytes must be positive");
  if (config_.curve) {
    check_z85_key(config_.curve->server_secret_key, "curve server_secret_key");
    for (const auto& key : config_.curve->client_public_keys) check_z85_key(key, "curve client public key");
  }
  context_ = std::make_unique<zmq::context_t>(1);
  bool use_zap = !config_.allowed_uids.empty() || !config_.allowed_gids.empty() ||
                 (config_.curve && !config_.curve->client_public_keys.empty());
  if (use_zap) {
    // The ZAP handler must be bound before any connection is accepted.
    zap_ = std::make_unique<ZapHandler>();
    ZapPolicy policy{config_.allowed_uids, config_.allowed_gids,
                     config_.curve ? config_.curve->client_public_keys : std::vector<std::string>{},
                     config_.on_denied, nullptr};  // groups_of: the group database
    zap_->authenticator = std::make_unique<ZapAuthenticator>(*context_, std::move(policy));
  }
  try {
    router_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::router);
    router_->set(zmq::sockopt::linger, 0);
    // The transport's hard ceiling per frame; requests between the two limits get a too_large reply.
    router_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config_.max_message_bytes) * 2);
    std::string path = bind_secured(*router_, config_.control_endpoint, config_, use_zap);
    if (!path.empty()) socket_files_.push_back(path);

    auto pub = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::pub);
    pub->set(zmq::sockopt::linger, 0);
    pub->set(zmq::sockopt::sndhwm, config_.events_send_hwm);
    pub->set(zmq::sockopt::maxmsgsize, int64_t{1} << 16);  // subscribers only send subscriptions
    path = bind_secured(*pub, config_.events_endpoint, config_, use_zap);
    if (!path.empty()) socket_files_.push_back(path);
    events_.reset(new EventPublisher(std::move(pub), config_.event_history));
  } catch (...) {
    for (const auto& f : socket_files_) ::unlink(f.c_str());
    events_.reset();
    router_.reset();
    zap_.reset();
    try {
      throw;
    } catch (const zmq::error_t& e) {
      throw SetupError(std::string("zmq socket setup failed: ") + e.what());
    }
  }
}

ControlServer::~ControlServer() {
  events_.reset();
  router_.reset();
  if (zap_) zap_->authenticator.reset();  // stops and joins its thread
  context_.reset();
  for (const auto& f : socket_files_) ::unlink(f.c_str());
}

std::string ControlServer::bound_control_endpoint() const { return router_->get(zmq::sockopt::last_endpoint); }
std::string ControlServer::bound_events_endpoint() const {
  return events_->pub_->get(zmq::sockopt::last_endpoint);
}

int ControlServer::fd() const { return router_->get(zmq::sockopt::fd); }

std::optional<IncomingRequest> ControlServer::poll(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::optional<IncomingRequest> out;
    // Drain what is queued: stop at the first valid request.
    while (receive_one(out)) {
      if (out) return out;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    zmq::pollitem_t item{router_->handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, left);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: the daemon's loop decides what to do
      throw;
    }
  }
}

// Receives one whole message if one is queued. Returns false when nothing was queued. Sets `out` only for a
// valid request the daemon must handle; everything else is answered here.
bool ControlServer::receive_one(std::optional<IncomingRequest>& out) {
  std::vector<zmq::message_t> frames;
  try {
    zmq::message_t frame;
    if (!router_->recv(frame, zmq::recv_flags::dontwait)) return false;
    frames.push_back(std::move(frame));
    while (frames.back().more()) {
      zmq::message_t next;
      if (!router_->recv(next, zmq::recv_flags::none)) break;  // parts of a message arrive together
      frames.push_back(std::move(next));
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;
    throw;
  }
  std::string routing_id = frames[0].to_string();
  std::size_t first = 1;
  bool req_envelope = false;
  if (frames.size() >= 3 && frames[1].size() == 0) {  // REQ clients put an empty delimiter before the body
    req_envelope = true;
    first = 2;
  }
  std::size_t payload_frames = frames.size() - first;
  auto reject = [&](const json& id, ErrorCode code, const std::string& message) {
    ++rejected_;
    send_reply(routing_id, req_envelope, error_reply(id, code, message));
    return true;
  };
  if (payload_frames == 0) return reject(nullptr, ErrorCode::bad_request, "empty request (no JSON frame)");
  std::size_t total = 0;
  for (std::size_t i = first; i < frames.size(); ++i) total += frames[i].size();
  json early_id = payload_frames > 2 || total > config_.max_message_bytes
                      ? salvage_id(frames[first], config_.max_message_bytes)
                      : json(nullptr);
  if (total > config_.max_message_bytes)
    return reject(early_id, ErrorCode::too_large,
                  "request is " + std::to_string(total) + " bytes; the limit is " +
                      std::to_string(config_.max_message_bytes) + " (max_message_bytes)");
  if (payload_frames > 2)
    return reject(early_id, ErrorCode::bad_request,
                  "request has " + std::to_string(payload_frames) +
                      " frames; expected one JSON frame and at most one binary frame");
  std::optional<std::string> binary;
  if (payload_frames == 2) binary = frames[first + 1].to_string();
  ParseResult parsed = parse_request(frames[first].to_string_view(), std::move(binary));
  if (!parsed.ok()) return reject(parsed.id, parsed.error->code, parsed.error->message);
  if (parsed.request->deadline_ms && now_ms() > *parsed.request->deadline_ms)
    return reject(parsed.id, ErrorCode::expired,
                  "the request's deadline_ms (" + std::to_string(*parsed.request->deadline_ms) + ") passed " +
                      std::to_string(now_ms() - *parsed.request->deadline_ms) + " ms before omnid read it; not run");
  if (std::holds_alternative<PingRequest>(parsed.request->command)) {
    send_reply(routing_id, req_envelope,
               ok_reply(parsed.id, {{"protocol", kProtocolVersion},
                                    {"protocols", json::array({kOldestProtocolVersion, kProtocolVersion})}}));
    return true;
  }
  if (const auto* ev = std::get_if<EventsRequest>(&parsed.request->command)) {
    bool complete = false;
    std::uint64_t oldest = 0;
    json events = events_->since(ev->since, ev->topics, complete, oldest);
    send_reply(routing_id, req_envelope,
               ok_reply(parsed.id, {{"events", std::move(events)}, {"complete", complete}, {"oldest_seq", oldest}}));
    return true;
  }
  IncomingRequest incoming;
  incoming.handle.routing_id_ = std::move(routing_id);
  incoming.handle.req_envelope_ = req_envelope;
  incoming.handle.id_ = parsed.id;
  incoming.request = std::move(*parsed.request);
  out = std::move(incoming);
  return true;
}

void ControlServer::send_reply(const std::string& routing_id, bool req_envelope, json reply) {
  if (!config_.instance.empty()) reply["instance"] = config_.instance;
  if (events_) reply["seq"] = events_->last_seq();
  std::string body = serialize(reply);
  try {
    // dontwait: a client that stopped reading (its queue is full) or went away loses its reply; the daemon
    // never waits on it.
    if (!router_->send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return;
    if (req_envelope) router_->send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    router_->send(zmq::buffer(body), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // EHOSTUNREACH and friends: the client is gone.
  }
}

void ControlServer::reply(const ReplyHandle& handle, json reply) {
  if (!reply.is_object()) reply = error_reply(handle.id_, ErrorCode::internal, "daemon produced a non-object reply");
  reply["id"] = handle.id_;
  send_reply(handle.routing_id_, handle.req_envelope_, reply);
}

void ControlServer::reply_ok(const ReplyHandle& handle, const json& fields) {
  send_reply(handle.routing_id_, handle.req_envelope_, ok_reply(handle.id_, fields));
}

void ControlServer::reply_error(const ReplyHandle& handle, ErrorCode code, std::string_view message) {
  send_reply(handle.routing_id_, handle.req_envelope_, error_reply(handle.id_, code, message));
}

}  // namespace omni::ipc
