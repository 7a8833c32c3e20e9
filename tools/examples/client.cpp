// Minimal omnid client written against the wire protocol only (cppzmq + nlohmann/json, no omnid library):
// what another program on the robot needs to drive omnid. See docs/protocol.md.
//   client [TEXT]   prints the status, then (with TEXT) asks a question and prints the answer as it streams.
// Endpoints: $OMNID_CONTROL / $OMNID_EVENTS or the defaults below.
//
// Nothing is missed and nothing waits on a guess: the status reply's `seq` marks where the turn's events begin;
// whatever the SUB socket has not delivered (it may still be connecting when the answer starts) comes from
// `events {"since": last_seq}`. ZMQ_IMMEDIATE keeps a request from being queued for a daemon that is not there.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

using nlohmann::json;

static std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// One request, one reply. DEALER: the reply is a single frame carrying our id.
static json call(zmq::socket_t& dealer, const json& request, int timeout_ms) {
  zmq::pollitem_t out{dealer.handle(), 0, ZMQ_POLLOUT, 0};
  if (zmq::poll(&out, 1, std::chrono::milliseconds(timeout_ms)) == 0)
    throw std::runtime_error("no connection to omnid (is it running?); the request was not sent");
  dealer.send(zmq::buffer(request.dump()), zmq::send_flags::dontwait);
  zmq::pollitem_t in{dealer.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&in, 1, std::chrono::milliseconds(timeout_ms)) == 0) throw std::runtime_error("no reply (timeout)");
  zmq::message_t reply;
  (void)dealer.recv(reply, zmq::recv_flags::none);
  return json::parse(reply.to_string_view());
}

int main(int argc, char** argv) try {
  zmq::context_t ctx;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::immediate, 1);
  dealer.connect(env_or("OMNID_CONTROL", "ipc:///run/omnid/control.sock"));

  json status = call(dealer, {{"id", 1}, {"cmd", "status"}}, 3000);
  std::cout << "status: " << status.dump() << "\n";
  if (argc < 2) return 0;

  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, "");  // everything: a gap in seq then always means a missed event
  sub.connect(env_or("OMNID_EVENTS", "ipc:///run/omnid/events.sock"));
  uint64_t last_seq = status["seq"];

  json reply = call(dealer, {{"id", "ask-1"}, {"cmd", "ask"}, {"text", argv[1]}, {"speak", false}}, 3000);
  if (!reply["ok"].get<bool>()) {
    std::cerr << "error " << reply["error"]["code"] << ": " << reply["error"]["message"] << "\n";
    return 1;
  }
  const json turn_id = reply["turn_id"];
  // Returns 0/1 when the turn ended, -1 to go on.
  auto handle = [&](const std::string& name, const json& event) {
    if (event["seq"].get<uint64_t>() <= last_seq) return -1;  // already seen
    last_seq = event["seq"];
    if (event.value("turn_id", json()) != turn_id) return -1;
    if (name == "response.delta") std::cout << event["text"].get<std::string>() << std::flush;
    if (name == "response.done") return event.value("stop", "") == "cancelled" ? 1 : 0;
    if (name == "turn.cancelled") return 1;
    return -1;
  };
  int id = 2;
  for (;;) {
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    int ended = -1;
    if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) > 0) {
      zmq::message_t topic, body;
      (void)sub.recv(topic, zmq::recv_flags::none);
      (void)sub.recv(body, zmq::recv_flags::none);
      json event = json::parse(body.to_string_view());
      if (event["seq"].get<uint64_t>() > last_seq + 1) {  // a gap: fetch what came before this one
        json missed = call(dealer, {{"id", id++}, {"cmd", "events"}, {"since", last_seq}}, 3000);
        for (const auto& e : missed["events"])
          if (ended < 0 && e["seq"] < event["seq"]) ended = handle(e["event"], e);
      }
      if (ended < 0) ended = handle(std::string(topic.to_string_view()), event);
    } else {  // quiet: the subscription may not be connected yet; ask the buffer
      json missed = call(dealer, {{"id", id++}, {"cmd", "events"}, {"since", last_seq}}, 3000);
      for (const auto& e : missed["events"])
        if (ended < 0) ended = handle(e["event"], e);
    }
    if (ended == 0) break;
    if (ended == 1) {
      std::cerr << "\ncancelled\n";
      return 1;
    }
  }
  std::cout << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "client: " << e.what() << "\n";
  return 3;
}
