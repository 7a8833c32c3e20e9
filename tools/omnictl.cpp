// omnictl: command-line client for omnid's control protocol v1 (docs/protocol.md).
// Exit codes: 0 ok, 1 omnid answered with an error, 2 usage, 3 omnid not reachable / timed out.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ipc/client.h"
#include "ipc/protocol.h"

namespace {

using nlohmann::json;
using omni::ipc::ClientError;
using std::chrono::milliseconds;

constexpr int kExitOk = 0, kExitErrorReply = 1, kExitUsage = 2, kExitUnreachable = 3;

const char* kUsage = R"(usage: omnictl [--endpoint E] [--events E] [--timeout MS] [--json] COMMAND [ARGS]

commands:
  ping                                  check that omnid answers
  status                                show the daemon's state
  voices                                list the model's voices (what 'set speaker' takes)
  ask [TEXT] [--wav FILE] [--image FILE]... [--inline] [--camera] [--no-speak] [--wait] [--queue|--preempt]
      [--max-new-tokens N] [--speaker NAME]
                                        start a turn from text, a WAV file and/or images; --wait follows the
                                        events and prints the answer; --queue waits for a running turn instead
                                        of 'busy', --preempt cancels it; --max-new-tokens and --speaker: this
                                        turn's. --image (PNG or JPEG, repeatable, in order) sends the file's
                                        absolute path for omnid to read; with --inline, its bytes (base64)
                                        instead, for an omnid that cannot read the file; --camera attaches
                                        the camera's latest frame (after the images)
  say TEXT                              speak TEXT verbatim
  cancel [TURN_ID]                      cancel the running turn (or the given one)
  listen on|off                         enable or disable the microphone
  reset                                 forget the conversation
  set speaker NAME | set volume V | set system-prompt TEXT
  set temperature|top-k|top-p|repetition-penalty|seed V|default
                                        sampling (docs/config.md model.sampling); 'default': the checkpoint's
  reload                                re-read the configuration file
  events [TOPIC...]                     print events (one JSON line each) until interrupted

options:
  --endpoint E   control endpoint (default $OMNID_CONTROL or ipc:///run/omnid/control.sock)
  --events E     event endpoint (default $OMNID_EVENTS or ipc:///run/omnid/events.sock; with --endpoint
                 ipc://DIR/control.sock and neither, ipc://DIR/events.sock: the same daemon's)
  --timeout MS   how long to wait for a reply (default 5000)
  --json         print replies as JSON
environment:
  OMNID_CONTROL, OMNID_EVENTS    default endpoints
  OMNID_CURVE_SERVER_KEY, OMNID_CURVE_PUBLIC_KEY, OMNID_CURVE_SECRET_KEY
                 Z85 CURVE keys (all three) for tcp:// endpoints
exit codes: 0 ok, 1 error reply, 2 usage, 3 omnid not reachable or timed out
)";

volatile std::sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

struct UsageError {
  std::string message;
};

struct Options {
  std::string control = omni::ipc::default_control_endpoint();
  std::string events = omni::ipc::default_events_endpoint();
  long timeout_ms = 5000;
  bool json_output = false;
  std::string wav_path;
  std::vector<std::string> images;  // --image, in order
  bool camera = false;               // --camera
  bool inline_images = false;       // --inline: send the images' bytes instead of their paths
  bool no_speak = false;
  bool wait = false;
  bool queue = false;
  bool preempt = false;
  long max_new_tokens = 0;  // 0: the daemon's
  std::string speaker;
  bool events_given = false;  // --events or $OMNID_EVENTS
  std::vector<std::string> args;  // the command and its positional arguments
};

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, const std::string& flag) -> std::string {
    if (i + 1 >= argc) throw UsageError{flag + " needs a value"};
    return argv[++i];
  };
  bool positional_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (positional_only || a.size() < 2 || a.rfind("--", 0) != 0) {
      o.args.push_back(a);
    } else if (a == "--") {
      positional_only = true;
    } else if (a == "--endpoint") {
      o.control = value(i, a);
    } else if (a == "--events") {
      o.events = value(i, a);
      o.events_given = true;
    } else if (a == "--timeout") {
      std::string v = value(i, a);
      char* end = nullptr;
      o.timeout_ms = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || o.timeout_ms <= 0) throw UsageError{"--timeout needs a positive number of ms, not '" + v + "'"};
    } else if (a == "--json") {
      o.json_output = true;
    } else if (a == "--wav") {
      o.wav_path = value(i, a);
    } else if (a == "--image") {
      o.images.push_back(value(i, a));
    } else if (a == "--camera") {
      o.camera = true;
    } else if (a == "--inline") {
      o.inline_images = true;
    } else if (a == "--no-speak") {
      o.no_speak = true;
    } else if (a == "--wait") {
      o.wait = true;
    } else if (a == "--queue") {
      o.queue = true;
    } else if (a == "--preempt") {
      o.preempt = true;
    } else if (a == "--max-new-tokens") {
      std::string v = value(i, a);
      char* end = nullptr;
      o.max_new_tokens = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || o.max_new_tokens <= 0)
        throw UsageError{"--max-new-tokens needs a positive number, not '" + v + "'"};  // omnid checks the range
    } else if (a == "--speaker") {
      o.speaker = value(i, a);
    } else if (a == "--help") {
      std::cout << kUsage;
      std::exit(kExitOk);
    } else {
      throw UsageError{"unknown option " + a};
    }
  }
  if (o.args.empty()) throw UsageError{"no command given"};
  // Both sockets of one daemon: an --endpoint ipc://DIR/control.sock without --events means DIR's events.sock.
  const char* env_events = std::getenv("OMNID_EVENTS");
  const std::string suffix = "/control.sock";
  if (!o.events_given && !(env_events && *env_events) && o.control.rfind("ipc://", 0) == 0 &&
      o.control.size() > suffix.size() && o.control.compare(o.control.size() - suffix.size(), suffix.size(), suffix) == 0)
    o.events = o.control.substr(0, o.control.size() - suffix.size()) + "/events.sock";
  if ((!o.wav_path.empty() || !o.images.empty() || o.inline_images || o.camera || o.no_speak || o.wait || o.queue ||
       o.preempt || o.max_new_tokens || !o.speaker.empty()) &&
      o.args[0] != "ask")
    throw UsageError{
        "--wav, --image, --inline, --camera, --no-speak, --wait, --queue, --preempt, --max-new-tokens and --speaker "
        "belong to "
        "'ask'"};
  if (o.inline_images && o.images.empty()) throw UsageError{"--inline sends the --image files; give at least one"};
  return o;
}

void expect_args(const Options& o, std::size_t min, std::size_t max) {
  std::size_t n = o.args.size() - 1;
  if (n < min || n > max) throw UsageError{"wrong number of arguments for '" + o.args[0] + "'"};
}

// One entry of ask's images: {"path": absolute} or, inline, {"base64", "format"} (the format from the file's
// first bytes; omnid checks the rest).
json image_item(const std::string& file, bool inline_bytes) {
  if (!inline_bytes) {
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(file, ec);
    if (ec) throw UsageError{"--image " + file + ": cannot make the path absolute: " + ec.message()};
    return {{"path", abs.lexically_normal().string()}};
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UsageError{"cannot read image file " + file};
  const std::string bytes(std::istreambuf_iterator<char>(in), {});
  const char* format = bytes.rfind("\x89PNG\r\n\x1a\n", 0) == 0 ? "png"
                       : bytes.rfind("\xff\xd8\xff", 0) == 0     ? "jpeg"
                                                                 : nullptr;
  if (!format) throw UsageError{"--image " + file + " is not a PNG or JPEG file (--inline sends only those)"};
  return {{"base64", omni::ipc::encode_base64(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size())},
          {"format", format}};
}

// Builds the request for the command line. `binary` receives the WAV bytes for ask --wav.
json build_request(const Options& o, std::optional<std::string>& binary) {
  const std::string& cmd = o.args[0];
  if (cmd == "ping" || cmd == "status" || cmd == "reset" || cmd == "reload") {
    expect_args(o, 0, 0);
    return {{"cmd", cmd}};
  }
  if (cmd == "voices") {
    expect_args(o, 0, 0);
    return {{"cmd", "status"}};
  }
  if (cmd == "ask") {
    expect_args(o, 0, 1);
    json r{{"cmd", "ask"}};
    if (o.args.size() == 2) r["text"] = o.args[1];
    if (o.no_speak) r["speak"] = false;
    if (o.queue) r["queue"] = true;
    if (o.preempt) r["preempt"] = true;
    if (o.max_new_tokens) r["max_new_tokens"] = o.max_new_tokens;
    if (!o.speaker.empty()) r["speaker"] = o.speaker;
    if (!o.wav_path.empty()) {
      std::ifstream in(o.wav_path, std::ios::binary);
      if (!in) throw UsageError{"cannot read WAV file " + o.wav_path};
      binary = std::string(std::istreambuf_iterator<char>(in), {});
    }
    for (const std::string& file : o.images) r["images"].push_back(image_item(file, o.inline_images));
    if (o.camera) r["camera"] = true;
    if (o.args.size() == 1 && !binary && o.images.empty() && !o.camera)
      throw UsageError{"ask needs TEXT, --wav FILE, --image FILE or --camera"};
    return r;
  }
  if (cmd == "say") {
    expect_args(o, 1, 1);
    return {{"cmd", "say"}, {"text", o.args[1]}};
  }
  if (cmd == "cancel") {
    expect_args(o, 0, 1);
    json r{{"cmd", "cancel"}};
    if (o.args.size() == 2) {
      char* end = nullptr;
      unsigned long long id = std::strtoull(o.args[1].c_str(), &end, 10);
      if (o.args[1].empty() || *end != '\0' || id == 0 || o.args[1][0] == '-')
        throw UsageError{"TURN_ID must be a positive integer, not '" + o.args[1] + "'"};
      r["turn_id"] = id;
    }
    return r;
  }
  if (cmd == "listen") {
    expect_args(o, 1, 1);
    if (o.args[1] != "on" && o.args[1] != "off") throw UsageError{"listen takes 'on' or 'off'"};
    return {{"cmd", "listen"}, {"enabled", o.args[1] == "on"}};
  }
  if (cmd == "set") {
    expect_args(o, 2, 2);
    const std::string& key = o.args[1];
    if (key == "speaker") return {{"cmd", "set"}, {"speaker", o.args[2]}};
    if (key == "system-prompt" || key == "system_prompt") return {{"cmd", "set"}, {"system_prompt", o.args[2]}};
    if (key == "volume") {
      char* end = nullptr;
      double v = std::strtod(o.args[2].c_str(), &end);
      if (o.args[2].empty() || *end != '\0') throw UsageError{"volume must be a number in [0, 1]"};
      return {{"cmd", "set"}, {"volume", v}};  // the range is checked by omnid, which names the rule
    }
    for (const char* name : {"temperature", "top-k", "top-p", "repetition-penalty", "seed"}) {
      if (key != name) continue;
      std::string field = key;
      for (char& c : field) c = c == '-' ? '_' : c;
      if (o.args[2] == "default") return {{"cmd", "set"}, {"sampling", {{field, nullptr}}}};
      char* end = nullptr;
      double v = std::strtod(o.args[2].c_str(), &end);
      if (o.args[2].empty() || *end != '\0') throw UsageError{key + " must be a number or 'default'"};
      json value = v;  // omnid checks the range and that top_k / seed are whole, and names the rule
      if ((field == "top_k" || field == "seed") && v == static_cast<double>(static_cast<long long>(v)))
        value = static_cast<long long>(v);
      return {{"cmd", "set"}, {"sampling", {{field, value}}}};  // ranges are checked by omnid, which names them
    }
    throw UsageError{"set takes speaker, volume, system-prompt, temperature, top-k, top-p, repetition-penalty or "
                     "seed, not '" + key + "'"};
  }
  throw UsageError{"unknown command '" + cmd + "'"};
}

void print_human(const std::string& cmd, const json& reply) {
  json fields = reply;
  fields.erase("id");
  fields.erase("ok");
  if (cmd == "voices") {
    for (const auto& v : fields.value("voices", json::array())) std::cout << v.get<std::string>() << "\n";
  } else if (cmd == "ask" || cmd == "say") {
    std::cout << "turn " << fields.value("turn_id", json(nullptr)).dump();
    if (fields.value("queued", false))
      std::cout << " (queued, position " << fields.value("position", json(nullptr)).dump() << ")";
    std::cout << "\n";
  } else if (cmd == "ping") {
    std::cout << "omnid is up (protocol " << fields.value("protocol", json(nullptr)).dump() << ")\n";
  } else if (fields.empty()) {
    std::cout << "ok\n";
  } else {
    for (const auto& [k, v] : fields.items()) std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  }
}

// CURVE keys for tcp:// endpoints come from the environment (never from the command line, where other users
// could read the secret key in the process list).
std::optional<omni::ipc::ClientCurveKeys> curve_from_env() {
  const char* server = std::getenv("OMNID_CURVE_SERVER_KEY");
  const char* pub = std::getenv("OMNID_CURVE_PUBLIC_KEY");
  const char* sec = std::getenv("OMNID_CURVE_SECRET_KEY");
  int set = (server && *server) + (pub && *pub) + (sec && *sec);
  if (set == 0) return std::nullopt;
  if (set != 3)
    throw UsageError{"set all of OMNID_CURVE_SERVER_KEY, OMNID_CURVE_PUBLIC_KEY and OMNID_CURVE_SECRET_KEY, or none"};
  return omni::ipc::ClientCurveKeys{server, pub, sec};
}

// `backlog`: the turn's events that omnid published before the subscription was sure to be active (from
// `events since`); live events up to `last_seq` are those again and are skipped.
int follow_turn(const Options& o, omni::ipc::EventSubscriber& events, const json& turn_id,
                const std::string& instance, std::deque<omni::ipc::Event> backlog, std::uint64_t last_seq) {
  milliseconds silence(std::max(o.timeout_ms, 5000L));
  bool printed = false;
  while (!g_interrupted) {
    std::optional<omni::ipc::Event> e;
    if (!backlog.empty()) {
      e = std::move(backlog.front());
      backlog.pop_front();
    } else {
      e = events.next(silence);
      if (!e) {
        if (g_interrupted) break;
        std::cerr << "omnictl: no events from omnid for " << silence.count() << " ms (is it still running?)\n";
        return kExitUnreachable;
      }
      if (e->body.value("seq", std::uint64_t(0)) <= last_seq) continue;  // in the backlog already
    }
    // The events socket must be the same daemon's as the control socket (heartbeats name their instance).
    if (e->name == "heartbeat" && !instance.empty() && e->body.contains("instance") &&
        e->body["instance"] != instance) {
      std::cerr << "omnictl: the events endpoint " << o.events << " belongs to another omnid (instance "
                << e->body["instance"].get<std::string>() << ") than the control endpoint " << o.control
                << " (instance " << instance << "); give both --endpoint and --events\n";
      return kExitUsage;
    }
    if (!e->body.contains("turn_id") || e->body["turn_id"] != turn_id) continue;
    if (o.json_output) {
      json line = e->body;
      line["event"] = e->name;
      std::cout << omni::ipc::serialize(line) << std::endl;
    }
    if (e->name == "response.delta" && !o.json_output) {
      std::cout << e->body.value("text", "") << std::flush;
      printed = true;
    } else if (e->name == "response.done") {
      // A cancelled answer's response.done (its partial text) comes before its turn.cancelled: go on to that.
      if (e->body.value("stop", "") == "cancelled") continue;
      if (!o.json_output) std::cout << (printed ? "" : e->body.value("text", "")) << std::endl;
      return kExitOk;
    } else if (e->name == "turn.cancelled") {
      if (!o.json_output) std::cerr << (printed ? "\n" : "") << "omnictl: turn " << turn_id.dump() << " cancelled ("
                                    << e->body.value("reason", "?") << ")\n";
      return kExitErrorReply;
    } else if (e->name == "error") {
      if (!o.json_output) std::cerr << "omnictl: error " << e->body.value("code", "?") << ": "
                                    << e->body.value("message", "") << "\n";
      return kExitErrorReply;
    }
  }
  return kExitErrorReply;  // interrupted
}

int follow_events(const Options& o) {
  std::vector<std::string> topics(o.args.begin() + 1, o.args.end());
  omni::ipc::EventSubscriber events(o.events, topics, curve_from_env());
  // A refused connection is reported here (access denied) instead of printing nothing forever.
  if (!events.wait_connected(milliseconds(o.timeout_ms)))
    throw ClientError(ClientError::Kind::timeout, "timed out after " + std::to_string(o.timeout_ms) +
                                                      " ms connecting to the event socket " + o.events);
  while (!g_interrupted) {
    auto e = events.next(milliseconds(500));
    if (!e) continue;
    json line = e->body;
    line["event"] = e->name;
    // An event's binary frame (speech.audio's PCM) is not printed: only its size.
    if (e->binary) line["binary_bytes"] = e->binary->size();
    std::cout << omni::ipc::serialize(line) << std::endl;
  }
  return kExitOk;
}

int run(const Options& o) {
  if (o.args[0] == "events") return follow_events(o);
  std::optional<std::string> binary;
  json request = build_request(o, binary);
  std::unique_ptr<omni::ipc::EventSubscriber> events;
  if (o.wait) {
    // Subscribe before asking, so the first events of the turn are not missed.
    events = std::make_unique<omni::ipc::EventSubscriber>(
        o.events, std::vector<std::string>{"response.", "turn.", "error", "heartbeat"}, curve_from_env());
    if (!events->wait_connected(milliseconds(o.timeout_ms)))
      throw ClientError(ClientError::Kind::timeout, "timed out after " + std::to_string(o.timeout_ms) +
                                                        " ms connecting to the event socket " + o.events);
  }
  omni::ipc::ControlClient client(o.control, curve_from_env());
  // Where the turn's events will begin: a subscription may still be joining when they are published, so
  // whatever it misses comes from `events since` this seq.
  const std::uint64_t before =
      o.wait ? client.request({{"cmd", "ping"}}, std::nullopt, milliseconds(o.timeout_ms)).value("seq", std::uint64_t(0))
             : 0;
  json reply = client.request(request, binary, milliseconds(o.timeout_ms));
  if (!reply.value("ok", false)) {
    const json& err = reply.contains("error") ? reply["error"] : json::object();
    if (o.json_output) std::cout << omni::ipc::serialize(reply) << std::endl;
    std::cerr << "omnictl: error " << err.value("code", "?") << ": " << err.value("message", "") << "\n";
    return kExitErrorReply;
  }
  if (o.wait) {
    if (!reply.contains("turn_id")) {
      std::cerr << "omnictl: omnid's ask reply has no turn_id\n";
      return kExitErrorReply;
    }
    json missed = client.request({{"cmd", "events"}, {"since", before}, {"topics", {"response.", "turn.", "error"}}},
                                 std::nullopt, milliseconds(o.timeout_ms));
    std::deque<omni::ipc::Event> backlog;
    std::uint64_t last_seq = before;
    for (json& e : missed.value("events", json::array())) {
      last_seq = std::max(last_seq, e.value("seq", std::uint64_t(0)));
      std::string name = e.value("event", "");
      e.erase("event");
      backlog.push_back({std::move(name), std::move(e), std::nullopt});
    }
    return follow_turn(o, *events, reply["turn_id"], reply.value("instance", ""), std::move(backlog), last_seq);
  }
  if (o.json_output) std::cout << omni::ipc::serialize(reply) << std::endl;
  else print_human(o.args[0], reply);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "omnictl: " << e.message << "\n" << kUsage;
    return kExitUsage;
  } catch (const ClientError& e) {
    std::cerr << "omnictl: " << e.what() << "\n";
    if (e.kind == ClientError::Kind::bad_endpoint) return kExitUsage;
    return e.kind == ClientError::Kind::protocol ? kExitErrorReply : kExitUnreachable;
  } catch (const std::exception& e) {
    std::cerr << "omnictl: " << e.what() << "\n";
    return kExitUnreachable;
  }
}
