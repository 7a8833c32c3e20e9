// What omnid is doing, as `status`, `state` events, heartbeats and systemd's STATUS say it.
//  loading -> idle|listening (no turn; microphone off|on) -> thinking (turn running, no audio yet)
//  -> speaking (audio playing) -> back.
#pragma once
#include <string_view>

namespace omnid {

enum class DaemonState { loading, idle, listening, thinking, speaking };

constexpr std::string_view to_string(DaemonState s) {
  switch (s) {
    case DaemonState::loading: return "loading";
    case DaemonState::idle: return "idle";
    case DaemonState::listening: return "listening";
    case DaemonState::thinking: return "thinking";
    case DaemonState::speaking: return "speaking";
  }
  return "unknown";
}

}  // namespace omnid
