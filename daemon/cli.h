// omnid's command line, shared by the real binary (main.cpp) and the daemon tests' binary with a
// scripted engine (tests/integration/scripted_engine.cpp).
#pragma once
#include "daemon/daemon.h"

namespace omnid {

// Parses arguments, loads the configuration and runs the daemon; returns the exit code.
int daemon_main(int argc, char** argv, const ModelLoader& loader);

}  // namespace omnid
