// Speech output backends that run without a sound card: wav-file and null; PortAudio's errors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "audio/device/playback.h"
#include "audio/io/wav.h"

using namespace omni::audio;

TEST(WavFileOutput, WritesEachUtteranceAtTheVolume) {
  const std::string pattern = "/tmp/omnid_test_" + std::to_string(getpid()) + "_{turn}.wav";
  std::vector<std::string> drained;
  auto out = make_audio_output({"wav-file", "", pattern, 0.5}, [&](const std::string& l) { drained.push_back(l); });
  std::vector<float> tone(2400);
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.8f * std::sin(2 * M_PI * 440 * i / 24000.0);
  out->begin(24000, "7");
  out->write(tone.data(), 1200);
  out->write(tone.data() + 1200, 1200);
  const std::string path = "/tmp/omnid_test_" + std::to_string(getpid()) + "_7.wav";
  out->end();
  ASSERT_EQ(drained, std::vector<std::string>{"7"});
  EXPECT_EQ(out->destination(), path);
  const auto wav = read_wav_file(path);
  EXPECT_EQ(wav.sample_rate, 24000);
  ASSERT_EQ(wav.frames(), 2400u);
  for (size_t i = 0; i < tone.size(); i += 97) EXPECT_NEAR(wav.interleaved[i], 0.5f * tone[i], 1e-4);
  std::remove(path.c_str());
}

TEST(WavFileOutput, AbortDropsLaterAudioAndReportsNoDrain) {
  const std::string path = "/tmp/omnid_test_abort_" + std::to_string(getpid()) + ".wav";
  int drained = 0;
  auto out = make_audio_output({"wav-file", "", path, 1.0}, [&](const std::string&) { ++drained; });
  std::vector<float> s(100, 0.1f);
  out->begin(24000, "1");
  out->write(s.data(), s.size());
  out->abort();
  out->write(s.data(), s.size());
  out->end();
  EXPECT_EQ(drained, 0);
  EXPECT_EQ(read_wav_file(path).frames(), 100u);
  std::remove(path.c_str());
}

TEST(WavFileOutput, UnwritablePathIsAnError) {
  auto out = make_audio_output({"wav-file", "", "/nonexistent/dir/x.wav", 1.0}, nullptr);
  try {
    out->begin(24000, "1");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.wav"), std::string::npos);
  }
}

TEST(NullOutput, DrainsAtEnd) {
  int drained = 0;
  auto out = make_audio_output({"null", "", "", 1.0}, [&](const std::string&) { ++drained; });
  out->begin(24000, "3");
  float x = 0;
  out->write(&x, 1);
  out->end();
  EXPECT_EQ(drained, 1);
}

namespace {
struct Tapped {
  size_t count;
  double at_ms;
};
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

// The null output plays like a device that keeps running: every utterance starts on its 10 ms periods counted from
// the first, write() returns the time the tap gets, and an underrun's silence is tapped, so what it plays is one
// stream on one sample grid (what the echo canceller's alignment needs from one answer to the next).
TEST(NullOutput, PlaysEveryUtteranceOnOneSampleGridAndTapsAnUnderrunsSilence) {
  auto out = make_audio_output({"null", "", "", 1.0}, nullptr);
  std::vector<Tapped> taps;
  out->set_tap([&](const float* s, size_t n, int rate, double at) {
    EXPECT_EQ(rate, 24000);
    taps.push_back({n, at});
    if (taps.size() == 4) {  // the underrun's silence
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(s[i], 0.0f);
    }
  });
  std::vector<float> chunk(480, 0.25f);  // 20 ms
  out->begin(24000, "1");
  const double before1 = now_ms();
  const double t1 = out->write(chunk.data(), chunk.size());
  EXPECT_GE(t1, before1);
  EXPECT_LT(t1, now_ms() + 10.0001);
  out->end();
  std::this_thread::sleep_for(std::chrono::milliseconds(37));
  out->begin(24000, "2");
  const double before2 = now_ms();
  const double t2 = out->write(chunk.data(), chunk.size());
  const double t3 = out->write(chunk.data(), chunk.size());
  EXPECT_GE(t2, before2);
  const double periods = (t2 - t1) / 10.0;
  EXPECT_NEAR(periods, std::round(periods), 1e-6) << "the second utterance left the first one's 10 ms grid";
  EXPECT_GE(periods, 4.0);  // 37 ms after the first one started
  EXPECT_DOUBLE_EQ(t3, t2 + 20.0);  // written ahead: it follows the previous chunk
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // the device runs dry
  const double t4 = out->write(chunk.data(), chunk.size());
  ASSERT_EQ(taps.size(), 5u);
  EXPECT_EQ(taps[0].at_ms, t1);
  EXPECT_EQ(taps[1].at_ms, t2);
  EXPECT_EQ(taps[2].at_ms, t3);
  // The silence between the second chunk's end and t4 was played and tapped: the stream has no gap.
  EXPECT_DOUBLE_EQ(taps[3].at_ms, t3 + 20.0);
  EXPECT_DOUBLE_EQ(taps[3].at_ms + taps[3].count / 24.0, t4);
  EXPECT_EQ(taps[3].count % 240, 0u);
  EXPECT_EQ(taps[4].at_ms, t4);
}

TEST(PortAudioOutput, UnknownDeviceNamesTheDevice) {
  try {
    make_audio_output({"portaudio", "no such card 1234", "", 1.0}, nullptr);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'no such card 1234'"), std::string::npos) << e.what();
  }
}

TEST(AudioOutput, UnknownBackend) { EXPECT_THROW(make_audio_output({"jack", "", "", 1.0}, nullptr), std::runtime_error); }

namespace {

// An ALSA null sink that PortAudio lists by name: a ~/.asoundrc in a private HOME (alsa-lib reads it).
void use_test_alsa_sink() {
  const std::string home = "/tmp/omnid_alsa_home_" + std::to_string(getpid());
  mkdir(home.c_str(), 0700);
  std::FILE* f = std::fopen((home + "/.asoundrc").c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("pcm.omnid_test_sink {\n  type null\n  hint { show on description \"omnid test sink\" }\n}\n", f);
  std::fclose(f);
  setenv("HOME", home.c_str(), 1);
}

// use_test_alsa_sink(), and whether PortAudio lists it.
bool test_alsa_sink_listed() {
  use_test_alsa_sink();
  const auto names = list_output_devices();
  return std::find(names.begin(), names.end(), "omnid_test_sink") != names.end();
}

}  // namespace

TEST(PortAudioOutput, PlaysToANamedDeviceAndReportsDrained) {
  if (!test_alsa_sink_listed()) GTEST_SKIP() << "PortAudio does not list the ALSA test sink here";
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> drained;
  // A unique part of the name is enough.
  auto out = make_audio_output({"portaudio", "test_sink", "", 0.5}, [&](const std::string& label) {
    std::lock_guard lock(mu);
    drained.push_back(label);
    cv.notify_all();
  });
  EXPECT_EQ(out->destination(), "omnid_test_sink");
  std::vector<float> chunk(2400, 0.1f);
  out->begin(24000, "9");
  for (int i = 0; i < 5; ++i) out->write(chunk.data(), chunk.size());
  out->end();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return !drained.empty(); }));
    EXPECT_EQ(drained, std::vector<std::string>{"9"});
  }
  // Aborted playback reports nothing; the next utterance plays again.
  out->begin(24000, "10");
  out->write(chunk.data(), chunk.size());
  out->abort();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(drained.size(), 1u);
  }
  out->begin(24000, "11");
  out->write(chunk.data(), chunk.size());
  out->end();
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return drained.size() == 2; }));
  EXPECT_EQ(drained.back(), "11");
}

// PortAudio's stream keeps running between utterances (the far end stays one stream on the device's clock): the
// tap goes on hearing its silence after an utterance has drained, and the next utterance plays on it.
TEST(PortAudioOutput, KeepsItsStreamRunningBetweenUtterances) {
  if (!test_alsa_sink_listed()) GTEST_SKIP() << "PortAudio does not list the ALSA test sink here";
  std::mutex mu;
  std::condition_variable cv;
  int drained = 0;
  size_t tapped = 0, loud = 0;
  auto out = make_audio_output({"portaudio", "omnid_test_sink", "", 1.0}, [&](const std::string&) {
    std::lock_guard lock(mu);
    ++drained;
    cv.notify_all();
  });
  out->set_tap([&](const float* s, size_t n, int, double) {
    std::lock_guard lock(mu);
    tapped += n;
    for (size_t i = 0; i < n; ++i) loud += s[i] != 0.0f;
  });
  std::vector<float> chunk(2400, 0.1f);
  for (int k = 0; k < 2; ++k) {
    out->begin(24000, std::to_string(k));
    const double before = now_ms();
    EXPECT_GE(out->write(chunk.data(), chunk.size()), before);
    out->end();
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return drained == k + 1; }));
    const size_t at_drain = tapped;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    lock.lock();
    EXPECT_GT(tapped, at_drain) << "the stream stopped after utterance " << k;
  }
  EXPECT_EQ(out->write(chunk.data(), chunk.size()), -1) << "written with no utterance open";
  std::lock_guard lock(mu);
  EXPECT_EQ(loud, 2 * chunk.size());
}
