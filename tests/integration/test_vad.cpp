// VAD and endpointing: the endpointer's rules on scripted frame decisions, and the WebRTC detector
// on recordings whose speech segments are known (tools/make_daemon_recordings.sh prints them).
#include <gtest/gtest.h>

#include <cmath>

#include "audio/device/vad.h"
#include "audio/io/wav.h"

using namespace omni::audio;

namespace {

// Frames whose first sample says voiced (1) or not (0): lets a test script the detector.
struct Script {
  std::vector<float> samples;
  void add(bool voiced, int ms) {
    for (int f = 0; f < ms / 10; ++f) {
      samples.push_back(voiced ? 1.0f : 0.0f);
      samples.insert(samples.end(), kVadFrameSamples - 1, 0.0f);
    }
  }
};

struct Recorder {
  std::vector<double> starts;
  std::vector<Utterance> utterances;
  Endpointer::Callbacks callbacks() {
    Endpointer::Callbacks cb;
    cb.on_start = [this](double ms) { starts.push_back(ms); };
    cb.on_end = [this](Utterance&& u) { utterances.push_back(std::move(u)); };
    return cb;
  }
};

Endpointer::FrameClassifier scripted() {
  return [](const float* frame) { return frame[0] > 0.5f; };
}

VadParams params() {
  VadParams p;
  p.threshold = 0.6;
  p.window_ms = 100;
  p.min_speech_ms = 200;
  p.end_silence_ms = 500;
  p.max_utterance_ms = 5000;
  p.pre_roll_ms = 200;
  return p;
}

}  // namespace

TEST(Endpointer, OneUtteranceWithStartAndEnd) {
  Script s;
  s.add(false, 1000);
  s.add(true, 800);
  s.add(false, 1000);
  Recorder r;
  Endpointer ep(params(), scripted(), r.callbacks());
  ep.push(s.samples.data(), s.samples.size());
  ASSERT_EQ(r.starts.size(), 1u);
  ASSERT_EQ(r.utterances.size(), 1u);
  // The window reaches 60% voiced 60 ms into the speech; the start is dated to the window's start.
  EXPECT_NEAR(r.starts[0], 960, 60);
  EXPECT_NEAR(r.utterances[0].end_ms, 1800, 60);
  // pre-roll (200 ms) + speech (800 ms) + up to 200 ms tail, at 16 kHz
  const double ms = r.utterances[0].samples.size() / 16.0;
  EXPECT_GE(ms, 800);
  EXPECT_LE(ms, 1300);
  EXPECT_FALSE(r.utterances[0].truncated);
}

TEST(Endpointer, ShortBurstIsNoise) {
  Script s;
  s.add(false, 500);
  s.add(true, 120);  // below min_speech_ms
  s.add(false, 1000);
  Recorder r;
  Endpointer ep(params(), scripted(), r.callbacks());
  ep.push(s.samples.data(), s.samples.size());
  EXPECT_TRUE(r.starts.empty());
  EXPECT_TRUE(r.utterances.empty());
}

TEST(Endpointer, ShortPauseDoesNotSplit) {
  Script s;
  s.add(true, 500);
  s.add(false, 300);  // shorter than end_silence_ms
  s.add(true, 500);
  s.add(false, 800);
  Recorder r;
  Endpointer ep(params(), scripted(), r.callbacks());
  // Pushed in odd-sized chunks: framing must not depend on the capture's buffer size.
  for (size_t i = 0; i < s.samples.size(); i += 777)
    ep.push(s.samples.data() + i, std::min<size_t>(777, s.samples.size() - i));
  EXPECT_EQ(r.starts.size(), 1u);
  EXPECT_EQ(r.utterances.size(), 1u);
}

TEST(Endpointer, LongSpeechIsCut) {
  Script s;
  s.add(true, 6000);
  Recorder r;
  Endpointer ep(params(), scripted(), r.callbacks());
  ep.push(s.samples.data(), s.samples.size());
  ASSERT_GE(r.utterances.size(), 1u);
  EXPECT_TRUE(r.utterances[0].truncated);
  EXPECT_NEAR(r.utterances[0].samples.size() / 16.0, 5000, 20);
}

TEST(Endpointer, ResetDropsPartialUtterance) {
  Script s;
  s.add(true, 500);
  Recorder r;
  Endpointer ep(params(), scripted(), r.callbacks());
  ep.push(s.samples.data(), s.samples.size());
  EXPECT_EQ(r.starts.size(), 1u);
  ep.reset();
  Script quiet;
  quiet.add(false, 1000);
  ep.push(quiet.samples.data(), quiet.samples.size());
  EXPECT_TRUE(r.utterances.empty());
}

namespace {

std::vector<Utterance> detect(const std::string& file, double* first_start = nullptr) {
  const auto audio = load_wav_mono(std::string(OMNID_TEST_DATA) + "/" + file, kVadSampleRate);
  VoiceDetector detector(2);
  Recorder r;
  VadParams p;  // the daemon's defaults
  Endpointer ep(p, [&](const float* f) { return detector.is_voiced(f); }, r.callbacks());
  ep.push(audio.data(), audio.size());
  if (first_start && !r.starts.empty()) *first_start = r.starts[0];
  return r.utterances;
}

}  // namespace

TEST(WebRtcVad, FindsBothQuestionsInTheRecording) {
  // two_questions.wav: speech at 2.000-3.765 s and 6.265-8.511 s over a -50 dBFS noise floor.
  const auto u = detect("two_questions.wav");
  for (const auto& x : u) std::printf("utterance %.0f-%.0f ms, %zu samples\n", x.start_ms, x.end_ms, x.samples.size());
  ASSERT_EQ(u.size(), 2u);
  EXPECT_NEAR(u[0].start_ms, 2000, 150);
  EXPECT_NEAR(u[0].end_ms, 3765, 250);
  EXPECT_NEAR(u[1].start_ms, 6265, 150);
  EXPECT_NEAR(u[1].end_ms, 8511, 250);
}

TEST(WebRtcVad, NoiseFloorAloneIsNotSpeech) {
  EXPECT_TRUE(detect("quiet.wav").empty());
}

TEST(WebRtcVad, RejectsBadMode) { EXPECT_THROW(VoiceDetector(7), std::runtime_error); }

// Speculative turns: after speculate_after_ms of silence the endpointer hands out the utterance exactly
// as the endpoint will, so that an answer started then is the answer to the final utterance.
TEST(Endpointer, PauseHandsOutTheFinalUtteranceEarly) {
  Script s;
  s.add(false, 1000);
  s.add(true, 800);
  s.add(false, 1000);
  VadParams p = params();
  p.speculate_after_ms = 300;
  Recorder r;
  std::vector<Utterance> paused;
  int resumed = 0;
  auto cb = r.callbacks();
  cb.on_pause = [&](Utterance&& u) { paused.push_back(std::move(u)); };
  cb.on_resume = [&] { ++resumed; };
  Endpointer ep(p, scripted(), cb);
  ep.push(s.samples.data(), s.samples.size());
  ASSERT_EQ(paused.size(), 1u);
  ASSERT_EQ(r.utterances.size(), 1u);
  EXPECT_EQ(resumed, 0);
  EXPECT_EQ(paused[0].samples, r.utterances[0].samples);
  EXPECT_EQ(paused[0].end_ms, r.utterances[0].end_ms);
  EXPECT_EQ(paused[0].detected_ms - paused[0].end_ms, 300);
  EXPECT_EQ(r.utterances[0].detected_ms - r.utterances[0].end_ms, 500);
}

TEST(Endpointer, SpeechAfterAPauseResumesTheUtterance) {
  Script s;
  s.add(false, 1000);
  s.add(true, 800);
  s.add(false, 400);  // past speculate_after_ms, short of end_silence_ms
  s.add(true, 500);
  s.add(false, 1000);
  VadParams p = params();
  p.speculate_after_ms = 250;
  Recorder r;
  std::vector<Utterance> paused;
  int resumed = 0;
  auto cb = r.callbacks();
  cb.on_pause = [&](Utterance&& u) {
    EXPECT_EQ(resumed, static_cast<int>(paused.size()));
    paused.push_back(std::move(u));
  };
  cb.on_resume = [&] { ++resumed; };
  Endpointer ep(p, scripted(), cb);
  ep.push(s.samples.data(), s.samples.size());
  ASSERT_EQ(r.utterances.size(), 1u);  // one utterance covering both parts
  ASSERT_EQ(paused.size(), 2u);
  EXPECT_EQ(resumed, 1);
  EXPECT_LT(paused[0].samples.size(), r.utterances[0].samples.size());
  EXPECT_EQ(paused[1].samples, r.utterances[0].samples);
  EXPECT_GE(r.utterances[0].samples.size(), static_cast<size_t>(1.7 * kVadSampleRate));

  // Off (0): no pauses.
  Recorder r2;
  int pauses = 0;
  auto cb2 = r2.callbacks();
  cb2.on_pause = [&](Utterance&&) { ++pauses; };
  Endpointer off(params(), scripted(), cb2);
  off.push(s.samples.data(), s.samples.size());
  EXPECT_EQ(pauses, 0);
  EXPECT_EQ(r2.utterances.size(), 1u);
}

// Residual echo comes in short bursts: while omnid's voice may ring, bursts that each fall short of
// min_speech_ms never add up to an utterance (a candidate dies after 100 ms without speech); the same bursts
// without echo do (the candidate lives through end_silence_ms), and continuous speech confirms either way.
TEST(Endpointer, BurstsOfResidualEchoNeverAddUpToAnUtteranceWhileOmnidIsAudible) {
  Script bursts;
  bursts.add(false, 500);
  for (int i = 0; i < 6; ++i) bursts.add(true, 100), bursts.add(false, 200);  // 600 ms voiced over 1.8 s
  bursts.add(false, 1000);
  {
    Recorder r;
    Endpointer ep(params(), scripted(), r.callbacks());
    ep.set_echo_audible(true);
    ep.push(bursts.samples.data(), bursts.samples.size());
    EXPECT_TRUE(r.starts.empty());
    EXPECT_TRUE(r.utterances.empty());
  }
  {
    Recorder r;
    Endpointer ep(params(), scripted(), r.callbacks());
    ep.push(bursts.samples.data(), bursts.samples.size());
    EXPECT_EQ(r.starts.size(), 1u);
  }
  Script speech;
  speech.add(false, 500);
  speech.add(true, 600);
  speech.add(false, 1000);
  Recorder r;
  Endpointer ep(params(), scripted(), r.callbacks());
  ep.set_echo_audible(true);
  ep.push(speech.samples.data(), speech.samples.size());
  ASSERT_EQ(r.starts.size(), 1u);
  EXPECT_NEAR(r.starts[0], 460, 60);
  EXPECT_EQ(r.utterances.size(), 1u);
}
