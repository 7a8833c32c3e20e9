// WAV (RIFF/WAVE) reading and writing.
//
// Reading accepts what common tools write: PCM 8/16/24/32-bit, IEEE float 32/64,
// WAVE_FORMAT_EXTENSIBLE wrapping either, any channel count and sample rate. Unknown chunks
// (LIST, fact, cue, ...) are skipped, odd-sized chunks may or may not carry their pad byte.
// Samples come back as float in [-1, 1]. Every failure throws AudioError naming the source
// (file path or "<memory>") and the problem.
//
// Writing is streaming: open, append chunks as they are produced, close patches the sizes.
// audio/ does not depend on the engine, so it has its own error type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace omni::audio {

class AudioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class SampleEncoding { Pcm, Float };

// A decoded file: interleaved frames, `channels` samples each.
struct WavData {
  std::vector<float> interleaved;
  int channels = 0;
  int sample_rate = 0;
  SampleEncoding encoding = SampleEncoding::Pcm;
  int bits_per_sample = 0;
  size_t frames() const { return channels ? interleaved.size() / size_t(channels) : 0; }
};

// What the header says, read without decoding a sample (no allocation beyond this struct).
struct WavInfo {
  int channels = 0;
  int sample_rate = 0;
  SampleEncoding encoding = SampleEncoding::Pcm;
  int bits_per_sample = 0;
  size_t frames = 0;  // whole frames the data chunk holds (within the bytes given)
  double seconds() const { return sample_rate > 0 ? double(frames) / sample_rate : 0.0; }
};

// Bounds on a clip that will be converted for the model, checked on the header before any sample is
// decoded or resampled (the values omnid and omni-run use are in omni/limits.h; audio/ does not depend
// on the engine). 0 / default: unbounded.
struct ClipLimits {
  double max_seconds = 0;  // frames / declared rate
  int min_rate = 0, max_rate = 0;
  int max_channels = 0;
};

// `origin` names the source in error messages.
WavInfo probe_wav(const void* bytes, size_t size, const std::string& origin = "<memory>");
// Throws AudioError naming `origin`, the header field and its value when `info` breaks `limits`.
void check_clip(const WavInfo& info, const ClipLimits& limits, const std::string& origin);
WavData decode_wav(const void* bytes, size_t size, const std::string& origin = "<memory>",
                   const ClipLimits& limits = {});
WavData read_wav_file(const std::string& path, const ClipLimits& limits = {});

// Averages the channels of each frame.
std::vector<float> downmix_to_mono(const WavData& wav);

// The model's input path: decode, downmix, resample (libsoxr, high quality) to `target_rate`. `limits`
// are checked on the header first, so a clip that is too long costs nothing to refuse.
std::vector<float> load_wav_mono(const std::string& path, int target_rate = 16000, const ClipLimits& limits = {});
std::vector<float> load_wav_mono(const void* bytes, size_t size, int target_rate = 16000,
                                 const std::string& origin = "<memory>", const ClipLimits& limits = {});

enum class WavSampleFormat { Float32, Int16 };

// Streaming mono writer. Sizes in the header are patched on close(); the destructor closes
// without throwing (call close() to see errors such as a full disk).
class WavWriter {
 public:
  WavWriter() = default;
  WavWriter(const std::string& path, int sample_rate, WavSampleFormat format = WavSampleFormat::Float32);
  ~WavWriter();
  WavWriter(const WavWriter&) = delete;
  WavWriter& operator=(const WavWriter&) = delete;

  void open(const std::string& path, int sample_rate, WavSampleFormat format = WavSampleFormat::Float32);
  // Float samples; Int16 output clamps to [-1, 1] and rounds to nearest.
  void append(const float* samples, size_t count);
  void append(const std::vector<float>& samples) { append(samples.data(), samples.size()); }
  void close();
  bool is_open() const { return file_ != nullptr; }
  size_t samples_written() const { return samples_; }

 private:
  void write_bytes(const void* data, size_t size);
  void write_header(uint32_t data_bytes);
  std::FILE* file_ = nullptr;
  std::string path_;
  int sample_rate_ = 0;
  WavSampleFormat format_ = WavSampleFormat::Float32;
  size_t samples_ = 0;
};

// Raw little-endian PCM bytes of float samples (what the WAV writer puts in its data chunk): Int16 clamps to
// [-1, 1] and rounds to nearest (NaN becomes 0) exactly as WavWriter does, Float32 copies the floats.
std::string encode_pcm(const float* samples, size_t count, WavSampleFormat format);

// One-shot helpers over WavWriter.
void write_wav(const std::string& path, const float* samples, size_t count, int sample_rate,
               WavSampleFormat format = WavSampleFormat::Float32);
// The bytes of a complete mono file (for sending over IPC).
std::vector<uint8_t> encode_wav(const float* samples, size_t count, int sample_rate,
                                WavSampleFormat format = WavSampleFormat::Float32);

}  // namespace omni::audio
