// Mel front end (config checks, errors, shape), the audio token count, the audio encoder's CPU
// convolution/permute operations, and the input path for a WAV of another rate and layout.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/audio_encoder.h"
#include "cpu/cpu_backend.h"
#include "audio/io/wav.h"
#include "model/mel.h"
#include "omni/errors.h"

namespace fs = std::filesystem;
using namespace omni;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = (fs::temp_directory_path() / ("omni_test_mel_" + name)).string();
  std::ofstream(path) << text;
  return path;
}

std::string config_error(const std::string& json) {
  try {
    MelConfig::load(write_temp("pre.json", json));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// A voiced-speech-like test signal: harmonics of 150 Hz up to 4 kHz, amplitude-modulated.
double voice(double t) {
  double s = 0;
  for (int k = 1; k * 150 < 4000; ++k) s += std::sin(2 * M_PI * 150 * k * t + 0.3 * k) / k;
  return 0.2 * s * (0.6 + 0.4 * std::sin(2 * M_PI * 3 * t));
}

}  // namespace

TEST(MelConfig, ReadsThePreprocessorConfigAndRejectsDither) {
  const MelConfig c = MelConfig::load(write_temp(
      "ok.json", R"({"feature_size": 128, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "dither": 0.0})"));
  EXPECT_EQ(c.feature_size, 128);
  EXPECT_EQ(c.hop_length, 160);
  EXPECT_EQ(c.n_fft, 400);
  EXPECT_NE(config_error(R"({"feature_size": 128, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400,
                             "dither": 1e-5})").find("dither"), std::string::npos);
  EXPECT_NE(config_error(R"({"feature_size": 128, "sampling_rate": 16000, "n_fft": 400})").find("hop_length"),
            std::string::npos);
  EXPECT_NE(config_error(R"({"feature_size": "128", "sampling_rate": 16000, "hop_length": 160, "n_fft": 400})")
                .find("feature_size"), std::string::npos);
  EXPECT_NE(config_error("{not json").find("invalid JSON"), std::string::npos);
}

TEST(MelFrontend, FrameCountShapeAndRange) {
  MelFrontend mel;
  std::vector<float> wave(16000 + 159);
  for (size_t i = 0; i < wave.size(); ++i) wave[i] = float(voice(double(i) / 16000));
  const MelFeatures f = mel.compute(wave.data(), wave.size());
  EXPECT_EQ(f.bins, 128);
  EXPECT_EQ(f.frames, 100);  // samples // hop: the centred STFT's last frame is dropped
  EXPECT_EQ(mel.frame_count(wave.size()), 100);
  float lo = 1e9f, hi = -1e9f;
  for (float v : f.data) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_FLOAT_EQ(hi - lo, 2.0f);  // the floor is 8 decades below the clip's maximum: (8) / 4
}

TEST(MelFrontend, FilterBankMatchesTransformersMelFilterBank) {
  MelFrontend mel;
  const auto& w = mel.filters();  // [201, 128]
  ASSERT_EQ(w.size(), 201u * 128u);
  // Entries of transformers.audio_utils.mel_filter_bank(201, 128, 0.0, 8000.0, 16000, "slaney",
  // "slaney") (float32), which has 394 non-zero entries summing to 3.1909857.
  struct Entry { int f, m; float v; };
  for (const Entry& e : {Entry{1, 0, 1.237398665e-02f}, Entry{3, 5, 5.644591991e-03f}, Entry{26, 43, 2.454700135e-02f},
                         Entry{51, 71, 1.373696234e-02f}, Entry{76, 87, 1.763255568e-03f},
                         Entry{101, 99, 3.489238676e-03f}, Entry{126, 108, 1.360232360e-03f},
                         Entry{151, 116, 4.549629986e-03f}, Entry{176, 122, 1.819371129e-03f},
                         Entry{199, 127, 1.114280196e-03f}, Entry{1, 1, 3.0392564833164215e-02f},
                         Entry{2, 1, 0.f}, Entry{200, 127, 0.f}})
    EXPECT_NEAR(w[size_t(e.f) * 128 + size_t(e.m)], e.v, 1e-6f * e.v + 1e-12f) << e.f << "," << e.m;
  int nonzero = 0;
  double sum = 0;
  for (float v : w) {
    nonzero += v != 0.f;
    sum += v;
  }
  EXPECT_EQ(nonzero, 394);
  EXPECT_NEAR(sum, 3.1909857, 1e-5);
}

TEST(MelFrontend, RejectsTooShortAndNonFiniteClips) {
  MelFrontend mel;
  std::vector<float> tiny(200, 0.1f);
  EXPECT_THROW(mel.compute(tiny.data(), tiny.size()), Error);
  std::vector<float> bad(4000, 0.f);
  bad[1234] = std::nanf("");
  try {
    mel.compute(bad.data(), bad.size());
    ADD_FAILURE() << "no error for NaN";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 1234"), std::string::npos) << e.what();
  }
}

TEST(AudioTokens, MatchesTransformersFormula) {
  AudioEncoderConfig cfg;  // n_window 50
  // Spec 5.2 examples, and the clips of the golden fixtures.
  EXPECT_EQ(audio_token_count(100, cfg), 13);
  EXPECT_EQ(audio_token_count(200, cfg), 26);
  EXPECT_EQ(audio_token_count(250, cfg), 33);
  EXPECT_EQ(audio_token_count(370, cfg), 48);
  EXPECT_EQ(audio_token_count(73, cfg), 10);
  EXPECT_EQ(audio_token_count(337, cfg), 44);
  EXPECT_EQ(audio_token_count(960, cfg), 125);
  EXPECT_EQ(audio_token_count(30000, cfg), 3900);
  // HF _get_feat_extract_output_lengths, with Python's floor division.
  auto fdiv = [](int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  for (int T = 1; T <= 5000; ++T) {
    const int leave = T % 100, feat = fdiv(leave - 1, 2) + 1;
    const int hf = fdiv(fdiv(feat - 1, 2) + 1 - 1, 2) + 1 + (T / 100) * 13;
    ASSERT_EQ(audio_token_count(T, cfg), hf) << "T=" << T;
  }
}

TEST(CpuAudioOps, Conv2dGeluMatchesDirectSum) {
  CpuBackend be;
  // x [1, 2, 5, 4], w [3, 2, 3, 3], stride 2, pad 1 -> out [1, 3, 3, 2]
  std::vector<float> x(40), w(54), b = {0.1f, -0.2f, 0.3f}, out(18);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.7f * float(i)) * 0.5f;
  Tensor tx(x.data(), DType::F32, {1, 2, 5, 4}), tw(w.data(), DType::F32, {3, 2, 3, 3});
  Tensor tb(b.data(), DType::F32, {3}), to(out.data(), DType::F32, {1, 3, 3, 2});
  be.conv2d_gelu(tx, tw, tb, 2, 1, to);
  for (int co = 0; co < 3; ++co)
    for (int oh = 0; oh < 3; ++oh)
      for (int ow = 0; ow < 2; ++ow) {
        double acc = b[size_t(co)];
        for (int ci = 0; ci < 2; ++ci)
          for (int kh = 0; kh < 3; ++kh)
            for (int kw = 0; kw < 3; ++kw) {
              const int ih = oh * 2 - 1 + kh, iw = ow * 2 - 1 + kw;
              if (ih < 0 || ih >= 5 || iw < 0 || iw >= 4) continue;
              acc += double(w[size_t(((co * 2 + ci) * 3 + kh) * 3 + kw)]) * x[size_t((ci * 5 + ih) * 4 + iw)];
            }
        const double gelu = 0.5 * acc * (1 + std::erf(acc / std::sqrt(2.0)));
        EXPECT_NEAR(out[size_t((co * 3 + oh) * 2 + ow)], gelu, 1e-5) << co << "," << oh << "," << ow;
      }
  Tensor wrong(out.data(), DType::F32, {1, 3, 2, 2});
  EXPECT_THROW(be.conv2d_gelu(tx, tw, tb, 2, 1, wrong), Error);
}

// The Backend defaults (host round trip) give the CPU reference's result bit for bit.
TEST(CpuAudioOps, HostFallbacksMatchTheReference) {
  CpuBackend be;
  std::vector<float> x(2 * 3 * 8 * 6), w(4 * 3 * 9), b = {0.1f, 0.f, -0.1f, 0.2f}, ref(2 * 4 * 4 * 3), got(ref.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * float(i));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.11f * float(i));
  Tensor tx(x.data(), DType::F32, {2, 3, 8, 6}), tw(w.data(), DType::F32, {4, 3, 3, 3}), tb(b.data(), DType::F32, {4});
  be.conv2d_gelu(tx, tw, tb, 2, 1, Tensor(ref.data(), DType::F32, {2, 4, 4, 3}));
  be.Backend::conv2d_gelu(tx, tw, tb, 2, 1, Tensor(got.data(), DType::F32, {2, 4, 4, 3}));
  EXPECT_EQ(got, ref);
  std::vector<float> pref(ref.size()), pgot(ref.size());
  be.permute_0312(Tensor(ref.data(), DType::F32, {2, 4, 4, 3}), Tensor(pref.data(), DType::F32, {2, 3, 4, 4}));
  be.Backend::permute_0312(Tensor(ref.data(), DType::F32, {2, 4, 4, 3}), Tensor(pgot.data(), DType::F32, {2, 3, 4, 4}));
  EXPECT_EQ(pgot, pref);
}

TEST(CpuAudioOps, Permute0312) {
  CpuBackend be;
  std::vector<float> x(2 * 3 * 4 * 5), out(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
  be.permute_0312(Tensor(x.data(), DType::F32, {2, 3, 4, 5}), Tensor(out.data(), DType::F32, {2, 5, 3, 4}));
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c)
        for (int d = 0; d < 5; ++d)
          ASSERT_EQ(out[size_t(((a * 5 + d) * 3 + b) * 4 + c)], x[size_t(((a * 3 + b) * 4 + c) * 5 + d)]);
}

// A 44.1 kHz stereo int16 file goes through decode, downmix and soxr to the same features
// (and token count) as the same sound made at 16 kHz mono.
TEST(AudioInputPath, StereoCdRateWavGivesTheSameTokensAsMono16k) {
  const double seconds = 2.4731;
  const size_t n44 = size_t(seconds * 44100), n16 = size_t(std::llround(double(n44) * 16000 / 44100));
  std::vector<uint8_t> data;
  for (size_t i = 0; i < n44; ++i) {
    const double t = double(i) / 44100, side = 0.1 * std::sin(2 * M_PI * 2500 * t);
    for (double v : {voice(t) + side, voice(t) - side}) {  // the downmix cancels `side`
      const int16_t s = int16_t(std::lrint(v * 32767));
      data.push_back(uint8_t(uint16_t(s)));
      data.push_back(uint8_t(uint16_t(s) >> 8));
    }
  }
  std::vector<uint8_t> wav;
  auto le = [&](uint32_t v, int n) { for (int k = 0; k < n; ++k) wav.push_back(uint8_t(v >> (8 * k))); };
  auto tag = [&](const char* s) { wav.insert(wav.end(), s, s + 4); };
  tag("RIFF"); le(uint32_t(36 + data.size()), 4); tag("WAVE");
  tag("fmt "); le(16, 4); le(1, 2); le(2, 2); le(44100, 4); le(44100 * 4, 4); le(4, 2); le(16, 2);
  tag("data"); le(uint32_t(data.size()), 4);
  wav.insert(wav.end(), data.begin(), data.end());

  const std::vector<float> from_cd = audio::load_wav_mono(wav.data(), wav.size(), 16000);
  std::vector<float> direct(n16);
  for (size_t i = 0; i < n16; ++i) direct[i] = float(std::lrint(voice(double(i) / 16000) * 32767) / 32768.0);
  ASSERT_EQ(from_cd.size(), direct.size());

  MelFrontend mel;
  AudioEncoderConfig cfg;
  const MelFeatures a = mel.compute(from_cd.data(), from_cd.size()), b = mel.compute(direct.data(), direct.size());
  ASSERT_EQ(a.frames, b.frames);
  EXPECT_EQ(audio_token_count(a.frames, cfg), audio_token_count(b.frames, cfg));
  EXPECT_EQ(audio_token_count(a.frames, cfg), 32);  // 247 frames: 2*13 + ceil(47/8)
  double sum = 0;
  for (size_t i = 0; i < a.data.size(); ++i) sum += std::abs(a.data[i] - b.data[i]);
  const double mean_abs = sum / double(a.data.size());
  EXPECT_LT(mean_abs, 0.005) << "features of the converted file differ from the 16 kHz original";
  std::printf("[ audio ] 44.1 kHz stereo -> 16 kHz mono: %d frames, mean |feature diff| %.3g\n", a.frames, mean_abs);
}
