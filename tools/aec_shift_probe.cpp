// aec-shift-probe: how the echo canceller takes a reference that is a few samples off between answers.
//
// The live room of tests/integration/e2e_echo_cancel.cpp, offline: three answers (the lin_d160_echo_only
// recording's played answer, 900 ms apart) through its echo path (live_room_path, the direct path `--delay-ms`
// after the sound) over a -62 dBFS noise floor, run through the daemon's canceller and VAD as
// cancel_recording() runs them, except that the reference of answers 2 and 3 is stamped SHIFT2 and SHIFT3 samples
// (16 kHz) later than it played, as a re-timed answer would be. Prints, per placement, the utterances the VAD found
// (there is no user: any is the echo taken for speech) and each answer's ERLE.
//
//   aec-shift-probe [--delay-ms MS] SHIFT2 SHIFT3
//   aec-shift-probe [--delay-ms MS] --sweep     every pair from {-8, -4, -1, 0, 1, 2, 4, 8, 16}, then a count
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "audio/device/echo_canceller.h"
#include "audio/io/wav.h"
#include "tests/integration/live_room_path.h"

using namespace omni::audio;

namespace {

struct Probe {
  std::vector<std::pair<double, double>> segments;
  double erle_db[3] = {0, 0, 0};
};

Probe run(const std::vector<float>& answer, double delay_ms, int shift2, int shift3) {
  constexpr double kRateMs = 16.0;  // samples per ms
  const std::vector<std::pair<size_t, float>> taps = live_room_path(delay_ms);
  const size_t len = answer.size(), gap = 900 * 16;
  const size_t starts[3] = {16000, 16000 + len + gap, 16000 + 2 * (len + gap)};
  const int shifts[3] = {0, shift2, shift3};
  const size_t total = starts[2] + len + 24000;
  std::vector<float> played(total, 0.0f), mic(total, 0.0f);
  for (size_t s : starts)
    for (size_t i = 0; i < len; ++i) played[s + i] = answer[i];
  std::mt19937 noise_rng(29);
  std::normal_distribution<float> noise(0.0f, std::pow(10.0f, -62.0f / 20.0f));
  for (size_t n = 0; n < total; ++n) {
    float x = noise(noise_rng);
    for (const auto& [lag, gain] : taps)
      if (n >= lag) x += gain * played[n - lag];
    mic[n] = x;
  }
  EchoCancelParams params;
  params.enabled = true;
  EchoCanceller canceller(params);
  std::vector<float> out;
  std::vector<bool> echo_frames, audible_frames;
  constexpr size_t kChunk = 1280;  // the reference arrives in 80 ms chunks, 200 ms ahead, as the engine writes it
  const size_t lead = 200 * 16;
  for (size_t n = 0; n < total; n += EchoCanceller::kFrameSamples) {
    for (int a = 0; a < 3; ++a)
      for (size_t i = 0; i < len; i += kChunk) {
        const size_t plays = starts[a] + i;
        if (plays >= n + lead && plays < n + lead + EchoCanceller::kFrameSamples)
          canceller.push_reference(answer.data() + i, std::min(kChunk, len - i), (plays + shifts[a]) / kRateMs);
      }
    const auto o = canceller.process(mic.data() + n, std::min(EchoCanceller::kFrameSamples, total - n), n / kRateMs,
                                     &echo_frames, &audible_frames);
    out.insert(out.end(), o.begin(), o.end());
  }
  Probe p;
  p.segments = vad_segments(out, VadParams{}, &echo_frames, nullptr, &audible_frames);
  for (int a = 0; a < 3; ++a) p.erle_db[a] = erle_db(mic.data(), out.data(), starts[a] + 300 * 16, starts[a] + len);
  return p;
}

void print(int shift2, int shift3, const Probe& p) {
  std::printf("shift %+3d %+3d samples: ERLE %.1f / %.1f / %.1f dB, %zu utterance(s) on echo alone", shift2, shift3,
              p.erle_db[0], p.erle_db[1], p.erle_db[2], p.segments.size());
  for (const auto& [b, e] : p.segments) std::printf(" [%.0f, %.0f] ms", b, e);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  double delay_ms = 120;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--delay-ms") && i + 1 < argc) delay_ms = std::atof(argv[++i]);
    else args.push_back(argv[i]);
  }
  const bool sweep = args.size() == 1 && args[0] == "--sweep";
  if (!sweep && args.size() != 2) {
    std::fprintf(stderr, "usage: aec-shift-probe [--delay-ms MS] SHIFT2 SHIFT3 | --sweep\n");
    return 2;
  }
  const std::vector<float> answer =
      load_wav_mono(std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/aec/lin_d160_echo_only.ref.wav", 16000);
  if (!sweep) {
    print(std::atoi(args[0].c_str()), std::atoi(args[1].c_str()), run(answer, delay_ms, std::atoi(args[0].c_str()),
                                                                       std::atoi(args[1].c_str())));
    return 0;
  }
  const int values[] = {-8, -4, -1, 0, 1, 2, 4, 8, 16};
  int alike = 0, alike_fired = 0, early = 0, early_fired = 0, late = 0, late_fired = 0;
  for (int s2 : values)
    for (int s3 : values) {
      const Probe p = run(answer, delay_ms, s2, s3);
      print(s2, s3, p);
      const bool fired = !p.segments.empty();
      if (s2 == s3) ++alike, alike_fired += fired;
      else if (s2 <= 0) ++early, early_fired += fired;
      else ++late, late_fired += fired;
    }
  std::printf("VAD fired on echo alone: answers 2 and 3 shifted alike %d of %d; answer 2 on time or early and 3 "
              "otherwise %d of %d; answer 2 late and 3 otherwise %d of %d\n",
              alike_fired, alike, early_fired, early, late_fired, late);
  return 0;
}
