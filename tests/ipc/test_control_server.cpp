// ControlServer + client library over real ipc:// sockets in a temporary directory.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include <random>
#include <zmq.hpp>

#include "ipc/client.h"
#include "ipc_test_util.h"

using namespace omni::ipc;
using namespace omni::ipc::test;
using nlohmann::json;
using std::chrono::milliseconds;

namespace {

std::string path_of(const std::string& endpoint) { return endpoint.substr(6); }

// A raw DEALER for sending arbitrary frames.
struct RawDealer {
  zmq::context_t ctx;
  zmq::socket_t socket{ctx, zmq::socket_type::dealer};
  explicit RawDealer(const std::string& endpoint, zmq::socket_type type = zmq::socket_type::dealer)
      : socket(ctx, type) {
    socket.set(zmq::sockopt::linger, 0);
    socket.connect(endpoint);
  }
  void send(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i)
      socket.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  // All frames of the next message, or empty on timeout.
  std::vector<std::string> receive(milliseconds timeout) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) <= 0) return {};
    std::vector<std::string> frames;
    zmq::message_t m;
    do {
      (void)socket.recv(m, zmq::recv_flags::none);
      frames.push_back(m.to_string());
    } while (m.more());
    return frames;
  }
};

json error_of(const std::vector<std::string>& frames) {
  EXPECT_FALSE(frames.empty()) << "no reply";
  if (frames.empty()) return json();
  json reply = json::parse(frames.back());
  EXPECT_EQ(reply["ok"], false) << reply.dump();
  return reply;
}

}  // namespace

TEST(ControlServer, CreatesSocketDirectoryAndSetsModes) {
  TempDir dir;
  ::umask(0);  // the modes must not depend on the umask
  ServerConfig cfg = config_in(dir, "a/b");
  ControlServer server(cfg);
  ::umask(022);
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() + "/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(::stat((dir.path() + "/a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  for (const auto& ep : {cfg.control_endpoint, cfg.events_endpoint}) {
    ASSERT_EQ(::stat(path_of(ep).c_str(), &st), 0) << ep;
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0660u) << ep;
  }
}

TEST(ControlServer, RefusesUnsafeOrBusyEndpoints) {
  TempDir dir;
  ServerConfig tcp = config_in(dir);
  tcp.control_endpoint = "tcp://127.0.0.1:*";
  try {
    ControlServer s(tcp);
    FAIL() << "tcp without CURVE was accepted";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("tcp:// is only allowed with CURVE keys"), std::string::npos) << e.what();
  }
  ServerConfig abstract = config_in(dir);
  abstract.events_endpoint = "ipc://@omnid";
  EXPECT_THROW(ControlServer s(abstract), SetupError);
  ServerConfig inproc = config_in(dir);
  inproc.control_endpoint = "inproc://x";
  EXPECT_THROW(ControlServer s(inproc), SetupError);

  ServerConfig cfg = config_in(dir);
  ControlServer first(cfg);
  try {
    ControlServer second(cfg);
    FAIL() << "a second server took over a live socket";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("another process is already listening"), std::string::npos) << e.what();
  }
}

TEST(ControlServer, ServesRequestsAndAnswersPingItself) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  ServerLoop loop(cfg, echo_handler);
  ControlClient client(cfg.control_endpoint);
  json pong = client.request({{"cmd", "ping"}, {"id", "p1"}}, std::nullopt, milliseconds(2000));
  // Every reply carries the last event seq (0: none yet; this server was given no instance id).
  EXPECT_EQ(pong, (json{{"id", "p1"}, {"ok", true}, {"protocol", 2}, {"protocols", {1, 2}}, {"seq", 0}}));
  json status = client.request({{"cmd", "status"}}, std::nullopt, milliseconds(2000));
  EXPECT_EQ(status["ok"], true);
  EXPECT_EQ(status["cmd"], "status");
  std::string wav = std::string("RIFF\0\0\0\0WAVE", 12) + std::string(100, 'x');
  json ask = client.request({{"cmd", "ask"}}, wav, milliseconds(2000));
  EXPECT_EQ(ask["wav_bytes"], 112);
  EXPECT_EQ(loop.handled(), 2u);  // ping never reached the handler
}

TEST(ControlServer, ReqClientsGetTheirEnvelopeBack) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  ServerLoop loop(cfg, echo_handler);
  RawDealer req(cfg.control_endpoint, zmq::socket_type::req);
  req.send({R"({"id":5,"cmd":"status"})"});
  auto frames = req.receive(milliseconds(2000));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(json::parse(frames[0])["id"], 5);
  req.send({"not json"});
  frames = req.receive(milliseconds(2000));
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(json::parse(frames[0])["error"]["code"], "bad_request");
}

TEST(ControlServer, MalformedMultipartGetsErrorsWhileOthersAreServed) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  ServerLoop loop(cfg, echo_handler);
  constexpr int kRequests = 200;
  std::atomic<int> served{0};
  auto good_client = [&](const std::string& tag) {
    ControlClient client(cfg.control_endpoint);
    for (int i = 0; i < kRequests; ++i) {
      json id = {tag, i};
      json reply = client.request({{"id", id}, {"cmd", "status"}}, std::nullopt, milliseconds(5000));
      if (reply["id"] == id && reply["ok"] == true) ++served;
    }
  };
  std::thread a(good_client, "a"), b(good_client, "b");

  RawDealer bad(cfg.control_endpoint);
  // Three frames: refused, with the id salvaged from the first frame.
  bad.send({R"({"id":"three","cmd":"ask","text":"x"})", "RIFF", "extra"});
  json r = error_of(bad.receive(milliseconds(2000)));
  EXPECT_EQ(r["id"], "three");
  EXPECT_EQ(r["error"]["code"], "bad_request");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("3 frames"), std::string::npos);
  // Binary first frame.
  bad.send({std::string("\x00\x01\xff\xfe", 4), R"({"id":1,"cmd":"ping"})"});
  r = error_of(bad.receive(milliseconds(2000)));
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_NE(r["error"]["message"].get<std::string>().find("not valid UTF-8 JSON"), std::string::npos);
  // Empty frame, unknown command, wrong type, WAV for a command without audio.
  bad.send({""});
  EXPECT_EQ(error_of(bad.receive(milliseconds(2000)))["error"]["code"], "bad_request");
  bad.send({R"({"id":2,"cmd":"dance"})"});
  EXPECT_EQ(error_of(bad.receive(milliseconds(2000)))["error"]["code"], "unknown_command");
  bad.send({R"({"id":3,"cmd":"listen","enabled":"yes"})"});
  EXPECT_EQ(error_of(bad.receive(milliseconds(2000)))["id"], 3);
  bad.send({R"({"id":4,"cmd":"say","text":"x"})", "RIFF0000WAVE"});
  EXPECT_EQ(error_of(bad.receive(milliseconds(2000)))["error"]["code"], "bad_request");

  a.join();
  b.join();
  EXPECT_EQ(served.load(), 2 * kRequests);
  EXPECT_EQ(loop.server().requests_rejected(), 6u);
}

TEST(ControlServer, RandomFramesAlwaysGetExactlyOneReply) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  ServerLoop loop(cfg, echo_handler);
  RawDealer dealer(cfg.control_endpoint);
  std::mt19937 rng(99);
  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; ++i) {
    std::vector<std::string> frames(1 + rng() % 4);
    for (auto& f : frames) {
      f.resize(rng() % 40);
      for (auto& c : f) c = static_cast<char>(rng());
    }
    if (i % 3 == 0) frames[0] = R"({"id":)" + std::to_string(i) + R"(,"cmd":"status"})";
    dealer.send(frames);
  }
  int replies = 0;
  while (!dealer.receive(milliseconds(1000)).empty()) ++replies;
  EXPECT_EQ(replies, kMessages);
}

TEST(ControlServer, OversizedRequests) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  cfg.max_message_bytes = 4096;
  ServerLoop loop(cfg, echo_handler);
  RawDealer dealer(cfg.control_endpoint);
  std::string big_wav = std::string("RIFF\0\0\0\0WAVE", 12) + std::string(5000, 'x');
  // Above max_message_bytes, within the transport ceiling (2x): a too_large reply carrying the id.
  dealer.send({R"({"id":"big","cmd":"ask"})", big_wav});
  json r = error_of(dealer.receive(milliseconds(2000)));
  EXPECT_EQ(r["id"], "big");
  EXPECT_EQ(r["error"]["code"], "too_large");
  EXPECT_NE(r["error"]["message"].get<std::string>().find("limit is 4096"), std::string::npos);
  // A JSON frame alone over the limit.
  dealer.send({json{{"id", 9}, {"cmd", "say"}, {"text", std::string(5000, 'a')}}.dump()});
  EXPECT_EQ(error_of(dealer.receive(milliseconds(2000)))["error"]["code"], "too_large");
  // Above the transport ceiling: libzmq drops the connection unread and nothing is answered.
  dealer.send({R"({"id":"huge","cmd":"ask"})", std::string(20000, 'x')});
  EXPECT_TRUE(dealer.receive(milliseconds(500)).empty());
  // The server is still serving: the same socket reconnects, a new client too.
  ControlClient other(cfg.control_endpoint);
  EXPECT_EQ(other.request({{"cmd", "status"}}, std::nullopt, milliseconds(2000))["ok"], true);
  dealer.send({R"({"id":"after","cmd":"status"})"});
  auto frames = dealer.receive(milliseconds(3000));
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(json::parse(frames.back())["id"], "after");
}

TEST(ControlServer, FdSignalsIncomingRequests) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  ControlServer server(cfg);
  RawDealer dealer(cfg.control_endpoint);
  dealer.send({R"({"id":1,"cmd":"reset"})"});
  std::optional<IncomingRequest> in;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!in && std::chrono::steady_clock::now() < deadline) {
    pollfd p{server.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    in = server.poll(milliseconds(0));  // the fd is edge-style: always drain with poll(0)
  }
  ASSERT_TRUE(in);
  EXPECT_TRUE(std::holds_alternative<ResetRequest>(in->request.command));
  server.reply_error(in->handle, ErrorCode::busy, "a turn is running");
  json r = error_of(dealer.receive(milliseconds(2000)));
  EXPECT_EQ(r, (json{{"id", 1}, {"ok", false}, {"error", {{"code", "busy"}, {"message", "a turn is running"}}}, {"seq", 0}}));
}

TEST(ControlClient, ClearErrorsWhenDaemonIsAbsent) {
  TempDir dir;
  std::string missing = "ipc://" + dir.path() + "/none.sock";
  try {
    ControlClient c(missing);
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::not_running);
    EXPECT_EQ(std::string(e.what()), "omnid is not running (no socket at " + dir.path() + "/none.sock)");
  }
  // A stale socket file from a crashed daemon: bound once, nobody listening.
  std::string stale = dir.path() + "/stale.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, stale.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  try {
    ControlClient c("ipc://" + stale);
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::not_running);
    EXPECT_NE(std::string(e.what()).find("exists but nobody is listening"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ControlClient c("tcp://127.0.0.1:5555"), ClientError);
}

TEST(ControlClient, TimesOutWhenNobodyAnswers) {
  TempDir dir;
  ServerConfig cfg = config_in(dir);
  ControlServer server(cfg);  // never polled
  ControlClient client(cfg.control_endpoint);
  auto start = std::chrono::steady_clock::now();
  try {
    client.request({{"cmd", "status"}}, std::nullopt, milliseconds(300));
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::timeout);
    EXPECT_NE(std::string(e.what()).find("timed out after 300 ms"), std::string::npos) << e.what();
  }
  auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(ms, 290);
  EXPECT_LT(ms, 2000);
  // The late reply to the timed-out request is skipped; the next request gets its own reply.
  auto in = server.poll(milliseconds(1000));
  ASSERT_TRUE(in);
  server.reply_ok(in->handle, {{"late", true}});
  std::thread answer([&] {
    auto next = server.poll(milliseconds(2000));
    if (next) server.reply_ok(next->handle, {{"late", false}});
  });
  json r = client.request({{"cmd", "status"}}, std::nullopt, milliseconds(2000));
  answer.join();
  EXPECT_EQ(r["late"], false);
}
