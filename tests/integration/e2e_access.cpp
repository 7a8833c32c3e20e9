// Access control (docs/protocol.md): who may talk to omnid. The ZAP handler admits only ipc.allow_uids /
// ipc.allow_gids (by default omnid's own uid and group, supplementary groups counted), logs refusals and the
// client is told; the socket files are 0666 so that this check, not the file mode, decides; a tcp://
// endpoint needs CURVE keys (ipc.curve_secret_key_file) or omnid does not start.
#include <pwd.h>
#include <sys/stat.h>
#include <zmq.h>

#include <cstdlib>
#include <fstream>

#include "e2e_harness.h"

using namespace e2e;

namespace {

DaemonOptions scripted() { return scripted_options("step_ms=20,words=4"); }

void replace(std::string& s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
}

int free_tcp_port() { return 20000 + (::getpid() * 7 + int(std::time(nullptr))) % 30000; }

}  // namespace

TEST(Access, SocketsAreOpenToTheCredentialCheckAndTheOwnUserIsAdmittedByDefault) {
  auto d = std::make_unique<DaemonProcess>(scripted());
  d->start();
  ASSERT_TRUE(d->wait_ready(30s)) << d->log();
  for (const char* name : {"/control.sock", "/events.sock"}) {
    struct stat st {};
    ASSERT_EQ(::stat((d->dir() + name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 0777, 0666u) << name;
  }
  EXPECT_TRUE(d->request({{"cmd", "ping"}})["ok"].get<bool>());
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST(Access, AllowListedUserByNameIsAdmitted) {
  const passwd* pw = ::getpwuid(::getuid());
  ASSERT_NE(pw, nullptr);
  auto o = scripted();
  o.extra_ipc_yaml = std::string("  allow_uids: [") + pw->pw_name + "]\n";
  auto d = std::make_unique<DaemonProcess>(o);
  d->start();
  ASSERT_TRUE(d->wait_ready(30s)) << d->log();
  EXPECT_TRUE(d->request({{"cmd", "status"}})["ok"].get<bool>());
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST(Access, PeerNotListedIsRefusedAndTheRefusalLogged) {
  auto o = scripted();
  o.extra_ipc_yaml = "  allow_uids: [" + std::to_string(::getuid() + 12345) + "]\n  allow_gids: [" +
                     std::to_string(::getgid() + 12345) + "]\n";
  auto d = std::make_unique<DaemonProcess>(o);
  d->start();
  ASSERT_TRUE(d->wait_ready(30s)) << d->log();
  omni::ipc::ControlClient client(d->control());
  // The client is told at once (not a timeout) that access was denied.
  const auto asked = std::chrono::steady_clock::now();
  try {
    client.request({{"cmd", "status"}}, std::nullopt, 10000ms);
    ADD_FAILURE() << "a refused client got a reply";
  } catch (const omni::ipc::ClientError& e) {
    EXPECT_EQ(e.kind, omni::ipc::ClientError::Kind::permission_denied) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("access denied: omnid refused this connection", 0), 0u) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 5s);
  EXPECT_TRUE(d->wait_log("ipc: refused a connection", 5s)) << d->log();
  const std::string log = d->log();
  EXPECT_NE(log.find("uid " + std::to_string(::getuid()) + " gid " + std::to_string(::getgid()) + " not allowed"),
            std::string::npos)
      << log;
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}

TEST(Access, UnknownUserNameIsAConfigErrorNamingTheKey) {
  auto o = scripted();
  o.extra_ipc_yaml = "  allow_gids: [no-such-group-omnid]\n";
  auto d = std::make_unique<DaemonProcess>(o);
  d->start();
  EXPECT_EQ(d->wait_exit(5s), 1);
  EXPECT_NE(d->log().find("ipc.allow_gids: 'no-such-group-omnid' is not a group name"), std::string::npos) << d->log();
}

TEST(Access, TcpWithoutCurveKeysIsRefused) {
  auto d = std::make_unique<DaemonProcess>(scripted());
  std::string yaml = d->default_config();
  replace(yaml, "  control: \"" + d->control() + "\"", "  control: \"tcp://127.0.0.1:" + std::to_string(free_tcp_port()) + "\"");
  d->write_config(yaml);
  d->start();
  EXPECT_EQ(d->wait_exit(5s), 1);
  EXPECT_NE(d->log().find("needs ipc.curve_secret_key_file"), std::string::npos) << d->log();
}

TEST(Access, TcpWithCurveKeysAdmitsOnlyTheListedClient) {
  char server_public[41], server_secret[41], client_public[41], client_secret[41], other_public[41], other_secret[41];
  ASSERT_EQ(zmq_curve_keypair(server_public, server_secret), 0);
  ASSERT_EQ(zmq_curve_keypair(client_public, client_secret), 0);
  ASSERT_EQ(zmq_curve_keypair(other_public, other_secret), 0);
  auto o = scripted();
  auto d = std::make_unique<DaemonProcess>(o);
  const std::string key_file = d->dir() + "/curve.key";
  std::ofstream(key_file) << server_secret << "\n";
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
  std::string yaml = d->default_config();
  replace(yaml, "  control: \"" + d->control() + "\"", "  control: \"" + endpoint + "\"");
  yaml += "  curve_secret_key_file: \"" + key_file + "\"\n  curve_client_keys: [\"" + std::string(client_public) +
          "\"]\n";
  d->write_config(yaml);
  d->start();
  ASSERT_TRUE(d->wait_ready(30s)) << d->log();
  omni::ipc::ControlClient good(endpoint, omni::ipc::ClientCurveKeys{server_public, client_public, client_secret});
  EXPECT_TRUE(good.request({{"cmd", "ping"}}, std::nullopt, 3000ms)["ok"].get<bool>());
  omni::ipc::ControlClient other(endpoint, omni::ipc::ClientCurveKeys{server_public, other_public, other_secret});
  EXPECT_THROW(other.request({{"cmd", "ping"}}, std::nullopt, 1000ms), omni::ipc::ClientError);
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0);
}
