// omnid's command line (docs/operations.md).
//
//   omnid [--config FILE]        run (default /etc/omnid/omnid.yaml)
//   omnid --check-config FILE    validate FILE and exit (0: valid; 1: every problem listed on stderr)
//   omnid --list-devices         print the PortAudio output device names and exit
#include "daemon/cli.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "audio/device/playback.h"

namespace omnid {
namespace {

void usage(std::FILE* to) {
  std::fputs(
      "usage: omnid [--config FILE]       run the daemon (default /etc/omnid/omnid.yaml)\n"
      "       omnid --check-config FILE   validate a configuration file and exit\n"
      "       omnid --list-devices        list PortAudio output devices and exit\n",
      to);
}

}  // namespace

int daemon_main(int argc, char** argv, const ModelLoader& loader) {
  std::string config_path = "/etc/omnid/omnid.yaml";
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--config" || arg == "--check-config") && i + 1 < argc) {
      config_path = argv[++i];
      check_only = arg == "--check-config";
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
  if (check_only) {
    std::printf("%s: valid\n", config_path.c_str());
    return 0;
  }
  try {
    omnid::Daemon daemon(std::move(config), config_path, loader);
    return daemon.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omnid: fatal: %s\n", e.what());
    return 1;
  }
}

}  // namespace omnid
