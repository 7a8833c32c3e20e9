#include "audio/io/wav.h"

#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

#include "audio/io/resample.h"

namespace omni::audio {
namespace {

constexpr uint16_t kFormatPcm = 1, kFormatFloat = 3, kFormatExtensible = 0xFFFE;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

bool looks_like_chunk_id(const uint8_t* p, const uint8_t* end) {
  if (end - p < 8) return false;
  for (int i = 0; i < 4; ++i)
    if (p[i] < 0x20 || p[i] > 0x7e) return false;
  return true;
}

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw AudioError("WAV " + origin + ": " + what);
}

struct Format {
  uint16_t tag = 0;  // PCM or Float after resolving EXTENSIBLE
  int channels = 0, sample_rate = 0, block_align = 0, bits = 0;
};

Format parse_fmt(const uint8_t* p, uint32_t size, const std::string& origin) {
  if (size < 16) fail(origin, "fmt chunk is " + std::to_string(size) + " bytes, expected at least 16");
  Format f;
  f.tag = rd16(p);
  f.channels = rd16(p + 2);
  f.sample_rate = int(rd32(p + 4));
  f.block_align = rd16(p + 12);
  f.bits = rd16(p + 14);
  if (f.tag == kFormatExtensible) {
    // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID, whose first two bytes
    // are the plain format tag.
    if (size < 40) fail(origin, "WAVE_FORMAT_EXTENSIBLE fmt chunk is " + std::to_string(size) + " bytes, expected 40");
    f.tag = rd16(p + 24);
  }
  if (f.tag != kFormatPcm && f.tag != kFormatFloat)
    fail(origin, "unsupported sample format tag " + std::to_string(f.tag) + " (only PCM and IEEE float are read)");
  if (f.channels <= 0) fail(origin, "fmt chunk declares 0 channels");
  if (f.sample_rate <= 0) fail(origin, "fmt chunk declares sample_rate " + std::to_string(rd32(p + 4)));
  if (f.block_align <= 0 || f.block_align % f.channels != 0)
    fail(origin, "block align " + std::to_string(f.block_align) + " is not a multiple of " +
                     std::to_string(f.channels) + " channels");
  const int container = f.block_align / f.channels;  // bytes per sample as stored
  const bool ok = f.tag == kFormatPcm ? (container >= 1 && container <= 4) : (container == 4 || container == 8);
  if (!ok)
    fail(origin, std::string(f.tag == kFormatPcm ? "PCM" : "float") + " samples of " + std::to_string(container * 8) +
                     " bits are not supported");
  return f;
}

float decode_sample(const uint8_t* p, const Format& f) {
  const int container = f.block_align / f.channels;
  if (f.tag == kFormatFloat) {
    if (container == 4) {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    double v;
    std::memcpy(&v, p, 8);
    return float(v);
  }
  switch (container) {
    case 1: return (float(p[0]) - 128.f) / 128.f;  // 8-bit PCM is unsigned
    case 2: return float(int16_t(rd16(p))) / 32768.f;
    case 3: {
      int32_t v = int32_t(uint32_t(p[0]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 24) >> 8;
      return float(v) / 8388608.f;
    }
    default: return float(double(int32_t(rd32(p))) / 2147483648.0);
  }
}

}  // namespace

namespace {

// The header walk shared by probe_wav and decode_wav: the format and where the data chunk's whole frames are.
struct Layout {
  Format fmt;
  const uint8_t* data = nullptr;
  size_t frames = 0;
};

Layout parse_layout(const void* bytes, size_t size, const std::string& origin) {
  const uint8_t* p = static_cast<const uint8_t*>(bytes);
  const uint8_t* end = p + size;
  if (size < 12) fail(origin, "only " + std::to_string(size) + " bytes, too short for a RIFF header");
  if (std::memcmp(p, "RIFF", 4) != 0 || std::memcmp(p + 8, "WAVE", 4) != 0) {
    if (std::memcmp(p, "RF64", 4) == 0) fail(origin, "RF64 files are not supported");
    fail(origin, "not a RIFF/WAVE file");
  }
  Format fmt;
  bool have_fmt = false;
  const uint8_t* cur = p + 12;
  while (cur + 8 <= end) {
    const uint32_t chunk_size = rd32(cur + 4);
    const uint8_t* body = cur + 8;
    const size_t remaining = size_t(end - body);
    if (std::memcmp(cur, "fmt ", 4) == 0) {
      if (chunk_size > remaining) fail(origin, "fmt chunk is truncated");
      fmt = parse_fmt(body, chunk_size, origin);
      have_fmt = true;
    } else if (std::memcmp(cur, "data", 4) == 0) {
      if (!have_fmt) fail(origin, "data chunk before the fmt chunk");
      size_t data_bytes = chunk_size;
      // 0xFFFFFFFF is what streaming writers leave when they cannot seek back: "to the end".
      if (chunk_size == 0xFFFFFFFFu) data_bytes = remaining;
      else if (data_bytes > remaining)
        fail(origin, "data chunk declares " + std::to_string(data_bytes) + " bytes but only " +
                         std::to_string(remaining) + " remain (truncated file)");
      const size_t frames = data_bytes / size_t(fmt.block_align);  // a trailing partial frame is dropped
      if (frames == 0) fail(origin, "contains no samples");
      return Layout{fmt, body, frames};
    }
    if (chunk_size > remaining) break;  // an unknown chunk running off the end: no data chunk follows
    const uint8_t* next = body + chunk_size;
    // Chunks are word-aligned, but some writers omit the pad byte after an odd-sized chunk.
    if ((chunk_size & 1u) && (looks_like_chunk_id(next + 1, end) || !looks_like_chunk_id(next, end))) ++next;
    cur = next;
  }
  if (!have_fmt) fail(origin, "no fmt chunk");
  fail(origin, "no data chunk");
}

WavInfo info_of(const Layout& l) {
  WavInfo info;
  info.channels = l.fmt.channels;
  info.sample_rate = l.fmt.sample_rate;
  info.encoding = l.fmt.tag == kFormatFloat ? SampleEncoding::Float : SampleEncoding::Pcm;
  info.bits_per_sample = l.fmt.block_align / l.fmt.channels * 8;
  info.frames = l.frames;
  return info;
}

std::string seconds_str(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", s);
  return buf;
}

}  // namespace

WavInfo probe_wav(const void* bytes, size_t size, const std::string& origin) {
  return info_of(parse_layout(bytes, size, origin));
}

void check_clip(const WavInfo& info, const ClipLimits& limits, const std::string& origin) {
  if (limits.max_seconds > 0 && info.seconds() > limits.max_seconds)
    fail(origin, "lasts " + seconds_str(info.seconds()) + " s (" + std::to_string(info.frames) +
                     " frames at the declared sample_rate " + std::to_string(info.sample_rate) +
                     " Hz); the longest clip accepted is " + seconds_str(limits.max_seconds) + " s");
  if (limits.min_rate > 0 && info.sample_rate < limits.min_rate)
    fail(origin, "sample_rate " + std::to_string(info.sample_rate) + " Hz is below the " +
                     std::to_string(limits.min_rate) + " Hz accepted");
  if (limits.max_rate > 0 && info.sample_rate > limits.max_rate)
    fail(origin, "sample_rate " + std::to_string(info.sample_rate) + " Hz is above the " +
                     std::to_string(limits.max_rate) + " Hz accepted");
  if (limits.max_channels > 0 && info.channels > limits.max_channels)
    fail(origin, "channels " + std::to_string(info.channels) + " is more than the " +
                     std::to_string(limits.max_channels) + " accepted");
}

WavData decode_wav(const void* bytes, size_t size, const std::string& origin, const ClipLimits& limits) {
  const Layout l = parse_layout(bytes, size, origin);
  const WavInfo info = info_of(l);
  check_clip(info, limits, origin);
  WavData out;
  out.channels = info.channels;
  out.sample_rate = info.sample_rate;
  out.encoding = info.encoding;
  out.bits_per_sample = info.bits_per_sample;
  // frames * block_align <= size: at most 4 floats per input byte (8-bit PCM).
  out.interleaved.resize(l.frames * size_t(l.fmt.channels));
  const int step = l.fmt.block_align / l.fmt.channels;
  for (size_t i = 0; i < out.interleaved.size(); ++i) out.interleaved[i] = decode_sample(l.data + i * step, l.fmt);
  return out;
}

WavData read_wav_file(const std::string& path, const ClipLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "read error");
  return decode_wav(bytes.data(), bytes.size(), path, limits);
}

std::vector<float> downmix_to_mono(const WavData& wav) {
  const size_t frames = wav.frames();
  const int ch = wav.channels;
  if (ch == 1) return wav.interleaved;
  std::vector<float> mono(frames);
  for (size_t i = 0; i < frames; ++i) {
    double sum = 0.0;
    for (int c = 0; c < ch; ++c) sum += wav.interleaved[i * size_t(ch) + size_t(c)];
    mono[i] = float(sum / ch);
  }
  return mono;
}

namespace {
std::vector<float> to_model_input(const WavData& wav, int target_rate) {
  std::vector<float> mono = downmix_to_mono(wav);
  if (wav.sample_rate == target_rate) return mono;
  return resample(mono.data(), mono.size(), wav.sample_rate, target_rate);
}
}  // namespace

std::vector<float> load_wav_mono(const std::string& path, int target_rate, const ClipLimits& limits) {
  return to_model_input(read_wav_file(path, limits), target_rate);
}

std::vector<float> load_wav_mono(const void* bytes, size_t size, int target_rate, const std::string& origin,
                                 const ClipLimits& limits) {
  return to_model_input(decode_wav(bytes, size, origin, limits), target_rate);
}

}  // namespace omni::audio
