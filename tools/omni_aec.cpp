// omni-aec: runs the daemon's echo canceller and VAD over files, for tuning a robot and for tests.
//
//   omni-aec --mic MIC.wav --ref PLAYED.wav --out CLEAN.wav [--json]
//            [--engine webrtc|speex] [--suppression low|moderate|high] [--noise-suppression] [--delay-ms N]
//            [--filter-ms N] [--erle-window START_MS END_MS]
//
// MIC.wav is what the microphone heard, PLAYED.wav what omnid played, sample-aligned with it (sample i played
// while sample i was captured); both are converted to 16 kHz mono. CLEAN.wav (16 kHz, 16-bit) is the cancelled
// signal the daemon would hand to the VAD, barge-in and the model.
//
// Reports: "vad_segments" [[start_ms, end_ms], ...] (the daemon's VAD with its default settings on CLEAN),
// "vad_confirmed_ms" when each was confirmed (the moment the daemon would barge in),
// "erle_db" = 10·log10(Σ mic² / Σ clean²) over the 10 ms frames where omnid was audible (the reference was above
// -50 dBFS within the last 500 ms) and the VAD found no speech (so the user's voice does not count as residual
// echo), "erle_window_db" the same over --erle-window, the echo delay it measured ("estimated_delay_ms"), when
// the canceller converged ("converged_ms", -1: never) and how much output it marked as possibly echo (not speech for the VAD) before that.
// Errors go to stderr as one line with exit code 2 (usage) or 1 (a file or the canceller failed).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "audio/device/echo_canceller.h"
#include "audio/io/wav.h"

namespace {

using omni::audio::EchoCanceller;

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "omni-aec: %s\n"
               "usage: omni-aec --mic MIC.wav --ref PLAYED.wav --out CLEAN.wav [--json]\n"
               "  [--engine webrtc|speex] [--suppression low|moderate|high] [--noise-suppression]\n"
               "  [--delay-ms N] [--filter-ms N] [--erle-window START_MS END_MS]\n",
               problem.c_str());
  std::exit(2);
}

int parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || x < -1000000 || x > 1000000) usage(flag + " expects an integer, got '" + v + "'");
  return static_cast<int>(x);
}

double rms_dbfs(const std::vector<float>& x, size_t begin, size_t end) {
  double e = 0;
  for (size_t i = begin; i < end; ++i) e += double(x[i]) * x[i];
  return end > begin ? 10.0 * std::log10(e / double(end - begin) + 1e-20) : -200.0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mic_path, ref_path, out_path;
  bool json = false;
  omni::audio::EchoCancelParams params;
  params.enabled = true;
  int window_begin_ms = -1, window_end_ms = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--mic") mic_path = value();
    else if (a == "--ref") ref_path = value();
    else if (a == "--out") out_path = value();
    else if (a == "--json") json = true;
    else if (a == "--engine") params.engine = value();
    else if (a == "--suppression") params.suppression = value();
    else if (a == "--noise-suppression") params.noise_suppression = true;
    else if (a == "--delay-ms") params.delay_ms = parse_int(a, value());
    else if (a == "--filter-ms") params.filter_ms = parse_int(a, value());
    else if (a == "--erle-window") {
      window_begin_ms = parse_int(a, value());
      window_end_ms = parse_int(a, value());
      if (window_begin_ms < 0 || window_end_ms <= window_begin_ms)
        usage("--erle-window needs 0 <= START_MS < END_MS");
    } else if (a == "-h" || a == "--help") usage("help");
    else usage("unknown argument '" + a + "'");
  }
  if (mic_path.empty() || ref_path.empty() || out_path.empty()) usage("--mic, --ref and --out are required");

  try {
    omni::audio::validate(params);
    const std::vector<float> mic = omni::audio::load_wav_mono(mic_path, EchoCanceller::kSampleRate);
    const std::vector<float> ref = omni::audio::load_wav_mono(ref_path, EchoCanceller::kSampleRate);
    if (mic.empty()) throw std::runtime_error(mic_path + ": no samples");
    const omni::audio::CancelledRecording run = omni::audio::cancel_recording(mic, ref, params);
    omni::audio::write_wav(out_path, run.cleaned.data(), run.cleaned.size(), EchoCanceller::kSampleRate,
                           omni::audio::WavSampleFormat::Int16);

    // Frames where omnid was audible and the VAD heard nobody.
    constexpr size_t kFrame = EchoCanceller::kFrameSamples;
    const size_t frames = mic.size() / kFrame;
    std::vector<bool> in_vad(frames, false);
    for (const auto& [s, e] : run.vad_segments)
      for (size_t f = static_cast<size_t>(s / 10); f < std::min(frames, static_cast<size_t>(std::ceil(e / 10))); ++f)
        in_vad[f] = true;
    double mic_e = 0, out_e = 0;
    size_t echo_frames = 0;
    int audible_until = -1;  // last frame index at which the reference still rings
    for (size_t f = 0; f < frames; ++f) {
      if (f * kFrame + kFrame <= ref.size() && rms_dbfs(ref, f * kFrame, f * kFrame + kFrame) > -50.0)
        audible_until = static_cast<int>(f) + 50;
      if (static_cast<int>(f) > audible_until || in_vad[f]) continue;
      for (size_t i = f * kFrame; i < f * kFrame + kFrame; ++i) {
        mic_e += double(mic[i]) * mic[i];
        out_e += double(run.cleaned[i]) * run.cleaned[i];
      }
      ++echo_frames;
    }
    nlohmann::json report;
    report["mic"] = mic_path;
    report["ref"] = ref_path;
    report["out"] = out_path;
    report["engine"] = params.engine;
    report["duration_ms"] = double(mic.size()) * 1000.0 / EchoCanceller::kSampleRate;
    report["vad_segments"] = nlohmann::json::array();
    for (const auto& [s, e] : run.vad_segments) report["vad_segments"].push_back({s, e});
    report["vad_confirmed_ms"] = run.vad_confirmed_ms;
    report["echo_frames"] = echo_frames;
    if (echo_frames > 0 && mic_e > 0)
      report["erle_db"] = 10.0 * std::log10(mic_e / std::max(out_e, 1e-20));
    else
      report["erle_db"] = nullptr;  // omnid was never audible outside speech: nothing to measure
    if (window_begin_ms >= 0) {
      const size_t b = std::min(mic.size(), static_cast<size_t>(window_begin_ms) * 16);
      const size_t e = std::min(mic.size(), static_cast<size_t>(window_end_ms) * 16);
      if (e <= b) throw std::runtime_error("--erle-window lies after the end of " + mic_path);
      report["erle_window_db"] = omni::audio::erle_db(mic.data(), run.cleaned.data(), b, e);
    }
    report["mic_dbfs"] = rms_dbfs(mic, 0, mic.size());
    report["out_dbfs"] = rms_dbfs(run.cleaned, 0, run.cleaned.size());
    report["estimated_delay_ms"] = run.estimated_delay_ms;
    report["lead_ms"] = run.lead_ms;
    report["converged_ms"] = run.converged_ms;
    report["echo_marked_ms"] = run.gated_ms;
    if (json) {
      std::printf("%s\n", report.dump().c_str());
    } else {
      std::printf("%s -> %s (%s)\n", mic_path.c_str(), out_path.c_str(), params.engine.c_str());
      if (report["erle_db"].is_null()) std::printf("  ERLE: omnid never audible outside speech\n");
      else std::printf("  ERLE %.1f dB over %zu echo frames\n", report["erle_db"].get<double>(), echo_frames);
      if (report.contains("erle_window_db"))
        std::printf("  ERLE in [%d, %d) ms: %.1f dB\n", window_begin_ms, window_end_ms,
                    report["erle_window_db"].get<double>());
      std::printf("  speech:");
      for (const auto& [s, e] : run.vad_segments) std::printf(" [%.0f, %.0f] ms", s, e);
      std::printf("%s\n", run.vad_segments.empty() ? " none" : "");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omni-aec: %s\n", e.what());
    return 1;
  }
  return 0;
}
