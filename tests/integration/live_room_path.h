// The live room's echo path, shared by its daemon test (tests/integration/e2e_echo_cancel.cpp, LiveRoom) and its
// offline probe (tools/aec_shift_probe.cpp), so that the probe measures the room the test plays: at 16 kHz, the
// direct path `delay_ms` after the sound at half amplitude, then 150 reflections within 300 ms after it decaying
// over 250 ms (seeded).
#pragma once
#include <cmath>
#include <cstddef>
#include <random>
#include <utility>
#include <vector>

// (lag in samples, gain) of each tap.
inline std::vector<std::pair<size_t, float>> live_room_path(double delay_ms) {
  std::mt19937 rng(23);
  std::uniform_real_distribution<double> when(2.0, 300.0), sign(-1.0, 1.0);
  std::vector<std::pair<size_t, float>> taps{{static_cast<size_t>(delay_ms * 16), 0.5f}};
  for (int k = 0; k < 150; ++k) {
    const double t = when(rng);
    taps.push_back({static_cast<size_t>((delay_ms + t) * 16),
                    static_cast<float>(0.5 * 0.35 * sign(rng) * std::exp(-6.9 * t / 250.0))});
  }
  return taps;
}
