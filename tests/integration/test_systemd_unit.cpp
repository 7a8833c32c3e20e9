// systemd/omnid.service: `systemd-analyze verify` is clean and `systemd-analyze security` rates it
// 2.0 or better. The unit's /usr/bin/omnid is replaced by /bin/true in a copy, because verify
// checks that ExecStart exists and omnid is not installed where the tests run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

namespace {

struct Result {
  int status = -1;
  std::string output;
};

Result run(const std::string& command) {
  Result r;
  std::FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string unit_copy() {
  std::ifstream in(std::string(OMNI_SOURCE_DIR) + "/systemd/omnid.service");
  std::stringstream text;
  text << in.rdbuf();
  const std::string unit = std::regex_replace(text.str(), std::regex("/usr/bin/omnid"), "/bin/true");
  const std::string dir = "/tmp/omnid_unit_" + std::to_string(getpid());
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/omnid.service") << unit;
  return dir + "/omnid.service";
}

bool have_systemd_analyze() { return run("systemd-analyze --version").status == 0; }

}  // namespace

TEST(SystemdUnit, VerifyIsClean) {
  if (!have_systemd_analyze()) GTEST_SKIP() << "systemd-analyze is not installed";
  const auto r = run("systemd-analyze verify " + unit_copy());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "") << "verify printed warnings";
}

TEST(SystemdUnit, SecurityExposureAtMostTwo) {
  if (!have_systemd_analyze()) GTEST_SKIP() << "systemd-analyze is not installed";
  // --threshold is in tenths: 20 means an overall exposure of 2.0.
  const auto r = run("systemd-analyze security --offline=true --threshold=20 " + unit_copy());
  EXPECT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("Overall exposure level for omnid.service: ([0-9.]+)")))
      << r.output;
  EXPECT_LE(std::stod(m[1]), 2.0);
}

TEST(SystemdUnit, IsTypeNotifyWithWatchdogAndRuntimeDirectory) {
  std::ifstream in(std::string(OMNI_SOURCE_DIR) + "/systemd/omnid.service");
  std::stringstream text;
  text << in.rdbuf();
  for (const char* line : {"Type=notify", "WatchdogSec=", "RuntimeDirectory=omnid", "ProtectSystem=strict",
                           "User=omnid", "ExecReload=", "DevicePolicy=closed"})
    EXPECT_NE(text.str().find(line), std::string::npos) << line;
}
