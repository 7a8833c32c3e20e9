// omnid configuration: the YAML schema of docs/config.md, parsed and validated.
//
// Every key is known here; an unknown key, a wrong type or an out-of-range value is an error
// that names the file, the line and the dotted key, so one log line tells an operator what to fix.
// docs/config.md documents each field; config/omnid.yaml is the documented default.
#pragma once
#include <omni/engine.h>

#include "audio/device/echo_canceller.h"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace omnid {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// model.sampling: how answers are sampled, over the checkpoint's generation_config.json. Unset keys keep the
// checkpoint's value (transformers' defaults when the file does not set them: greedy).
struct SamplingConfig {
  std::optional<double> temperature;         // 0: greedy; > 0: sample at this temperature
  std::optional<int> top_k;                  // 0: off
  std::optional<double> top_p;               // (0, 1]; 1: off
  std::optional<double> repetition_penalty;  // > 0; 1: off
  std::optional<uint64_t> seed;              // unset: a fresh seed for each turn
  bool operator==(const SamplingConfig&) const = default;
};

struct ModelConfig {
  std::string path = "/var/lib/omnid/models/Qwen3-Omni-30B-A3B-Instruct";
  std::string device = "cuda";  // cuda | cpu
  std::string dtype;            // "" (backend default) | f32 | bf16
  std::string weights = "bf16";  // bf16 | int8 | int4 | part=format,... (omni::LoadOptions::weights)
  std::string speaker = "ethan";
  std::string system_prompt = "You are a helpful voice assistant on a robot. Answer briefly.";
  int max_new_tokens = 256;
  int context_tokens = 8192;
  int max_speech_frames = 4096;
  bool user_transcript = true;  // user.transcript: the model transcribes each voice turn after its answer
  SamplingConfig sampling;
  bool operator==(const ModelConfig&) const = default;
};

struct InputConfig {
  std::string source = "gstreamer";       // gstreamer: `pipeline`; ipc: `push_audio` requests (docs/protocol.md)
  std::string pipeline = "autoaudiosrc";  // GStreamer source description
  bool listen = true;                      // start with the microphone open
  bool restart_on_end = true;              // a source that ends is lost like one that fails: rebuilt
  bool operator==(const InputConfig&) const = default;
};

struct OutputConfig {
  std::string backend = "portaudio";  // portaudio | wav-file | null
  std::string device = "default";     // PortAudio device name
  std::string path;                   // wav-file: file to write; "{turn}" is replaced by the turn id
  double volume = 1.0;                // linear gain, 0 (mute) .. 1 (full scale)
  // Speech also goes out as speech.audio events on the event socket (docs/protocol.md), as the model makes it.
  bool publish = false;
  std::string publish_format = "s16le";  // s16le | f32le: the PCM of the events' binary frames
  bool operator==(const OutputConfig&) const = default;
};

struct VadConfig {
  int aggressiveness = 2;      // WebRTC VAD mode 0 (lenient) .. 3 (strict)
  double threshold = 0.6;      // fraction of voiced 10 ms frames in the window that means speech
  int window_ms = 100;         // smoothing window for `threshold`
  int min_speech_ms = 200;     // shorter bursts are noise, not an utterance
  int end_silence_ms = 700;    // this much non-speech ends the utterance
  int max_utterance_ms = 30000;
  int pre_roll_ms = 300;       // audio kept from before the detected start
  // Speculative turns: after this much silence the turn starts on the utterance so far, unpublished and
  // unplayed until end_silence_ms commits it (or speech resumes and it is dropped). 0: off; else in
  // [200, end_silence_ms). The default is off by itself when end_silence_ms <= it. docs/config.md.
  int speculate_after_ms = 300;
  bool operator==(const VadConfig&) const = default;
};

struct AudioConfig {
  InputConfig input;
  OutputConfig output;
  VadConfig vad;
  bool barge_in = false;  // user speech while omnid answers cancels the answer (needs a headset or echo cancellation)
  // Acoustic echo cancellation of what omnid plays from what the microphone hears (docs/config.md,
  // audio.echo_cancel); off by default.
  omni::audio::EchoCancelParams echo_cancel;
  bool operator==(const AudioConfig&) const = default;
};

struct IpcConfig {
  std::string control = "ipc:///run/omnid/control.sock";
  std::string events = "ipc:///run/omnid/events.sock";
  long long max_message_bytes = 16777216;
  int heartbeat_ms = 1000;
  // Who may connect (ZAP, by the peer's SO_PEERCRED uid or primary gid). Both empty: the daemon's own
  // uid and group. Names are resolved when the file is read.
  std::vector<unsigned> allow_uids;
  std::vector<unsigned> allow_gids;
  // CURVE for tcp:// endpoints: a file holding the server's Z85 secret key (40 characters), and the Z85
  // public keys of the clients allowed in (empty: any client that knows the server's public key).
  std::string curve_secret_key_file;
  std::string curve_secret_key;  // read from curve_secret_key_file
  std::vector<std::string> curve_client_keys;
  bool operator==(const IpcConfig&) const = default;
};

// tools: how long omnid waits for a tool's result and how many call rounds one turn may make
// (docs/protocol.md "Tools").
struct ToolsConfig {
  int call_timeout_ms = 10000;  // a call unanswered this long gets an error result and a tool.timeout event
  int max_rounds = 4;           // call rounds per turn; the round after the last answers in text
  bool operator==(const ToolsConfig&) const = default;
};

// camera: the robot's camera (docs/config.md "camera"). No pipeline: no camera.
struct CameraConfig {
  // A GStreamer source description (v4l2src device=/dev/video0, nvarguscamerasrc, filesrc location=x.png !
  // pngdec ! imagefreeze); omnid appends the conversion to RGB and its appsink.
  std::string pipeline;
  std::string attach = "voice";     // never | voice | always: which turns carry the current frame
  long long max_pixels = 640 * 480;  // a frame is resized to at most this many pixels (its token budget)
  double clip = 0;                   // seconds of recent frames sent as a video with a spoken turn's audio; 0: a still frame
  bool operator==(const CameraConfig&) const = default;
};

struct Config {
  ModelConfig model;
  AudioConfig audio;
  IpcConfig ipc;
  ToolsConfig tools;
  CameraConfig camera;
  std::string source;  // file it came from ("" for built-in defaults)
  bool operator==(const Config&) const = default;
};

// Parses YAML text; `source_name` is used in error messages. Throws ConfigError listing every
// problem found, one per line: "FILE:LINE: KEY: what is wrong".
Config parse_config(const std::string& yaml_text, const std::string& source_name);
// Reads and parses a file; an unreadable file is a ConfigError too.
Config load_config_file(const std::string& path);

// The sampling a turn uses: the checkpoint's defaults with the configured keys over them (temperature 0: greedy).
// The seed is the configured one, else `fresh_seed`.
omni::Sampling effective_sampling(const omni::Sampling& checkpoint, const SamplingConfig& c, uint64_t fresh_seed);

// Dotted keys whose new value cannot be applied without restarting omnid.
std::vector<std::string> restart_required_changes(const Config& running, const Config& next);

}  // namespace omnid
