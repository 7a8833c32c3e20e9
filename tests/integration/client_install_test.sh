#!/bin/sh
# The C++ client library installs and is usable the two documented ways: find_package(omnid-client) and
# pkg-config omnid-client. A consumer program asks a daemon that is not there and must get
# ClientError::Kind::not_running from the installed library. Args: BUILD_DIR [FLAGS]: FLAGS (the sanitizer flags of
# a sanitizer build) go to the consumers' compile and link lines.
set -eu
build=$1
flags=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --component client --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/omnid/client.h"
mkdir "$tmp/consumer"
cat > "$tmp/consumer/main.cpp" <<'CPP'
#include <omnid/client.h>
#include <iostream>
int main() {
  try {
    omni::ipc::ControlClient c("ipc:///nonexistent/omnid/control.sock");
  } catch (const omni::ipc::ClientError& e) {
    std::cout << (e.kind == omni::ipc::ClientError::Kind::not_running ? "not running" : "other") << "\n";
    return 0;
  }
  return 1;
}
CPP
cat > "$tmp/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(consumer CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(omnid-client 2 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE omnid::client)
CMAKE
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$tmp/consumer/build" >/dev/null
out=$("$tmp/consumer/build/consumer")
test "$out" = "not running" || { echo "find_package consumer printed '$out'"; exit 1; }
libdir=$(dirname "$(find "$tmp/prefix" -name 'omnid-client.pc')")
PKG_CONFIG_PATH=$libdir c++ -std=c++20 $flags "$tmp/consumer/main.cpp" -o "$tmp/pc-consumer" \
  $(PKG_CONFIG_PATH=$libdir pkg-config --cflags --libs omnid-client)
out=$(LD_LIBRARY_PATH="$libdir/.." "$tmp/pc-consumer")
test "$out" = "not running" || { echo "pkg-config consumer printed '$out'"; exit 1; }
echo "client library: find_package and pkg-config consumers work"
