// Minimal omnid client written against the wire protocol only (cppzmq + nlohmann/json, no omnid library):
// what another program on the robot needs to drive omnid. See docs/protocol.md.
//   client [TEXT]   prints the status, then (with TEXT) asks a question and prints the answer as it streams.
// Endpoints: $OMNID_CONTROL / $OMNID_EVENTS or the defaults below.
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

using nlohmann::json;

static std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// One request, one reply. DEALER: the reply is a single frame carrying our id.
static json call(zmq::socket_t& dealer, const json& request, int timeout_ms) {
  dealer.send(zmq::buffer(request.dump()), zmq::send_flags::none);
  zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) throw std::runtime_error("no reply (timeout)");
  zmq::message_t reply;
  (void)dealer.recv(reply, zmq::recv_flags::none);
  return json::parse(reply.to_string_view());
}

int main(int argc, char** argv) try {
  zmq::context_t ctx;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(env_or("OMNID_CONTROL", "ipc:///run/omnid/control.sock"));

  json status = call(dealer, {{"id", 1}, {"cmd", "status"}}, 3000);
  std::cout << "status: " << status.dump() << "\n";
  if (argc < 2) return 0;

  // Subscribe before asking so the turn's first events are not missed (a PUB drops events for subscribers
  // whose subscription has not arrived yet).
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, "response.");
  sub.set(zmq::sockopt::subscribe, "turn.cancelled");
  sub.connect(env_or("OMNID_EVENTS", "ipc:///run/omnid/events.sock"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  json reply = call(dealer, {{"id", "ask-1"}, {"cmd", "ask"}, {"text", argv[1]}, {"speak", false}}, 3000);
  if (!reply["ok"].get<bool>()) {
    std::cerr << "error " << reply["error"]["code"] << ": " << reply["error"]["message"] << "\n";
    return 1;
  }
  json turn_id = reply["turn_id"];
  for (;;) {
    zmq::message_t topic, body;
    (void)sub.recv(topic, zmq::recv_flags::none);
    (void)sub.recv(body, zmq::recv_flags::none);
    json event = json::parse(body.to_string_view());
    if (event.value("turn_id", json()) != turn_id) continue;
    if (topic.to_string_view() == "response.delta") std::cout << event["text"].get<std::string>() << std::flush;
    if (topic.to_string_view() == "response.done") break;
    if (topic.to_string_view() == "turn.cancelled") {
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
