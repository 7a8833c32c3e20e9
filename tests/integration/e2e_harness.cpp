#include "e2e_harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace e2e {

std::string data_file(const std::string& name) { return std::string(OMNID_TEST_DATA) + "/" + name; }

std::string wav_data(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) {
    ADD_FAILURE() << path << " is not a RIFF/WAVE file";
    return {};
  }
  for (size_t at = 12; at + 8 <= b.size();) {
    uint32_t size = 0;
    std::memcpy(&size, b.data() + at + 4, 4);
    if (b.compare(at, 4, "data") == 0) return b.substr(at + 8, std::min<size_t>(size, b.size() - at - 8));
    at += 8 + size + (size & 1);
  }
  ADD_FAILURE() << path << " has no data chunk";
  return {};
}

NotifySocket::NotifySocket(const std::string& path) : path_(path) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ::unlink(path.c_str());
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("cannot bind the notify socket " + path);
  reader_ = std::thread([this] {
    char buf[4096];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::lock_guard lock(mu_);
      messages_.push_back({Clock::now(), std::string(buf, static_cast<size_t>(n))});
      cv_.notify_all();
    }
  });
}

NotifySocket::~NotifySocket() {
  stop_ = true;
  reader_.join();
  ::close(fd_);
  ::unlink(path_.c_str());
}

bool NotifySocket::wait_for(const std::string& needle, std::chrono::milliseconds timeout, size_t from) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    for (size_t i = from; i < messages_.size(); ++i)
      if (messages_[i].text.find(needle) != std::string::npos) return true;
    return false;
  });
}

std::vector<Notification> NotifySocket::all() {
  std::lock_guard lock(mu_);
  return messages_;
}

size_t NotifySocket::count() {
  std::lock_guard lock(mu_);
  return messages_.size();
}

DaemonProcess::DaemonProcess(const DaemonOptions& options) : options_(options) {
  char tmpl[] = "/tmp/omnid_e2e_XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  config_path_ = dir_ + "/omnid.yaml";
  if (options_.input_pipeline.empty())
    options_.input_pipeline = "filesrc location=" + data_file("quiet.wav") + " ! wavparse";
  write_config(default_config());
  notify_ = std::make_unique<NotifySocket>(dir_ + "/notify.sock");
}

std::string DaemonProcess::default_config() const {
  std::ostringstream y;
  y << "model:\n  path: \"" << options_.model_path << "\"\n  device: " << options_.device
    << "\n  max_new_tokens: " << options_.max_new_tokens << "\n"
    << options_.extra_model_yaml << "audio:\n  input:\n"
    << (options_.input_source.empty() ? "" : "    source: " + options_.input_source + "\n")
    << "    pipeline: \"" << options_.input_pipeline
    << "\"\n    listen: " << (options_.listen ? "true" : "false")
    << "\n    restart_on_end: " << (options_.restart_input_on_end ? "true" : "false") << "\n  output:\n"
    << (options_.output_yaml.empty() ? "    backend: wav-file\n    path: \"" + dir_ + "/answer-{turn}.wav\"\n"
                                     : options_.output_yaml)
    << options_.extra_output_yaml
    << "  barge_in: " << (options_.barge_in ? "true" : "false") << "\n"
    << options_.extra_audio_yaml << "ipc:\n  control: \"" << control() << "\"\n  events: \"" << events()
    << "\"\n  max_message_bytes: " << options_.max_message_bytes << "\n" << options_.extra_ipc_yaml
    << options_.extra_yaml;
  return y.str();
}

void DaemonProcess::write_config(const std::string& yaml) { std::ofstream(config_path_) << yaml; }

void DaemonProcess::start() {
  // Everything the child needs is made here, before fork(): between fork() and exec() the child may only call
  // async-signal-safe functions, since another thread of this test (a notify reader, a client's I/O thread) may
  // have held a lock of the allocator or of the environment at the moment of the fork.
  std::vector<std::pair<std::string, std::string>> extra = {{"NOTIFY_SOCKET", notify_->path()}};
  for (const auto& kv : options_.env) extra.push_back(kv);
  if (options_.watchdog_usec) {
    extra.emplace_back("WATCHDOG_USEC", std::to_string(options_.watchdog_usec));
    extra.emplace_back("WATCHDOG_PID", std::string(20, ' '));  // the child writes its pid here
  }
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (std::none_of(extra.begin(), extra.end(), [&](const auto& kv) { return kv.first == name; }))
      env.push_back(entry);
  }
  char* watchdog_pid = nullptr;
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& e : env) {
    envp.push_back(e.data());
    if (e.rfind("WATCHDOG_PID=", 0) == 0) watchdog_pid = e.data() + std::strlen("WATCHDOG_PID=");
  }
  envp.push_back(nullptr);
  std::string config_flag = "--config";
  std::vector<char*> argv = {options_.binary.data(), config_flag.data(), config_path_.data(), nullptr};
  const std::string log_path = dir_ + "/omnid.log";
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot create " + log_path);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(log_fd, 1);  // the copies lose O_CLOEXEC
    ::dup2(log_fd, 2);
    if (watchdog_pid) {  // decimal digits of getpid(), left-aligned in the 20 characters reserved
      char digits[20];
      int n = 0;
      for (pid_t v = ::getpid(); v > 0 && n < 20; v /= 10) digits[n++] = char('0' + v % 10);
      for (int i = 0; i < n; ++i) watchdog_pid[i] = digits[n - 1 - i];
      watchdog_pid[n] = '\0';
    }
    ::execve(argv[0], argv.data(), envp.data());
    static const char msg[] = "e2e harness: exec of the daemon failed\n";
    [[maybe_unused]] const ssize_t w = ::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

namespace {

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "?" : s;
}

}  // namespace

std::string DaemonProcess::describe_process() const {
  if (pid_ <= 0) return "(not running)";
  const std::string proc = "/proc/" + std::to_string(pid_);
  char exe[4096];
  const ssize_t n = ::readlink((proc + "/exe").c_str(), exe, sizeof exe - 1);
  std::ostringstream out;
  out << "pid " << pid_ << ", executable " << (n > 0 ? std::string(exe, size_t(n)) : "?") << "\n";
  // Each thread: its state and the kernel function it sleeps in (a futex wait before any log line would be a
  // lock taken across fork, or a deadlock in the start-up).
  if (DIR* d = ::opendir((proc + "/task").c_str())) {
    while (dirent* t = ::readdir(d)) {
      if (t->d_name[0] == '.') continue;
      const std::string task = proc + "/task/" + t->d_name;
      out << "  thread " << t->d_name << " (" << read_small_file(task + "/comm")
          << "): stat " << read_small_file(task + "/stat") << "; wchan " << read_small_file(task + "/wchan")
          << "\n";
    }
    ::closedir(d);
  }
  return out.str();
}

bool DaemonProcess::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (notify_->wait_for("READY=1", 100ms)) return true;
    if (wait_exit(0ms) != -1) return false;  // it exited: no point waiting
  }
  std::fprintf(stderr, "no READY=1 within %lld ms from %s\n", static_cast<long long>(timeout.count()),
               describe_process().c_str());
  return false;
}

int DaemonProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = Clock::now() + timeout;
  do {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -2 - WTERMSIG(status);
      return exit_status_;
    }
    if (timeout.count() > 0) std::this_thread::sleep_for(10ms);
  } while (Clock::now() < deadline);
  return -1;
}

int DaemonProcess::stop(int signo, std::chrono::milliseconds timeout, std::chrono::milliseconds* took) {
  client_.reset();
  if (pid_ <= 0) return exit_status_;  // already exited (never kill(-1, ...))
  const auto t0 = Clock::now();
  ::kill(pid_, signo);
  const int rc = wait_exit(timeout);
  if (took) *took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  return rc;
}

DaemonProcess::~DaemonProcess() {
  client_.reset();
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (!::testing::Test::HasFailure()) std::system(("rm -rf " + dir_).c_str());
  else std::fprintf(stderr, "daemon files kept in %s; log:\n%s\n", dir_.c_str(), log().c_str());
}

omni::ipc::ControlClient& DaemonProcess::client() {
  if (!client_) client_ = std::make_unique<omni::ipc::ControlClient>(control());
  return *client_;
}

nlohmann::json DaemonProcess::request(nlohmann::json req, std::chrono::milliseconds timeout,
                                      const std::optional<std::string>& binary) {
  return client().request(std::move(req), binary, timeout);
}

std::string DaemonProcess::log() const {
  std::ifstream in(dir_ + "/omnid.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool DaemonProcess::wait_log(const std::string& text, std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (log().find(text) != std::string::npos) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

EventLog::EventLog(const std::string& endpoint) : sub_(endpoint, {}) {
  EXPECT_TRUE(sub_.wait_connected(3000ms)) << "events socket " << endpoint;
}

void EventLog::pump(std::chrono::milliseconds d) {
  const auto deadline = Clock::now() + d;
  while (Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (auto e = sub_.next(std::max(left, 1ms))) seen_.push_back(std::move(*e));
  }
}

std::optional<omni::ipc::Event> EventLog::wait_for(const std::string& name, std::chrono::milliseconds timeout,
                                                   const std::function<bool(const omni::ipc::Event&)>& pred) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    for (; cursor_ < seen_.size(); ++cursor_) {
      const auto& e = seen_[cursor_];
      if ((name.empty() || e.name == name) && (!pred || pred(e))) return seen_[cursor_++];
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    if (auto e = sub_.next(left)) seen_.push_back(std::move(*e));
  }
  ADD_FAILURE() << "no '" << name << "' event within " << timeout.count() << " ms";
  return std::nullopt;
}

std::vector<std::string> names_for_turn(const std::vector<omni::ipc::Event>& events, uint64_t turn_id) {
  std::vector<std::string> names;
  for (const auto& e : events)
    if (e.body.contains("turn_id") && e.body["turn_id"] == turn_id) names.push_back(e.name);
  return names;
}

void expect_gap_free(const std::vector<omni::ipc::Event>& events) {
  for (size_t i = 1; i < events.size(); ++i)
    EXPECT_EQ(events[i].body["seq"].get<uint64_t>(), events[i - 1].body["seq"].get<uint64_t>() + 1)
        << "seq gap between " << events[i - 1].name << " and " << events[i].name;
}

DaemonOptions scripted_options(const std::string& script) {
  DaemonOptions o;
  o.binary = OMNID_SCRIPTED_BINARY;
  o.model_path = "scripted:" + script;
  return o;
}

DaemonOptions tiny_model_options() {
  DaemonOptions o;
  o.binary = OMNID_BINARY;
  o.model_path = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";
  return o;
}

std::unique_ptr<DaemonProcess> start_ready(const DaemonOptions& o, std::chrono::milliseconds timeout) {
  auto d = std::make_unique<DaemonProcess>(o);
  d->start();
  EXPECT_TRUE(d->wait_ready(timeout)) << d->log();
  return d;
}

nlohmann::json ask_and_wait_done(DaemonProcess& d, EventLog& events, nlohmann::json request) {
  request["cmd"] = "ask";
  const nlohmann::json r = d.request(request, 30s);
  EXPECT_EQ(r.value("ok", false), true) << r;
  if (!r.value("ok", false)) return nullptr;
  const uint64_t id = r["turn_id"];
  auto done = events.wait_for("response.done", 60s, [&](const auto& e) { return e.body["turn_id"] == id; });
  EXPECT_TRUE(done) << "no response.done for turn " << id;
  return done ? done->body : nlohmann::json();
}

nlohmann::json omni_run_json(const std::string& args) {
  const std::string cmd = std::string(OMNI_RUN_BIN) + " " + args + " --json 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  EXPECT_EQ(::pclose(p), 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "omni-run printed no JSON: " << out;
    return nullptr;
  }
  return j;
}

}  // namespace e2e
