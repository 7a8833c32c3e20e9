// A leaking client cannot take omnid down: omnid raises its descriptor soft limit to the hard limit at start
// (systemd starts services with soft 1024), so thousands of idle connections to the control socket are held while
// other clients are answered. libzmq aborts the whole process when accept() fails with EMFILE.
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dirent.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "e2e_harness.h"

using namespace e2e;

namespace {

constexpr int kIdleConnections = 3000;

int count_descriptors(pid_t pid) {
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

// "Max open files" soft limit of a process.
std::string soft_nofile(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream fields(line.substr(14));
      std::string soft;
      fields >> soft;
      return soft;
    }
  return "";
}

}  // namespace

TEST(Descriptors, ThousandsOfIdleConnectionsLeaveOmnidAnsweringOthers) {
  rlimit own{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &own), 0);
  if (own.rlim_max < rlim_t(kIdleConnections) * 2 + 256)
    GTEST_SKIP() << "the hard descriptor limit " << own.rlim_max << " is too low to hold " << kIdleConnections
                 << " connections on both ends";
  // omnid starts as systemd starts services: soft limit 1024, hard limit high.
  rlimit service = own;
  service.rlim_cur = 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &service), 0);
  auto d = std::make_unique<DaemonProcess>(scripted_options("step_ms=20,words=4"));
  d->start();
  rlimit mine = own;
  mine.rlim_cur = own.rlim_max;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &mine), 0);
  ASSERT_TRUE(d->wait_ready(30s)) << d->log();
  EXPECT_TRUE(d->wait_log("descriptor limit: " + std::to_string(own.rlim_max) + " (raised from 1024)", 5s))
      << d->log();
  EXPECT_EQ(soft_nofile(d->pid()), std::to_string(own.rlim_max));

  const std::string path = d->dir() + "/control.sock";
  std::vector<int> idle;
  for (int i = 0; i < kIdleConnections; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << i << ": " << std::strerror(errno);
    idle.push_back(fd);
  }
  // omnid accepts them all (each is a descriptor there) and still answers another client.
  int held = 0;
  for (int i = 0; i < 100 && (held = count_descriptors(d->pid())) < kIdleConnections; ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_GE(held, kIdleConnections) << "omnid holds " << held << " descriptors";
  const auto reply = d->request({{"cmd", "status"}}, 10s);
  EXPECT_TRUE(reply.value("ok", false)) << reply.dump();
  for (int fd : idle) ::close(fd);
  EXPECT_TRUE(d->request({{"cmd", "ping"}}, 10s).value("ok", false));
  EXPECT_EQ(d->stop(SIGTERM, 5s), 0) << d->log();
  ::setrlimit(RLIMIT_NOFILE, &own);
}
