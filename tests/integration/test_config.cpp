// The configuration schema: defaults, the documented file, and errors that name key and line.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "daemon/config.h"

using omnid::ConfigError;
using omnid::parse_config;

namespace {

std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, EmptyFileMeansDefaults) {
  const auto c = parse_config("", "empty.yaml");
  EXPECT_EQ(c.model.device, "cuda");
  EXPECT_EQ(c.audio.output.backend, "portaudio");
  EXPECT_EQ(c.ipc.max_message_bytes, 16777216);
}

TEST(Config, ShippedFileIsValidAndMatchesTheDesign) {
  const auto c = omnid::load_config_file(std::string(OMNI_SOURCE_DIR) + "/config/omnid.yaml");
  EXPECT_EQ(c.model.path, "/var/lib/omnid/models/Qwen3-Omni-30B-A3B-Instruct");
  EXPECT_EQ(c.model.speaker, "ethan");
  EXPECT_EQ(c.audio.input.pipeline, "autoaudiosrc");
  EXPECT_EQ(c.ipc.control, "ipc:///run/omnid/control.sock");
  EXPECT_EQ(c.ipc.events, "ipc:///run/omnid/events.sock");
}

TEST(Config, ReadsEveryKey) {
  const auto c = parse_config(R"(
model: {path: /m, device: cpu, dtype: f32, speaker: chelsie, system_prompt: "Be brief.", max_new_tokens: 64,
        context_tokens: 4096, max_speech_frames: 100}
audio:
  input: {pipeline: "filesrc location=a.wav ! wavparse", listen: false}
  output: {backend: wav-file, path: "/tmp/x-{turn}.wav", volume: 0.5, device: default}
  vad: {aggressiveness: 3, threshold: 0.5, window_ms: 200, min_speech_ms: 100, end_silence_ms: 400,
        max_utterance_ms: 9000, pre_roll_ms: 100}
  barge_in: false
ipc: {control: "ipc:///tmp/c.sock", events: "ipc:///tmp/e.sock", max_message_bytes: 2048, heartbeat_ms: 500}
)",
                              "t.yaml");
  EXPECT_EQ(c.model.path, "/m");
  EXPECT_EQ(c.model.device, "cpu");
  EXPECT_EQ(c.model.dtype, "f32");
  EXPECT_EQ(c.model.max_new_tokens, 64);
  EXPECT_EQ(c.model.context_tokens, 4096);
  EXPECT_FALSE(c.audio.input.listen);
  EXPECT_EQ(c.audio.output.backend, "wav-file");
  EXPECT_DOUBLE_EQ(c.audio.output.volume, 0.5);
  EXPECT_EQ(c.audio.vad.aggressiveness, 3);
  EXPECT_EQ(c.audio.vad.window_ms, 200);
  EXPECT_FALSE(c.audio.barge_in);
  EXPECT_EQ(c.ipc.max_message_bytes, 2048);
  EXPECT_EQ(c.ipc.heartbeat_ms, 500);
}

TEST(Config, UnknownKeyNamesKeyAndLine) {
  const auto e = error_of("model:\n  path: /m\n  temperture: 0.7\n");
  EXPECT_NE(e.find("test.yaml:3: model.temperture: unknown key"), std::string::npos) << e;
}

TEST(Config, UnknownTopLevelSection) {
  const auto e = error_of("model: {path: /m}\nlogging: {level: 3}\n");
  EXPECT_NE(e.find("test.yaml:2: logging: unknown key"), std::string::npos) << e;
}

TEST(Config, WrongTypes) {
  EXPECT_NE(error_of("model:\n  max_new_tokens: lots\n").find("test.yaml:2: model.max_new_tokens: expected an integer, got 'lots'"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  max_new_tokens: 1.5\n").find("model.max_new_tokens: expected an integer"), std::string::npos);
  EXPECT_NE(error_of("audio:\n  barge_in: maybe\n").find("test.yaml:2: audio.barge_in: expected true or false"),
            std::string::npos);
  EXPECT_NE(error_of("model: [1, 2]\n").find("test.yaml:1: model: expected a mapping"), std::string::npos);
  EXPECT_NE(error_of("model:\n  path: [a, b]\n").find("test.yaml:2: model.path: expected a string, got a list"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  vad:\n    threshold: high\n").find("test.yaml:3: audio.vad.threshold: expected a number"),
            std::string::npos);
}

TEST(Config, BadValues) {
  EXPECT_NE(error_of("model:\n  device: tpu\n").find("test.yaml:2: model.device: 'tpu' is not one of cuda | cpu"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  output:\n    volume: 3\n").find("test.yaml:3: audio.output.volume: 3 is out of range [0, 1]"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  vad: {aggressiveness: 4}\n").find("audio.vad.aggressiveness: 4 is out of range [0, 3]"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  vad: {window_ms: 25}\n").find("audio.vad.window_ms: must be a multiple of 10"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  output: {backend: wav-file}\n").find("audio.output.path: backend wav-file needs a path"),
            std::string::npos);
  EXPECT_NE(error_of("ipc:\n  control: /run/omnid.sock\n").find("test.yaml:2: ipc.control: '/run/omnid.sock' is not a ZeroMQ endpoint"),
            std::string::npos);
  EXPECT_NE(error_of("model:\n  path: \"\"\n").find("model.path: must not be empty"), std::string::npos);
}

TEST(Config, SpeechPublishingKeysAreReadAndBadValuesNameTheKey) {
  const auto defaults = parse_config("", "t.yaml");
  EXPECT_FALSE(defaults.audio.output.publish);
  EXPECT_EQ(defaults.audio.output.publish_format, "s16le");
  const auto c = parse_config("audio:\n  output:\n    backend: \"null\"\n    publish: true\n    publish_format: f32le\n",
                              "t.yaml");
  EXPECT_TRUE(c.audio.output.publish);
  EXPECT_EQ(c.audio.output.publish_format, "f32le");
  std::string e = error_of("audio:\n  output:\n    publish_format: wav\n");
  EXPECT_NE(e.find("test.yaml:3: audio.output.publish_format: 'wav' is not one of s16le | f32le"), std::string::npos)
      << e;
  e = error_of("audio:\n  output:\n    publish: sometimes\n");
  EXPECT_NE(e.find("test.yaml:3: audio.output.publish: expected true or false"), std::string::npos) << e;
  e = error_of("audio:\n  output:\n    publish_rate: 16000\n");
  EXPECT_NE(e.find("audio.output.publish_rate: unknown key"), std::string::npos) << e;
}

TEST(Config, TheInputSourceIsGStreamerOrIpcAndABadOneNamesTheKey) {
  EXPECT_EQ(parse_config("", "t.yaml").audio.input.source, "gstreamer");
  EXPECT_EQ(parse_config("audio:\n  input:\n    source: ipc\n", "t.yaml").audio.input.source, "ipc");
  const std::string e = error_of("audio:\n  input:\n    source: alsa\n");
  EXPECT_NE(e.find("test.yaml:3: audio.input.source: 'alsa' is not one of gstreamer | ipc"), std::string::npos) << e;
}

TEST(Config, WeightsFormats) {
  EXPECT_EQ(parse_config("", "t.yaml").model.weights, "bf16");
  EXPECT_EQ(parse_config("model:\n  weights: int4\n", "t.yaml").model.weights, "int4");
  EXPECT_EQ(parse_config("model:\n  weights: experts=int4,attention=int8\n", "t.yaml").model.weights,
            "experts=int4,attention=int8");
  const std::string e = error_of("model:\n  weights: int3\n");
  EXPECT_NE(e.find("test.yaml:2: model.weights: weights 'int3': format 'int3' is not one of bf16, int8, int4"),
            std::string::npos)
      << e;
  const std::string p = error_of("model:\n  weights: vision=int4\n");
  EXPECT_NE(p.find("part 'vision' is not one of experts, attention, lm_head, talker"), std::string::npos) << p;
  // A change needs a restart (the weights are quantized at load).
  auto a = parse_config("", "a.yaml"), b = parse_config("model: {weights: int8}\n", "b.yaml");
  const auto keys = omnid::restart_required_changes(a, b);
  EXPECT_NE(std::find(keys.begin(), keys.end(), "model.weights"), keys.end());
}

TEST(Config, ListsEveryProblemAtOnce) {
  const auto e = error_of("model:\n  device: tpu\n  max_new_tokens: 0\naudio:\n  volume: 1\n");
  EXPECT_NE(e.find("test.yaml:2: model.device"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:3: model.max_new_tokens"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:5: audio.volume: unknown key"), std::string::npos) << e;
}

TEST(Config, SyntaxErrorHasLine) {
  const auto e = error_of("model:\n  path: /m\n   device: [cpu\n");
  EXPECT_NE(e.find("test.yaml:"), std::string::npos);
  EXPECT_NE(e.find("not valid YAML"), std::string::npos) << e;
}

TEST(Config, MissingFile) {
  EXPECT_THROW(omnid::load_config_file("/nonexistent/omnid.yaml"), ConfigError);
}

TEST(Config, RestartRequiredKeys) {
  auto a = parse_config("", "a");
  auto b = a;
  b.model.path = "/other";
  b.model.speaker = "chelsie";
  b.ipc.events = "ipc:///tmp/x";
  const auto keys = omnid::restart_required_changes(a, b);
  EXPECT_EQ(keys, (std::vector<std::string>{"model.path", "ipc.events"}));
}

TEST(Config, EchoCancelIsOffByDefaultAndEachBadValueNamesItsKey) {
  const auto d = parse_config("", "empty.yaml");
  EXPECT_FALSE(d.audio.echo_cancel.enabled);
  EXPECT_EQ(d.audio.echo_cancel.engine, "webrtc");
  EXPECT_EQ(d.audio.echo_cancel.suppression, "moderate");
  const auto c = parse_config("audio:\n  echo_cancel:\n    enabled: true\n    suppression: high\n    delay_ms: 120\n",
                              "test.yaml");
  EXPECT_TRUE(c.audio.echo_cancel.enabled);
  EXPECT_EQ(c.audio.echo_cancel.suppression, "high");
  EXPECT_EQ(c.audio.echo_cancel.delay_ms, 120);
  EXPECT_NE(error_of("audio:\n  echo_cancel: true\n").find("test.yaml:2: audio.echo_cancel: expected a mapping"),
            std::string::npos)
      << error_of("audio:\n  echo_cancel: true\n");
  EXPECT_NE(error_of("audio:\n  echo_cancel:\n    enabled: yes please\n").find("test.yaml:3: audio.echo_cancel.enabled: expected true or false"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  echo_cancel:\n    engine: dsp\n").find("test.yaml:3: audio.echo_cancel.engine: 'dsp' is not one of webrtc | speex"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  echo_cancel:\n    suppression: loud\n").find("audio.echo_cancel.suppression: 'loud' is not one of low | moderate | high"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  echo_cancel:\n    delay_ms: 900\n").find("audio.echo_cancel.delay_ms: 900 is out of range [0, 500]"),
            std::string::npos);
  EXPECT_NE(error_of("audio:\n  echo_cancel:\n    tail_ms: 9\n").find("test.yaml:3: audio.echo_cancel.tail_ms: unknown key"),
            std::string::npos)
      << error_of("audio:\n  echo_cancel:\n    tail_ms: 9\n");
}

TEST(Config, TheCameraSectionIsReadAndEachBadValueNamesItsKey) {
  const auto defaults = parse_config("", "t.yaml");
  EXPECT_EQ(defaults.camera.pipeline, "");
  EXPECT_EQ(defaults.camera.attach, "voice");
  EXPECT_EQ(defaults.camera.max_pixels, 640 * 480);
  const auto c = parse_config("camera:\n  pipeline: \"v4l2src device=/dev/video2\"\n  attach: always\n"
                              "  max_pixels: 100000\n  clip: 0\n",
                              "t.yaml");
  EXPECT_EQ(c.camera.pipeline, "v4l2src device=/dev/video2");
  EXPECT_EQ(c.camera.attach, "always");
  EXPECT_EQ(c.camera.max_pixels, 100000);
  std::string e = error_of("camera:\n  attach: sometimes\n");
  EXPECT_NE(e.find("test.yaml:2: camera.attach: 'sometimes' is not one of never | voice | always"), std::string::npos)
      << e;
  e = error_of("camera:\n  max_pixels: 10\n");
  EXPECT_NE(e.find("test.yaml:2: camera.max_pixels: 10 is out of range [3136, 16777216]"), std::string::npos) << e;
  EXPECT_EQ(parse_config("camera:\n  clip: 2.5\n", "t.yaml").camera.clip, 2.5);
  e = error_of("camera:\n  clip: 11\n");
  EXPECT_NE(e.find("test.yaml:2: camera.clip: 11 is out of range [0, 10]"), std::string::npos) << e;
  e = error_of("camera:\n  device: /dev/video0\n");
  EXPECT_NE(e.find("camera.device: unknown key"), std::string::npos) << e;
}
