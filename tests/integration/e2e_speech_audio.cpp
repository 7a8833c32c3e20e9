// Speech over the event socket (audio.output.publish, docs/protocol.md "Speech audio") against the real daemon
// (omnid_scripted: the daemon's code with a scripted engine that speaks 80 ms sine chunks, a different pitch for
// each of 8 consecutive words) and a real ZeroMQ subscriber (omni::ipc::EventSubscriber).
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "e2e_harness.h"

using namespace e2e;
using nlohmann::json;

namespace {

// The speech.audio events of `turn_id` that `events` received, checked to be contiguous: each at the offset where
// the one before ended, the first at 0, with the rate and format given and a binary frame of `samples` samples.
// Returns their PCM concatenated.
std::string published_pcm(const std::vector<omni::ipc::Event>& events, uint64_t turn_id, const std::string& format,
                          size_t& chunks) {
  const size_t width = format == "f32le" ? 4 : 2;
  std::string pcm;
  uint64_t next = 0;
  chunks = 0;
  for (const auto& e : events) {
    if (e.name != "speech.audio" || e.body["turn_id"] != turn_id) continue;
    ++chunks;
    EXPECT_FALSE(e.body.contains("seq")) << e.body;
    EXPECT_EQ(e.body["sample_rate"], 24000) << e.body;
    EXPECT_EQ(e.body["format"], format) << e.body;
    EXPECT_EQ(e.body["offset"].get<uint64_t>(), next) << e.body;
    EXPECT_TRUE(e.binary.has_value()) << e.body;
    if (!e.binary) continue;
    EXPECT_EQ(e.binary->size(), e.body["samples"].get<size_t>() * width) << e.body;
    pcm += *e.binary;
    next = e.body["offset"].get<uint64_t>() + e.binary->size() / width;
  }
  return pcm;
}

// The WAV writer's conversion of a float sample to 16-bit (audio/io/wav_writer.cpp).
int16_t to_s16(float x) {
  const float c = std::clamp(std::isnan(x) ? 0.f : x, -1.f, 1.f);
  return static_cast<int16_t>(std::lrint(std::min(c * 32768.f, 32767.f)));
}

// omnid_scripted with `script`, publishing speech in `format`; `output_yaml` replaces the wav-file speaker.
std::unique_ptr<DaemonProcess> start_publishing(const std::string& script, const std::string& format,
                                                const std::string& output_yaml = "") {
  auto o = scripted_options(script);
  o.output_yaml = output_yaml;
  o.extra_output_yaml = "    publish: true\n    publish_format: " + format + "\n";
  return start_ready(o, 30s);
}

// The scripted engine speaks one 80 ms chunk (1920 samples at 24 kHz) per answer token.
constexpr size_t kChunkSamples = 1920;

// The number of tokens in the turn's response.done (0 when none came).
size_t answer_tokens(const std::vector<omni::ipc::Event>& events, uint64_t turn_id) {
  for (const auto& e : events)
    if (e.name == "response.done" && e.body["turn_id"] == turn_id) return e.body["tokens"].get<size_t>();
  return 0;
}

// Asks a spoken question and collects every event until the turn's speech.end.
uint64_t spoken_turn(DaemonProcess& d, EventLog& events) {
  const auto a = d.request({{"cmd", "ask"}, {"text", "Say something."}});
  EXPECT_TRUE(a["ok"].get<bool>()) << a;
  const uint64_t id = a.value("turn_id", uint64_t(0));
  EXPECT_TRUE(events.wait_for("speech.end", 30s, [&](const auto& e) { return e.body["turn_id"] == id; }))
      << d.log();
  return id;
}

}  // namespace

TEST(SpeechAudio, TheS16lePcmOfASpokenTurnInOffsetOrderIsByteForByteTheWavTheFileSpeakerWrote) {
  auto d = start_publishing("step_ms=5,words=20", "s16le");
  EventLog events(d->events());
  const uint64_t id = spoken_turn(*d, events);
  size_t chunks = 0;
  const std::string pcm = published_pcm(events.seen(), id, "s16le", chunks);
  const std::string wav = wav_data(d->dir() + "/answer-" + std::to_string(id) + ".wav");
  const size_t tokens = answer_tokens(events.seen(), id);
  EXPECT_GE(tokens, 20u);
  EXPECT_EQ(chunks, tokens);  // one per token, as the engine made them
  EXPECT_EQ(pcm.size(), tokens * kChunkSamples * 2);
  EXPECT_EQ(pcm.size(), wav.size());
  EXPECT_TRUE(pcm == wav) << "the published PCM differs from the WAV file's samples";
  // Every chunk was published before the turn's speech.end (while the model made it, not after the turn).
  bool ended = false;
  for (const auto& e : events.seen()) {
    if (e.name == "speech.end" && e.body["turn_id"] == id) ended = true;
    if (e.name == "speech.audio" && e.body["turn_id"] == id) {
      EXPECT_FALSE(ended) << "speech.audio after speech.end";
    }
  }
  // Not in the replay buffer.
  const auto r = d->request({{"cmd", "events"}, {"since", 0}, {"topics", {"speech."}}});
  for (const auto& e : r["events"]) EXPECT_NE(e["event"], "speech.audio") << e;
}

// The same with the real engine: the tiny model's talker and code2wav (chunks of their own sizes).
TEST(SpeechAudio, TheTinyModelsPublishedPcmInOffsetOrderIsByteForByteTheWavTheFileSpeakerWrote) {
  DaemonOptions o = tiny_model_options();
  o.max_new_tokens = 8;
  o.extra_output_yaml = "    publish: true\n    publish_format: s16le\n";
  auto d = start_ready(o, 60s);
  EventLog events(d->events());
  const uint64_t id = spoken_turn(*d, events);
  size_t chunks = 0;
  const std::string pcm = published_pcm(events.seen(), id, "s16le", chunks);
  const std::string wav = wav_data(d->dir() + "/answer-" + std::to_string(id) + ".wav");
  EXPECT_GE(chunks, 1u);
  EXPECT_GT(wav.size(), 0u);
  EXPECT_EQ(pcm.size(), wav.size());
  EXPECT_TRUE(pcm == wav) << "the published PCM differs from the WAV file's samples";
}

TEST(SpeechAudio, TheF32lePcmOfASpokenTurnIsTheModelsSamplesThatTheWavFileHoldsAs16Bit) {
  auto d = start_publishing("step_ms=5,words=12", "f32le");
  EventLog events(d->events());
  const uint64_t id = spoken_turn(*d, events);
  size_t chunks = 0;
  const std::string pcm = published_pcm(events.seen(), id, "f32le", chunks);
  const std::string wav = wav_data(d->dir() + "/answer-" + std::to_string(id) + ".wav");
  EXPECT_EQ(chunks, answer_tokens(events.seen(), id));
  EXPECT_GE(chunks, 12u);
  ASSERT_EQ(pcm.size() / 4, wav.size() / 2);
  // The 16-bit file is the floats converted by the WAV writer's rule: each sample equal, none off by even 1 LSB.
  size_t differ = 0;
  for (size_t i = 0; i < pcm.size() / 4; ++i) {
    float x = 0;
    std::memcpy(&x, pcm.data() + 4 * i, 4);
    int16_t w = 0;
    std::memcpy(&w, wav.data() + 2 * i, 2);
    differ += to_s16(x) != w;
  }
  EXPECT_EQ(differ, 0u);
  // And they are the scripted engine's sine (0.3 at 220 Hz for the first word), not silence or another scale.
  float first[4];
  std::memcpy(first, pcm.data(), sizeof first);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(first[k], 0.3 * std::sin(2 * M_PI * 220 * k / 24000.0), 1e-6) << k;
}

TEST(SpeechAudio, PublishingWorksWithNoSpeaker) {
  auto d = start_publishing("step_ms=5,words=10", "s16le", "    backend: \"null\"\n");
  EventLog events(d->events());
  const uint64_t id = spoken_turn(*d, events);
  size_t chunks = 0;
  const std::string pcm = published_pcm(events.seen(), id, "s16le", chunks);
  const size_t tokens = answer_tokens(events.seen(), id);
  EXPECT_GE(tokens, 10u);
  EXPECT_EQ(chunks, tokens);
  EXPECT_EQ(pcm.size(), tokens * kChunkSamples * 2);
  // speech.end's duration counts the same samples.
  for (const auto& e : events.seen())
    if (e.name == "speech.end" && e.body["turn_id"] == id) {
      EXPECT_EQ(e.body["duration_ms"], 80 * tokens) << e.body;
    }
  // The first chunk is the scripted sine converted as the WAV writer converts.
  int16_t s1 = 0;
  std::memcpy(&s1, pcm.data() + 2, 2);
  EXPECT_EQ(s1, to_s16(static_cast<float>(0.3 * std::sin(2 * M_PI * 220 / 24000.0))));
  EXPECT_TRUE(d->request({{"cmd", "status"}})["ok"].get<bool>());
}

TEST(SpeechAudio, ACancelledTurnPublishesNoAudioAfterTurnCancelled) {
  auto o = scripted_options("step_ms=50,words=200");
  o.max_new_tokens = 1000;
  o.extra_output_yaml = "    publish: true\n";
  auto d = start_ready(o, 30s);
  EventLog events(d->events());
  const auto a = d->request({{"cmd", "ask"}, {"text", "Tell me everything."}});
  ASSERT_TRUE(a["ok"].get<bool>()) << a;
  const uint64_t id = a["turn_id"];
  ASSERT_TRUE(events.wait_for("speech.audio", 30s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  ASSERT_TRUE(events.wait_for("speech.audio", 30s,
                              [&](const auto& e) { return e.body["turn_id"] == id && e.body["offset"] != 0; }));
  const auto c = d->request({{"cmd", "cancel"}});
  ASSERT_EQ(c["turn_id"], id) << c;
  ASSERT_TRUE(events.wait_for("turn.cancelled", 2s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  events.pump(500ms);  // the engine would have made ~10 more chunks by now
  bool cancelled = false;
  size_t before = 0, after = 0;
  for (const auto& e : events.seen()) {
    if (e.name == "turn.cancelled" && e.body["turn_id"] == id) cancelled = true;
    if (e.name == "speech.audio" && e.body["turn_id"] == id) ++(cancelled ? after : before);
  }
  EXPECT_GE(before, 2u);
  EXPECT_EQ(after, 0u);
}

namespace {

std::string python_with_zmq() {
  for (const char* candidate : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(candidate) + " -c 'import zmq' >/dev/null 2>&1").c_str()) == 0) return candidate;
  return "";
}

std::pair<int, std::string> run_command(const std::string& cmd) {
  FILE* pipe = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  return {WEXITSTATUS(::pclose(pipe)), out};
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

// clients/python: an EventStream whose topics ask for speech.audio gets each chunk with its PCM under "pcm";
// one that does not (all topics) never sees it, and its numbered events stay gap-free.
TEST(SpeechAudio, ThePythonClientReceivesTheTurnsPcmWhenItsTopicsAskForIt) {
  const std::string python = python_with_zmq();
  if (python.empty()) GTEST_SKIP() << "pyzmq is not installed (make deps installs python3-zmq)";
  auto d = start_publishing("step_ms=5,words=8", "s16le");
  const std::string out_path = d->dir() + "/python.pcm";
  const std::string script = R"(
import sys
sys.path.insert(0, sys.argv[1])
import omnid_client
with omnid_client.Client() as omnid:
    audio = omnid.events(["speech.", "turn.", "response."])
    everything = omnid.events()
    turn = omnid.request("ask", text="speak")["turn_id"]
    pcm, next_offset, chunks, tokens = b"", 0, 0, 0
    for name, body in audio.turn(turn, speak=True):
        if name == "response.done":
            tokens = body["tokens"]
        if name == "speech.audio":
            assert body["offset"] == next_offset, (body["offset"], next_offset)
            assert body["format"] == "s16le" and body["sample_rate"] == 24000
            assert len(body["pcm"]) == 2 * body["samples"]
            pcm += body["pcm"]
            next_offset += body["samples"]
            chunks += 1
    names = [name for name, body in everything.turn(turn, speak=True)]
    open(sys.argv[2], "wb").write(pcm)
    print(turn, chunks, tokens, "speech.audio" in names, names[-1])
)";
  std::ofstream(d->dir() + "/client.py") << script;
  auto [rc, out] = run_command("OMNID_CONTROL='" + d->control() + "' OMNID_EVENTS='" + d->events() + "' " + python +
                               " " + d->dir() + "/client.py " + OMNI_SOURCE_DIR + "/clients/python " + out_path);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream words(out);
  uint64_t turn = 0;
  size_t chunks = 0, tokens = 0;
  std::string audio_in_all, last;
  words >> turn >> chunks >> tokens >> audio_in_all >> last;
  EXPECT_GE(tokens, 8u) << out;
  EXPECT_EQ(chunks, tokens) << out;
  EXPECT_EQ(audio_in_all, "False") << out;
  EXPECT_EQ(last, "speech.end") << out;
  const std::string wav = wav_data(d->dir() + "/answer-" + std::to_string(turn) + ".wav");
  EXPECT_EQ(wav.size(), tokens * kChunkSamples * 2);
  EXPECT_TRUE(read_all(out_path) == wav) << "the Python client's PCM differs from the WAV file";
}

// omnictl events prints speech.audio's JSON with the PCM's size (binary_bytes), one line each, and goes on.
TEST(SpeechAudio, OmnictlEventsPrintsSpeechAudioAsJsonWithTheByteCount) {
  auto d = start_publishing("step_ms=5,words=6", "f32le");
  const std::string out_path = d->dir() + "/omnictl.out";
  const std::string cmd = "timeout 20 " + std::string(OMNICTL_BIN) + " --endpoint " + d->control() + " --events " +
                          d->events() + " events speech. heartbeat response.done > " + out_path + " 2>&1 & echo $! > " +
                          d->dir() + "/omnictl.pid";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  struct StopOmnictl {  // the `timeout` started above, and with it omnictl, when the test ends
    pid_t pid;
    ~StopOmnictl() {
      if (pid > 0) ::kill(pid, SIGTERM);
    }
  } stop{static_cast<pid_t>(std::atoi(read_all(d->dir() + "/omnictl.pid").c_str()))};
  // Connected once it prints the first heartbeat (one a second).
  const auto connected_by = Clock::now() + 10s;
  while (read_all(out_path).find("heartbeat") == std::string::npos && Clock::now() < connected_by)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(read_all(out_path).find("heartbeat"), std::string::npos) << read_all(out_path);
  const auto a = d->request({{"cmd", "ask"}, {"text", "speak"}});
  ASSERT_TRUE(a["ok"].get<bool>()) << a;
  const uint64_t id = a["turn_id"];
  std::vector<json> audio;
  bool ended = false;
  size_t tokens = 0;
  for (const auto until = Clock::now() + 15s; !ended && Clock::now() < until;) {
    std::this_thread::sleep_for(50ms);
    audio.clear();
    std::istringstream lines(read_all(out_path));
    for (std::string line; std::getline(lines, line);) {
      const json e = json::parse(line, nullptr, false);
      ASSERT_TRUE(e.is_object()) << "not a JSON line: " << line;
      if (e["event"] == "speech.audio" && e["turn_id"] == id) audio.push_back(e);
      if (e["event"] == "speech.end" && e["turn_id"] == id) ended = true;
      if (e["event"] == "response.done" && e["turn_id"] == id) tokens = e["tokens"];
    }
  }
  ASSERT_TRUE(ended) << read_all(out_path);
  EXPECT_GE(tokens, 6u);
  ASSERT_EQ(audio.size(), tokens) << read_all(out_path);
  for (size_t i = 0; i < audio.size(); ++i) {
    EXPECT_EQ(audio[i]["binary_bytes"], kChunkSamples * 4) << audio[i];
    EXPECT_EQ(audio[i]["offset"], kChunkSamples * i) << audio[i];
    EXPECT_EQ(audio[i]["format"], "f32le") << audio[i];
  }
}

// audio.output.publish is live: a reload turns it on (and off) for the next turn without a restart.
TEST(SpeechAudio, AReloadTurnsPublishingOnAndOff) {
  auto d = start_ready(scripted_options("step_ms=5,words=4"), 30s);
  EventLog events(d->events());
  const uint64_t quiet = spoken_turn(*d, events);
  size_t chunks = 0;
  published_pcm(events.seen(), quiet, "s16le", chunks);
  EXPECT_EQ(chunks, 0u);

  std::string yaml = d->default_config();
  yaml.replace(yaml.find("  barge_in:"), 0, "    publish: true\n");
  d->write_config(yaml);
  const auto r = d->request({{"cmd", "reload"}});
  ASSERT_TRUE(r["ok"].get<bool>()) << r;
  const uint64_t loud = spoken_turn(*d, events);
  const std::string pcm = published_pcm(events.seen(), loud, "s16le", chunks);
  EXPECT_EQ(chunks, answer_tokens(events.seen(), loud));
  EXPECT_GT(chunks, 0u);
  EXPECT_TRUE(pcm == wav_data(d->dir() + "/answer-" + std::to_string(loud) + ".wav"));

  d->write_config(d->default_config());
  ASSERT_TRUE(d->request({{"cmd", "reload"}})["ok"].get<bool>());
  const uint64_t again = spoken_turn(*d, events);
  published_pcm(events.seen(), again, "s16le", chunks);
  EXPECT_EQ(chunks, 0u);
}

// A voice turn started speculatively during the end-silence (config.md, speculative turns) publishes nothing
// until the endpoint commits it; then what it had made goes out at offset 0 and the rest follows contiguously,
// and the whole equals the WAV file.
TEST(SpeechAudio, ASpeculativeVoiceTurnPublishesFromOffsetZeroOnceCommitted) {
  auto o = scripted_options("step_ms=20,words=12");
  o.input_pipeline = "filesrc location=" + data_file("one_question.wav") + " ! wavparse";
  o.extra_output_yaml = "    publish: true\n";
  auto d = start_ready(o, 30s);
  EventLog events(d->events());
  ASSERT_EQ(d->request({{"cmd", "listen"}, {"enabled", true}})["listening"], true);
  auto start = events.wait_for("turn.start", 30s);
  ASSERT_TRUE(start);
  const uint64_t id = start->body["turn_id"];
  ASSERT_TRUE(events.wait_for("speech.end", 30s, [&](const auto& e) { return e.body["turn_id"] == id; }));
  bool speculative = false, audio_before_start = false, started = false;
  for (const auto& e : events.seen()) {
    if (e.name == "turn.start" && e.body["turn_id"] == id) started = true;
    if (e.name == "speech.audio" && !started) audio_before_start = true;
    if (e.name == "speech.first_audio" && e.body["turn_id"] == id) speculative = e.body.value("speculative", false);
  }
  EXPECT_FALSE(audio_before_start) << "speech.audio before the turn was committed";
  size_t chunks = 0;
  const std::string pcm = published_pcm(events.seen(), id, "s16le", chunks);
  EXPECT_GT(chunks, 0u);
  EXPECT_TRUE(pcm == wav_data(d->dir() + "/answer-" + std::to_string(id) + ".wav"));
  // Reported, not required: whether the engine had made audio before the endpoint depends on timing.
  std::printf("speculative: %s, chunks %zu\n", speculative ? "yes" : "no", chunks);
}
