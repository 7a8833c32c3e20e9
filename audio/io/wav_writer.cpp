// Streaming WAV writer: a header with placeholder sizes first, samples as they come, the
// sizes patched on close. Float32 files carry the fact chunk and 18-byte fmt that the spec
// asks for non-PCM data; Int16 files are the classic 44-byte-header layout.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "audio/io/wav.h"

namespace omni::audio {
namespace {

void put_le(std::vector<uint8_t>& b, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put16(std::vector<uint8_t>& b, uint16_t v) { put_le(b, v, 2); }
void put32(std::vector<uint8_t>& b, uint32_t v) { put_le(b, v, 4); }
void put_id(std::vector<uint8_t>& b, const char* id) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(id[i]));
}

size_t bytes_per_sample(WavSampleFormat f) { return f == WavSampleFormat::Float32 ? 4 : 2; }

// The complete header for `data_bytes` of mono samples.
std::vector<uint8_t> make_header(int sample_rate, WavSampleFormat format, uint32_t data_bytes) {
  const bool is_float = format == WavSampleFormat::Float32;
  const uint16_t bps = uint16_t(bytes_per_sample(format));
  const uint32_t fmt_size = is_float ? 18 : 16;
  const uint32_t fact_size = is_float ? 12 : 0;
  std::vector<uint8_t> h;
  put_id(h, "RIFF");
  put32(h, 4 + (8 + fmt_size) + fact_size + 8 + data_bytes + (data_bytes & 1u));
  put_id(h, "WAVE");
  put_id(h, "fmt ");
  put32(h, fmt_size);
  put16(h, is_float ? 3 : 1);
  put16(h, 1);  // mono
  put32(h, uint32_t(sample_rate));
  put32(h, uint32_t(sample_rate) * bps);
  put16(h, bps);
  put16(h, uint16_t(bps * 8));
  if (is_float) {
    put16(h, 0);  // cbSize
    put_id(h, "fact");
    put32(h, 4);
    put32(h, data_bytes / bps);
  }
  put_id(h, "data");
  put32(h, data_bytes);
  return h;
}

void convert(const float* in, size_t n, WavSampleFormat format, std::vector<uint8_t>& out) {
  out.resize(n * bytes_per_sample(format));
  if (format == WavSampleFormat::Float32) {
    std::memcpy(out.data(), in, n * 4);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const float c = std::clamp(std::isnan(in[i]) ? 0.f : in[i], -1.f, 1.f);
    const int16_t v = int16_t(std::lrint(std::min(c * 32768.f, 32767.f)));
    out[2 * i] = uint8_t(uint16_t(v));
    out[2 * i + 1] = uint8_t(uint16_t(v) >> 8);
  }
}

}  // namespace

std::string encode_pcm(const float* samples, size_t count, WavSampleFormat format) {
  std::vector<uint8_t> bytes;
  convert(samples, count, format, bytes);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

WavWriter::WavWriter(const std::string& path, int sample_rate, WavSampleFormat format) {
  open(path, sample_rate, format);
}

WavWriter::~WavWriter() {
  try {
    close();
  } catch (const AudioError&) {
    // A destructor cannot report; callers that care call close() themselves.
  }
}

void WavWriter::open(const std::string& path, int sample_rate, WavSampleFormat format) {
  close();
  if (sample_rate <= 0) throw AudioError("WAV " + path + ": sample rate must be positive");
  path_ = path;
  sample_rate_ = sample_rate;
  format_ = format;
  samples_ = 0;
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_) throw AudioError("WAV " + path + ": cannot create: " + std::strerror(errno));
  write_header(0);
}

void WavWriter::write_bytes(const void* data, size_t size) {
  if (size && std::fwrite(data, 1, size, file_) != size) {
    const int err = errno;
    std::fclose(file_);
    file_ = nullptr;
    throw AudioError("WAV " + path_ + ": write failed: " + std::strerror(err));
  }
}

void WavWriter::write_header(uint32_t data_bytes) {
  const std::vector<uint8_t> h = make_header(sample_rate_, format_, data_bytes);
  write_bytes(h.data(), h.size());
}

void WavWriter::append(const float* samples, size_t count) {
  if (!file_) throw AudioError("WAV writer: append() on a file that is not open");
  const size_t limit = (std::numeric_limits<uint32_t>::max() - 64) / bytes_per_sample(format_);
  if (samples_ + count > limit) throw AudioError("WAV " + path_ + ": more than 4 GiB of samples");
  std::vector<uint8_t> buf;
  convert(samples, count, format_, buf);
  write_bytes(buf.data(), buf.size());
  samples_ += count;
}

void WavWriter::close() {
  if (!file_) return;
  const uint32_t data_bytes = uint32_t(samples_ * bytes_per_sample(format_));
  const uint8_t pad = 0;
  if (data_bytes & 1u) write_bytes(&pad, 1);
  if (std::fflush(file_) != 0 || std::fseek(file_, 0, SEEK_SET) != 0) {
    const int err = errno;
    std::fclose(file_);
    file_ = nullptr;
    throw AudioError("WAV " + path_ + ": write failed: " + std::strerror(err));
  }
  write_header(data_bytes);
  const bool flushed = std::fflush(file_) == 0;
  const int err = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) throw AudioError("WAV " + path_ + ": write failed: " + std::strerror(err));
}

void write_wav(const std::string& path, const float* samples, size_t count, int sample_rate, WavSampleFormat format) {
  WavWriter w(path, sample_rate, format);
  w.append(samples, count);
  w.close();
}

std::vector<uint8_t> encode_wav(const float* samples, size_t count, int sample_rate, WavSampleFormat format) {
  if (sample_rate <= 0) throw AudioError("WAV <memory>: sample rate must be positive");
  std::vector<uint8_t> body;
  convert(samples, count, format, body);
  if (body.size() > std::numeric_limits<uint32_t>::max() - 64) throw AudioError("WAV <memory>: more than 4 GiB");
  std::vector<uint8_t> out = make_header(sample_rate, format, uint32_t(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  if (body.size() & 1u) out.push_back(0);
  return out;
}

}  // namespace omni::audio
