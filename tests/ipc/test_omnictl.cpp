// omnictl end to end against a stand-in daemon loop: requests it builds, output, exit codes, ask --wait.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <zmq.h>

#include "ipc_test_util.h"

using namespace omni::ipc;
using namespace omni::ipc::test;
using nlohmann::json;

namespace {

struct CliRun {
  int exit_code;
  std::string out;  // stdout and stderr together
};

CliRun omnictl(const ServerConfig& cfg, const std::string& args, const std::string& env = "") {
  std::string cmd = env + " OMNID_CONTROL='" + cfg.control_endpoint + "' OMNID_EVENTS='" + cfg.events_endpoint +
                    "' " + OMNICTL_PATH + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A daemon stand-in that records requests and answers like the contract in docs/protocol.md says.
struct FakeDaemon {
  std::mutex mutex;
  std::vector<json> seen;  // each valid request as {"cmd", ...fields}
  std::unique_ptr<ServerLoop> loop;

  explicit FakeDaemon(ServerConfig cfg) {
    loop = std::make_unique<ServerLoop>(std::move(cfg), [this](ControlServer& s, IncomingRequest& in) {
      handle(s, in);
    });
  }

  void handle(ControlServer& s, IncomingRequest& in) {
    json record{{"cmd", command_name(in.request.command)}};
    if (auto* ask = std::get_if<AskRequest>(&in.request.command)) {
      if (ask->text) record["text"] = *ask->text;
      record["speak"] = ask->speak;
      record["wav_bytes"] = ask->wav ? ask->wav->size() : 0;
      if (ask->queue) record["queue"] = true;
      if (ask->preempt) record["preempt"] = true;
      if (ask->max_new_tokens) record["max_new_tokens"] = *ask->max_new_tokens;
      if (ask->speaker) record["speaker"] = *ask->speaker;
      for (const AskImage& image : ask->images)
        record["images"].push_back(image.path.empty() ? json{{"bytes", image.bytes.size()}, {"format", image.format}}
                                                      : json{{"path", image.path}});
      if (ask->queue) s.reply_ok(in.handle, {{"turn_id", 9}, {"queued", true}, {"position", 1}});
      else s.reply_ok(in.handle, {{"turn_id", 7}});
      // The answer streams as events after the reply.
      s.events().publish("turn.start", {{"turn_id", 7}, {"source", "ask"}});
      s.events().publish("response.delta", {{"turn_id", 6}, {"text", "not mine "}});
      s.events().publish("response.delta", {{"turn_id", 7}, {"text", "Hello"}});
      s.events().publish("response.delta", {{"turn_id", 7}, {"text", " world"}});
      s.events().publish("response.done", {{"turn_id", 7}, {"text", "Hello world"}, {"tokens", 3}});
    } else if (auto* set = std::get_if<SetRequest>(&in.request.command)) {
      if (set->speaker) record["speaker"] = *set->speaker;
      if (set->volume) record["volume"] = *set->volume;
      if (set->system_prompt) record["system_prompt"] = *set->system_prompt;
      if (set->sampling) {
        json sampling = json::object();
        auto put = [&](const char* key, const std::optional<std::optional<double>>& v) {
          if (v) sampling[key] = *v ? json(**v) : json(nullptr);
        };
        put("temperature", set->sampling->temperature);
        put("top_k", set->sampling->top_k);
        put("top_p", set->sampling->top_p);
        put("repetition_penalty", set->sampling->repetition_penalty);
        put("seed", set->sampling->seed);
        record["sampling"] = sampling;
      }
      if (set->speaker == "nobody") s.reply_error(in.handle, ErrorCode::not_found, "no speaker 'nobody'");
      else s.reply_ok(in.handle, {{"speaker", "ethan"}, {"volume", 1.0}, {"system_prompt", ""}});
    } else if (auto* cancel = std::get_if<CancelRequest>(&in.request.command)) {
      record["turn_id"] = cancel->turn_id ? json(*cancel->turn_id) : json(nullptr);
      s.reply_ok(in.handle, {{"turn_id", nullptr}});
    } else if (auto* listen = std::get_if<ListenRequest>(&in.request.command)) {
      record["enabled"] = listen->enabled;
      s.reply_ok(in.handle, {{"listening", listen->enabled}});
    } else if (std::holds_alternative<SayRequest>(in.request.command)) {
      record["text"] = std::get<SayRequest>(in.request.command).text;
      s.reply_ok(in.handle, {{"turn_id", 8}});
    } else if (std::holds_alternative<StatusRequest>(in.request.command)) {
      s.reply_ok(in.handle, {{"state", "idle"}, {"seq", s.events().last_seq()}, {"voices", {"Ethan", "Chelsie"}}});
    } else {
      s.reply_ok(in.handle);
    }
    std::lock_guard<std::mutex> lock(mutex);
    seen.push_back(record);
  }

  json last() {
    std::lock_guard<std::mutex> lock(mutex);
    return seen.empty() ? json() : seen.back();
  }
};

}  // namespace

TEST(Omnictl, CommandsBuildTheDocumentedRequests) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);

  CliRun r = omnictl(cfg, "ping");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "omnid is up (protocol 2)\n");
  r = omnictl(cfg, "status");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("state: idle"), std::string::npos) << r.out;
  r = omnictl(cfg, "--json status");
  EXPECT_EQ(json::parse(r.out)["state"], "idle");

  EXPECT_EQ(omnictl(cfg, "say 'good morning'").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "say"}, {"text", "good morning"}}));
  EXPECT_EQ(omnictl(cfg, "cancel 12").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "cancel"}, {"turn_id", 12}}));
  EXPECT_EQ(omnictl(cfg, "cancel").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "cancel"}, {"turn_id", nullptr}}));
  EXPECT_EQ(omnictl(cfg, "listen off").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "listen"}, {"enabled", false}}));
  EXPECT_EQ(omnictl(cfg, "set volume 0.25").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "set"}, {"volume", 0.25}}));
  EXPECT_EQ(omnictl(cfg, "set system-prompt 'Be brief.'").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "set"}, {"system_prompt", "Be brief."}}));
  EXPECT_EQ(omnictl(cfg, "reset").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "reset"}}));
  EXPECT_EQ(omnictl(cfg, "reload").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "reload"}}));

  std::string wav_path = dir.path() + "/q.wav";
  std::ofstream(wav_path, std::ios::binary) << std::string("RIFF\0\0\0\0WAVE", 12) << std::string(88, 'a');
  r = omnictl(cfg, "ask --wav " + wav_path + " --no-speak");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "turn 7\n");
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"speak", false}, {"wav_bytes", 100}}));
}

TEST(Omnictl, ErrorsAndExitCodes) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  {
    FakeDaemon daemon(cfg);
    CliRun r = omnictl(cfg, "set speaker nobody");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, "omnictl: error not_found: no speaker 'nobody'\n");
    r = omnictl(cfg, "set volume 3");  // range checked by the protocol layer
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("error bad_request: field 'volume' must be in [0, 1], got 3"), std::string::npos) << r.out;
    EXPECT_EQ(omnictl(cfg, "listen maybe").exit_code, 2);
    EXPECT_EQ(omnictl(cfg, "cancel -1").exit_code, 2);
    EXPECT_EQ(omnictl(cfg, "fly").exit_code, 2);
    EXPECT_EQ(omnictl(cfg, "").exit_code, 2);
    EXPECT_EQ(omnictl(cfg, "status --bogus").exit_code, 2);
    EXPECT_EQ(omnictl(cfg, "say --wait hi").exit_code, 2);
    EXPECT_EQ(omnictl(cfg, "ask --wav /nonexistent.wav").exit_code, 2);
  }
  CliRun r = omnictl(cfg, "status");  // the daemon is gone and its socket file removed
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "omnictl: omnid is not running (no socket at " + cfg.control_endpoint.substr(6) + ")\n");
  {
    ControlServer silent(cfg);  // bound but never answering
    r = omnictl(cfg, "--timeout 200 status");
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_NE(r.out.find("timed out after 200 ms"), std::string::npos) << r.out;
  }
}

TEST(Omnictl, CurveOverTcpWithKeysFromTheEnvironment) {
  char server_pub[41], server_sec[41], client_pub[41], client_sec[41];
  ASSERT_EQ(zmq_curve_keypair(server_pub, server_sec), 0);
  ASSERT_EQ(zmq_curve_keypair(client_pub, client_sec), 0);
  ServerConfig cfg;
  cfg.control_endpoint = "tcp://127.0.0.1:*";
  cfg.events_endpoint = "tcp://127.0.0.1:*";
  cfg.curve = CurveServerKeys{server_sec, {client_pub}};
  FakeDaemon daemon(cfg);
  ServerConfig bound = cfg;
  bound.control_endpoint = daemon.loop->server().bound_control_endpoint();
  bound.events_endpoint = daemon.loop->server().bound_events_endpoint();
  std::string env = std::string("OMNID_CURVE_SERVER_KEY='") + server_pub + "' OMNID_CURVE_PUBLIC_KEY='" + client_pub +
                    "' OMNID_CURVE_SECRET_KEY='" + client_sec + "'";
  CliRun r = omnictl(bound, "ask hi --wait", env);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "Hello world\n");
  r = omnictl(bound, "status");  // no keys: refused before connecting
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("omnid serves tcp only with CURVE keys"), std::string::npos) << r.out;
  r = omnictl(bound, "status", std::string("OMNID_CURVE_SERVER_KEY='") + server_pub + "'");
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

TEST(Omnictl, AskWaitPrintsTheStreamedAnswer) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);
  CliRun r = omnictl(cfg, "ask 'say hello' --wait");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "Hello world\n");
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"text", "say hello"}, {"speak", true}, {"wav_bytes", 0}}));
  r = omnictl(cfg, "--json ask hi --wait");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  // One JSON line per event of turn 7: turn.start, two deltas, response.done.
  std::vector<json> lines;
  std::size_t pos = 0;
  while (pos < r.out.size()) {
    auto nl = r.out.find('\n', pos);
    lines.push_back(json::parse(r.out.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0]["event"], "turn.start");
  EXPECT_EQ(lines[3]["event"], "response.done");
  EXPECT_EQ(lines[3]["tokens"], 3);
}

TEST(Omnictl, AskTakesQueuePreemptMaxNewTokensAndSpeaker) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);
  CliRun r = omnictl(cfg, "ask hi --queue --max-new-tokens 12 --speaker chelsie");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "turn 9 (queued, position 1)\n");
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"text", "hi"}, {"speak", true}, {"wav_bytes", 0}, {"queue", true},
                                 {"max_new_tokens", 12}, {"speaker", "chelsie"}}));
  r = omnictl(cfg, "ask hi --preempt");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"text", "hi"}, {"speak", true}, {"wav_bytes", 0}, {"preempt", true}}));
  r = omnictl(cfg, "say hi --queue");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("belong to 'ask'"), std::string::npos) << r.out;
  r = omnictl(cfg, "ask hi --max-new-tokens lots");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--max-new-tokens needs a positive number"), std::string::npos) << r.out;
}

TEST(Omnictl, AskImageSendsAbsolutePathsInOrderOrInlineBase64) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);
  const std::string png = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/images/garden_224x160.png";
  const std::string jpeg = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/images/street_250x190.jpg";
  CliRun r = omnictl(cfg, "ask 'What is this?' --image " + png + " --image relative/pic.jpg");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"text", "What is this?"}, {"speak", true}, {"wav_bytes", 0},
                                 {"images", {{{"path", png}}, {{"path", cwd + "/relative/pic.jpg"}}}}}));
  // --inline: the files' bytes, each with the format its first bytes announce; images alone make a question.
  r = omnictl(cfg, "ask --image " + jpeg + " --image " + png + " --inline");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"speak", true}, {"wav_bytes", 0},
                                 {"images", {{{"bytes", std::filesystem::file_size(jpeg)}, {"format", "jpeg"}},
                                             {{"bytes", std::filesystem::file_size(png)}, {"format", "png"}}}}}));
  const std::string not_image = std::string(OMNI_SOURCE_DIR) + "/docs/protocol.md";
  r = omnictl(cfg, "ask --image " + not_image + " --inline");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find(not_image + " is not a PNG or JPEG file"), std::string::npos) << r.out;
  r = omnictl(cfg, "ask hi --inline");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--inline sends the --image files"), std::string::npos) << r.out;
  r = omnictl(cfg, "say hi --image " + png);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("belong to 'ask'"), std::string::npos) << r.out;
}

TEST(Omnictl, VoicesSamplingAndOneEndpointForBothSockets) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);
  CliRun r = omnictl(cfg, "voices");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "Ethan\nChelsie\n");
  EXPECT_EQ(omnictl(cfg, "set temperature 0.7").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "set"}, {"sampling", {{"temperature", 0.7}}}}));
  EXPECT_EQ(omnictl(cfg, "set top-k 40").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "set"}, {"sampling", {{"top_k", 40.0}}}}));
  EXPECT_EQ(omnictl(cfg, "set seed default").exit_code, 0);
  EXPECT_EQ(daemon.last(), (json{{"cmd", "set"}, {"sampling", {{"seed", nullptr}}}}));
  r = omnictl(cfg, "set top-p lots");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("top-p must be a number or 'default'"), std::string::npos) << r.out;

  // --endpoint ipc://DIR/control.sock alone: the events socket is DIR/events.sock, the same daemon's (no
  // environment variable says otherwise), so ask --wait follows the answer there.
  const std::string cmd = std::string("env -u OMNID_CONTROL -u OMNID_EVENTS ") + OMNICTL_PATH + " --endpoint '" +
                          cfg.control_endpoint + "' ask hi --wait 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_TRUE(pipe);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_EQ(out, "Hello world\n");
}

// The example clients of docs/protocol.md against the same stand-in daemon.
TEST(Examples, CppClientStreamsTheAnswer) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);
  std::string cmd = std::string("OMNID_CONTROL='") + cfg.control_endpoint + "' OMNID_EVENTS='" +
                    cfg.events_endpoint + "' " + OMNI_EXAMPLE_CLIENT_PATH + " 'say hello' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_TRUE(pipe);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  int status = ::pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("status: {"), std::string::npos) << out;
  EXPECT_NE(out.find("\nHello world\n"), std::string::npos) << out;
}

TEST(Examples, PythonClientStreamsTheAnswer) {
  // `make deps` installs Debian's python3-zmq for /usr/bin/python3; a python3 earlier on PATH (pyenv, a venv)
  // may lack it, so the first interpreter that can import zmq runs the example.
  std::string python;
  for (const char* candidate : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(candidate) + " -c 'import zmq' >/dev/null 2>&1").c_str()) == 0) {
      python = candidate;
      break;
    }
  if (python.empty()) GTEST_SKIP() << "pyzmq is not installed (make deps installs python3-zmq); tools/examples/client.py not exercised";
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  FakeDaemon daemon(cfg);
  std::string cmd = std::string("OMNID_CONTROL='") + cfg.control_endpoint + "' OMNID_EVENTS='" +
                    cfg.events_endpoint + "' " + python + " " + OMNI_SOURCE_DIR + "/tools/examples/client.py ";
  auto run = [&](const std::string& args) {
    FILE* pipe = ::popen((cmd + args + " 2>&1").c_str(), "r");
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    int status = ::pclose(pipe);
    return std::make_pair(WEXITSTATUS(status), out);
  };
  auto [code, out] = run("ask 'say hello'");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "Hello world\n");
  EXPECT_EQ(daemon.last(), (json{{"cmd", "ask"}, {"text", "say hello"}, {"speak", false}, {"wav_bytes", 0}}));
  std::tie(code, out) = run("status");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(json::parse(out)["state"], "idle");
}
