// The echo canceller on the simulated-room recordings of tests/fixtures/aec (tools/make_aec_recordings.py):
// echo return loss enhancement while only omnid talks, the user's speech against the residual echo during
// double talk, and the daemon's VAD (default settings) on the cleaned signal. The "unseen" set was made with
// another seed, voices and sentences, and was not used while the canceller was tuned.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <complex>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/wait.h>
#include <vector>

#include "audio/device/echo_canceller.h"
#include "audio/io/wav.h"

namespace {

using omni::audio::CancelledRecording;
using omni::audio::EchoCancelParams;

const std::string kDir = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/aec/";

struct Scene {
  nlohmann::json spec;
  std::vector<float> mic, ref, user;
  CancelledRecording run;
};

std::vector<Scene> load_set(const std::string& set) {
  std::ifstream f(kDir + "scenes.json");
  const nlohmann::json manifest = nlohmann::json::parse(f);
  std::vector<Scene> scenes;
  for (const auto& spec : manifest.at("sets").at(set)) {
    Scene s;
    s.spec = spec;
    const std::string name = spec.at("name");
    s.mic = omni::audio::load_wav_mono(kDir + name + ".mic.wav", 16000);
    s.ref = omni::audio::load_wav_mono(kDir + name + ".ref.wav", 16000);
    if (!spec.at("user").is_null()) s.user = omni::audio::load_wav_mono(kDir + name + ".user.wav", 16000);
    EchoCancelParams params;
    params.enabled = true;
    s.run = omni::audio::cancel_recording(s.mic, s.ref, params);
    scenes.push_back(std::move(s));
  }
  return scenes;
}

size_t at_ms(double ms) { return static_cast<size_t>(ms * 16.0); }

// ERLE over the part of the echo-only region after the canceller converged.
double echo_only_erle(const Scene& s) {
  const double from = std::max(s.spec.at("echo_only")[0].get<double>(), s.run.converged_ms);
  const double to = s.spec.at("echo_only")[1].get<double>();
  return omni::audio::erle_db(s.mic.data(), s.run.cleaned.data(), at_ms(from), at_ms(to));
}

// User speech against what is left of the echo (and the noise) during double talk. The canceller delays its
// output a little (WebRTC: 7 ms), found as the lag in [0, 20] ms where the output best matches the user's speech.
// Then in 20 ms frames (hop 10 ms, Hann window) and bands of 8 DFT bins (400 Hz), the output is split into its
// projection on the user's speech (a non-negative gain: the suppressor shapes the user's spectrum band by band,
// which is not echo) and the rest. Random residual echo leaks about 1/16 of its power into the projection, so
// near 6 dB the ratio reads at most ~0.4 dB high.
double user_over_residual_db(const Scene& s) {
  const size_t from = at_ms(s.spec.at("double_talk")[0].get<double>()), to = at_ms(s.spec.at("double_talk")[1].get<double>());
  const std::vector<float>& out = s.run.cleaned;
  size_t lag = 0;
  double best = -1e300;
  for (size_t l = 0; l <= 320; ++l) {
    double c = 0;
    for (size_t i = from; i < to && i + l < out.size(); ++i) c += double(out[i + l]) * s.user[i];
    if (c > best) best = c, lag = l;
  }
  constexpr size_t kN = 320, kBins = kN / 2 + 1, kBand = 8;
  std::vector<double> window(kN), cosv(kN), sinv(kN);
  for (size_t i = 0; i < kN; ++i) {
    window[i] = 0.5 - 0.5 * std::cos(2 * M_PI * i / (kN - 1));
    cosv[i] = std::cos(2 * M_PI * i / kN), sinv[i] = std::sin(2 * M_PI * i / kN);
  }
  auto dft = [&](const float* x, std::vector<std::complex<double>>& X) {
    for (size_t k = 0; k < kBins; ++k) {
      double re = 0, im = 0;
      for (size_t i = 0; i < kN; ++i) {
        const size_t m = (k * i) % kN;
        re += window[i] * x[i] * cosv[m], im -= window[i] * x[i] * sinv[m];
      }
      X[k] = {re, im};
    }
  };
  std::vector<std::complex<double>> O(kBins), U(kBins);
  double user_e = 0, rest_e = 0;
  for (size_t b = from; b + kN <= to && b + lag + kN <= out.size(); b += kN / 2) {
    dft(out.data() + b + lag, O);
    dft(s.user.data() + b, U);
    for (size_t k0 = 0; k0 < kBins; k0 += kBand) {
      double p = 0, q = 0;
      for (size_t k = k0; k < std::min(kBins, k0 + kBand); ++k) p += std::real(std::conj(U[k]) * O[k]), q += std::norm(U[k]);
      const double g = q > 0 ? std::max(p / q, 0.0) : 0.0;
      for (size_t k = k0; k < std::min(kBins, k0 + kBand); ++k) user_e += std::norm(g * U[k]), rest_e += std::norm(O[k] - g * U[k]);
    }
  }
  return 10.0 * std::log10(user_e / std::max(rest_e, 1e-20));
}

// Measures every scene of `set` and checks the goals. A goal missed is a failure, except in a build against
// webrtc-audio-processing 1.x (AEC3: Debian 13, Ubuntu 24.04), where the goals are known not to be met
// (docs/performance.md, "WebRTC 1.x"): there every measurement is printed, and the test is skipped with the
// list of the goals missed, so that the run says what 1.x does instead of passing or hiding it.
void check_set(const std::string& set, bool check_vad_on_echo) {
  const std::vector<Scene> scenes = load_set(set);
  ASSERT_FALSE(scenes.empty());
  std::vector<std::string> missed;
  auto goal = [&](bool met, const std::string& name, const std::string& what) {
    if (!met) missed.push_back(name + ": " + what);
  };
  char buf[160];
  for (const Scene& s : scenes) {
    const std::string name = s.spec.at("name");
    ASSERT_EQ(s.run.cleaned.size(), s.mic.size()) << name;
    const double erle = echo_only_erle(s);
    const bool linear = s.spec.at("linear");
    std::printf("[aec] %s %s/%s: delay %d ms (measured %d), converged at %.0f ms, ERLE %.1f dB",
                omni::audio::echo_library("webrtc").c_str(), set.c_str(), name.c_str(),
                s.spec.at("delay_ms").get<int>(), s.run.estimated_delay_ms, s.run.converged_ms, erle);
    goal(s.run.converged_ms >= 0, name, "the canceller never converged");
    std::snprintf(buf, sizeof buf, "ERLE %.1f dB is under %.0f dB", erle, linear ? 20.0 : 12.0);
    goal(erle >= (linear ? 20.0 : 12.0), name, buf);
    const auto& user = s.spec.at("user_speech");
    // The VAD never fires on echo alone: no utterance is confirmed (the moment the daemon would barge in)
    // before the user starts talking.
    const double user_start = user.empty() ? 1e12 : user[0][0].get<double>();
    for (double confirmed : s.run.vad_confirmed_ms) {
      if (confirmed < user_start) std::printf(", VAD FIRED ON ECHO ALONE at %.0f ms", confirmed);
      std::snprintf(buf, sizeof buf, "the VAD fired on echo alone at %.0f ms", confirmed);
      if (check_vad_on_echo) goal(confirmed >= user_start, name, buf);
    }
    if (user.empty() && check_vad_on_echo) goal(s.run.vad_segments.empty(), name, "the VAD found speech in echo alone");
    if (!user.empty()) {
      const double ratio = user_over_residual_db(s);
      std::printf(", double talk: user %.1f dB over the residual", ratio);
      std::snprintf(buf, sizeof buf, "double talk: the user is %.1f dB over the residual, under 6 dB", ratio);
      goal(ratio >= 6.0, name, buf);
      bool heard = false;
      for (const auto& [b, e] : s.run.vad_segments)
        for (const auto& u : user) heard |= b < u[1].get<double>() && e > u[0].get<double>();
      goal(heard, name, "the VAD did not fire on the user's speech");
      if (!s.run.vad_confirmed_ms.empty())
        std::printf(", VAD confirmed %.0f ms after the user's first word", s.run.vad_confirmed_ms[0] - user_start);
    }
    std::printf("\n");
  }
  std::string list;
  for (const std::string& m : missed) list += "\n  " + m;
  if (!omni::audio::echo_goals_met("webrtc") && !missed.empty())
    GTEST_SKIP() << missed.size() << " goal(s) not met with " << omni::audio::echo_library("webrtc")
                 << " (known, docs/performance.md):" << list;
  EXPECT_TRUE(missed.empty()) << missed.size() << " goal(s) not met:" << list;
}

}  // namespace

TEST(EchoCancel, RecordingsMeetTheGoalsOnTheTuningSet) { check_set("seen", true); }

// ERLE, double talk and the VAD hearing the user, on the recordings not used for tuning.
TEST(EchoCancel, UnseenRecordingsMeetTheEchoAndDoubleTalkGoals) { check_set("unseen", false); }

// On unseen_clip_d44 (clipping loudspeaker, 44 ms) residual echo comes in bursts that would add up to an
// utterance 110 ms before the user starts; Endpointer::set_echo_audible keeps them apart (docs/performance.md).
TEST(EchoCancel, UnseenRecordingsNeverFireTheVadOnEchoAlone) { check_set("unseen", true); }

TEST(EchoCancel, KeepsCancellingAcrossDeviceRestarts) {
  // Noise played and heard 100 ms later at half amplitude, over a microphone's own noise floor. At frame 400 both devices restart: their clocks
  // jump by 5 s (the reference and the capture are re-timed); at frame 800 only the playback restarts 200 ms
  // later than where its stream would have been (the echo moves with it). The canceller keeps cancelling.
  EchoCancelParams params;
  params.enabled = true;
  omni::audio::EchoCanceller canceller(params);
  const int frames = 1200;
  std::vector<float> played(static_cast<size_t>(frames) * 160);
  uint32_t seed = 1;
  for (float& x : played) {
    seed = seed * 1664525u + 1013904223u;
    x = 0.1f * static_cast<float>(static_cast<int32_t>(seed) / 2147483648.0);
  }
  std::vector<float> mics, outs;
  for (int f = 0; f < frames; ++f) {
    const double jump = f >= 400 ? 5000.0 : 0.0;
    const double play_shift = f >= 800 ? 200.0 : 0.0;
    canceller.push_reference(played.data() + f * 160, 160, f * 10.0 + jump + play_shift);
    std::vector<float> mic(160);
    for (int i = 0; i < 160; ++i) {
      const long k = static_cast<long>(f) * 160 + i - 1600 - (f >= 800 ? 3200 : 0);
      seed = seed * 1664525u + 1013904223u;
      const float floor = 3e-4f * static_cast<float>(static_cast<int32_t>(seed) / 2147483648.0);  // ~ -75 dBFS
      mic[i] = (k >= 0 ? 0.5f * played[static_cast<size_t>(k)] : 0.0f) + floor;
    }
    const std::vector<float> out = canceller.process(mic.data(), mic.size(), f * 10.0 + jump);
    ASSERT_EQ(out.size(), 160u);
    mics.insert(mics.end(), mic.begin(), mic.end());
    outs.insert(outs.end(), out.begin(), out.end());
  }
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < outs.size(); ++i) if (!std::isfinite(outs[i])) { if (!bad++) first_bad = i; }
  ASSERT_EQ(bad, 0u) << "first at sample " << first_bad;
  auto mean_erle = [&](int b, int e) { return omni::audio::erle_db(mics.data(), outs.data(), b * 160, e * 160); };
  std::printf("[aec] restarts: ERLE %.1f / %.1f / %.1f dB before each restart and at the end, %d engine resets\n",
              mean_erle(300, 400), mean_erle(700, 800), mean_erle(1100, 1200), canceller.engine_resets());
  EXPECT_EQ(canceller.capture_resyncs(), 1);
  EXPECT_EQ(canceller.reference_resyncs(), 2);
  EXPECT_EQ(canceller.frames_processed(), static_cast<uint64_t>(frames));
  EXPECT_EQ(canceller.engine_resets(), 0);
  // White noise is harder for this canceller than speech (its suppressor is tuned to speech: ~20 dB here
  // without any restart); the point is that each restart is followed by the same cancellation.
  EXPECT_GE(mean_erle(300, 400), 15.0);
  EXPECT_GE(mean_erle(700, 800), 15.0);
  EXPECT_GE(mean_erle(1100, 1200), 15.0);
}

// Half a minute of both streams whose stamps jitter by up to 3 ms and drift from the monotonic clock (the
// microphone's by +4 ms a second, the loudspeaker's by -4 ms a second: 120 ms each by the end, a hundred times a
// real sound card's drift) is one stream on each side, never restarted; a jump of 100 ms still restarts one.
TEST(EchoCancel, JitterAndClockDriftNeverRestartAStream) {
  EchoCancelParams params;
  params.enabled = true;
  omni::audio::EchoCanceller canceller(params);
  std::vector<float> chunk(160);
  uint32_t seed = 7;
  auto next = [&] {
    seed = seed * 1664525u + 1013904223u;
    return static_cast<float>(static_cast<int32_t>(seed) / 2147483648.0);
  };
  for (int f = 0; f < 3000; ++f) {
    const double t = f * 10.0;
    for (float& x : chunk) x = 0.1f * next();
    canceller.push_reference(chunk.data(), chunk.size(), t * (1 - 0.004) + 3.0 * next());
    for (float& x : chunk) x = 0.05f * next();
    ASSERT_EQ(canceller.process(chunk.data(), chunk.size(), t * (1 + 0.004) + 3.0 * next()).size(), 160u);
  }
  EXPECT_EQ(canceller.reference_resyncs(), 0);
  EXPECT_EQ(canceller.capture_resyncs(), 0);
  EXPECT_EQ(canceller.frames_processed(), 3000u);
  for (float& x : chunk) x = 0.05f * next();
  canceller.process(chunk.data(), chunk.size(), 30000.0 * 1.004 + 100.0);
  EXPECT_EQ(canceller.capture_resyncs(), 1);
}

TEST(EchoCancel, BadSettingsAreRefusedByName) {
  EchoCancelParams p;
  p.engine = "nope";
  EXPECT_THROW(
      {
        try {
          omni::audio::EchoCanceller c(p);
        } catch (const std::runtime_error& e) {
          EXPECT_NE(std::string(e.what()).find("audio.echo_cancel.engine"), std::string::npos);
          throw;
        }
      },
      std::runtime_error);
  p = EchoCancelParams{};
  p.delay_ms = 9999;
  EXPECT_THROW(omni::audio::validate(p), std::runtime_error);
  p = EchoCancelParams{};
  p.suppression = "max";
  EXPECT_THROW(omni::audio::validate(p), std::runtime_error);
}

namespace {
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int st = pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}
}  // namespace

TEST(EchoCancel, OmniAecWritesTheCleanedFileAndReportsSpeechAndErle) {
  const std::string out = ::testing::TempDir() + "omni_aec_clean.wav";
  const CommandResult r = run_command(std::string(OMNI_AEC_BIN) + " --mic " + kDir + "lin_d120.mic.wav --ref " + kDir +
                                      "lin_d120.ref.wav --out " + out + " --json");
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json report = nlohmann::json::parse(r.output);
  const std::vector<float> mic = omni::audio::load_wav_mono(kDir + "lin_d120.mic.wav", 16000);
  EXPECT_EQ(omni::audio::load_wav_mono(out, 16000).size(), mic.size());
  // The user speaks from 3.0 s: one utterance there, none before.
  ASSERT_EQ(report.at("vad_segments").size(), 1u) << r.output;
  const double start = report["vad_segments"][0][0], end = report["vad_segments"][0][1];
  EXPECT_GE(start, 2900.0);
  EXPECT_GT(end, 4000.0);
  EXPECT_GE(report.at("erle_db").get<double>(), 20.0);
  EXPECT_EQ(report.at("estimated_delay_ms").get<int>(), 120);
  EXPECT_GT(report.at("converged_ms").get<double>(), 0.0);
}

TEST(EchoCancel, OmniAecNamesWhatIsWrong) {
  const std::string out = ::testing::TempDir() + "omni_aec_bad.wav";
  CommandResult r = run_command(std::string(OMNI_AEC_BIN) + " --mic /nonexistent/mic.wav --ref " + kDir +
                                "lin_d20.ref.wav --out " + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("/nonexistent/mic.wav"), std::string::npos) << r.output;
  r = run_command(std::string(OMNI_AEC_BIN) + " --mic a.wav --ref b.wav --out c.wav --suppression extreme");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("audio.echo_cancel.suppression"), std::string::npos) << r.output;
  r = run_command(std::string(OMNI_AEC_BIN) + " --mic a.wav");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("--ref"), std::string::npos) << r.output;
}
