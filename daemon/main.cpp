// omnid: the voice assistant daemon. Usage: omnid --help; operations: docs/operations.md.
#include <omni/engine.h>

#include "daemon/cli.h"

int main(int argc, char** argv) {
  return omnid::daemon_main(argc, argv, [](const omni::LoadOptions& opt) { return omni::Model::load(opt); });
}
