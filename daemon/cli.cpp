// omnid's command line (docs/operations.md).
//
//   omnid [--config FILE]        run (default /etc/omnid/omnid.yaml)
//   omnid --check-config FILE    validate FILE and exit (0: valid; 1: every problem listed on stderr)
//   omnid --model-path FILE      print model.path of a valid FILE (the package's postinst starts omnid only when
//                                that directory holds a checkpoint)
//   omnid --list-devices         print the PortAudio output device names and exit
#include "daemon/cli.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "audio/device/playback.h"

namespace omnid {
namespace {

void usage(std::FILE* to) {
  std::fputs(
      "usage: omnid [--config FILE]       run the daemon (default /etc/omnid/omnid.yaml)\n"
      "       omnid --check-config FILE   validate a configuration file and exit\n"
      "       omnid --model-path FILE     print the model directory a valid configuration file names\n"
      "       omnid --list-devices        list PortAudio output devices and exit\n",
      to);
}

// Every client connection is a descriptor. systemd gives services a soft limit of 1024 (for select()'s sake) and a
// high hard limit, and advises programs that do not use select() to raise the soft limit themselves; libzmq aborts
// the whole process when accept() fails with EMFILE, so a leaking client must not be able to reach the soft limit.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    log_warning("cannot read the descriptor limit: %s", std::strerror(errno));
    return;
  }
  const rlim_t before = limit.rlim_cur;
  if (limit.rlim_cur != limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      log_warning("cannot raise the descriptor limit from %llu to %llu: %s", (unsigned long long)before,
                  (unsigned long long)limit.rlim_max, std::strerror(errno));
      return;
    }
  }
  if (limit.rlim_cur == RLIM_INFINITY)
    log_info("descriptor limit: unlimited");
  else if (before != limit.rlim_cur)
    log_info("descriptor limit: %llu (raised from %llu)", (unsigned long long)limit.rlim_cur,
             (unsigned long long)before);
  else
    log_info("descriptor limit: %llu", (unsigned long long)limit.rlim_cur);
}

}  // namespace

int daemon_main(int argc, char** argv, const ModelLoader& loader) {
  std::string config_path = "/etc/omnid/omnid.yaml";
  bool check_only = false, print_model_path = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--config" || arg == "--check-config" || arg == "--model-path") && i + 1 < argc) {
      config_path = argv[++i];
      check_only = arg != "--config";
      print_model_path = arg == "--model-path";
    } else if (arg == "--list-devices") {
      try {
        for (const auto& name : omni::audio::list_output_devices()) std::printf("%s\n", name.c_str());
        return 0;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "omnid: %s\n", e.what());
        return 1;
      }
    } else if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "omnid: unknown or incomplete argument '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }

  omnid::Config config;
  try {
    config = omnid::load_config_file(config_path);
  } catch (const omnid::ConfigError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    if (check_only) return 1;
    std::fprintf(stderr, "omnid: not starting: the configuration is invalid\n");
    return 1;
  }
  if (print_model_path) {
    std::printf("%s\n", config.model.path.c_str());
    return 0;
  }
  if (check_only) {
    std::printf("%s: valid\n", config_path.c_str());
    return 0;
  }
  raise_descriptor_limit();
  try {
    omnid::Daemon daemon(std::move(config), config_path, loader);
    return daemon.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omnid: fatal: %s\n", e.what());
    return 1;
  }
}

}  // namespace omnid
