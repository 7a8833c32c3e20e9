// WAV reading (every common sample format, odd chunks, errors), the streaming writer and the
// libsoxr resampler.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "audio/io/resample.h"
#include "audio/io/wav.h"

namespace fs = std::filesystem;
using namespace omni::audio;

namespace {

void le(std::vector<uint8_t>& b, uint32_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void id(std::vector<uint8_t>& b, const char* s) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(s[i]));
}

struct Chunk {
  std::string id;
  std::vector<uint8_t> body;
  bool pad = true;  // write the pad byte after an odd-sized body
};

std::vector<uint8_t> riff(const std::vector<Chunk>& chunks) {
  std::vector<uint8_t> out;
  id(out, "RIFF");
  le(out, 0, 4);
  id(out, "WAVE");
  for (const Chunk& c : chunks) {
    id(out, c.id.c_str());
    le(out, uint32_t(c.body.size()), 4);
    out.insert(out.end(), c.body.begin(), c.body.end());
    if ((c.body.size() & 1) && c.pad) out.push_back(0);
  }
  const uint32_t riff_size = uint32_t(out.size() - 8);
  std::memcpy(out.data() + 4, &riff_size, 4);
  return out;
}

// fmt body; `extensible` wraps `tag` in WAVE_FORMAT_EXTENSIBLE.
std::vector<uint8_t> fmt(uint16_t tag, int channels, int rate, int container_bits, bool extensible = false) {
  std::vector<uint8_t> b;
  const int align = channels * container_bits / 8;
  le(b, extensible ? 0xFFFE : tag, 2);
  le(b, uint32_t(channels), 2);
  le(b, uint32_t(rate), 4);
  le(b, uint32_t(rate * align), 4);
  le(b, uint32_t(align), 2);
  le(b, uint32_t(container_bits), 2);
  if (extensible) {
    le(b, 22, 2);
    le(b, uint32_t(container_bits), 2);
    le(b, 0, 4);
    le(b, tag, 2);
    const uint8_t guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    b.insert(b.end(), guid_tail, guid_tail + 14);
  }
  return b;
}

// Reference values the decoders must return, and their encodings.
const std::vector<float> kValues = {0.f, 0.5f, -0.5f, 0.25f, -1.f, 0.75f};

std::vector<uint8_t> encode(const std::vector<float>& v, uint16_t tag, int bits) {
  std::vector<uint8_t> b;
  for (float x : v) {
    if (tag == 3 && bits == 32) {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      le(b, u, 4);
    } else if (tag == 3 && bits == 64) {
      double d = x;
      uint64_t u;
      std::memcpy(&u, &d, 8);
      le(b, uint32_t(u), 4);
      le(b, uint32_t(u >> 32), 4);
    } else if (bits == 8) {
      b.push_back(uint8_t(int(std::lrint(x * 128.f)) + 128));
    } else {
      const double scale = std::ldexp(1.0, bits - 1);
      le(b, uint32_t(int64_t(std::llround(double(x) * scale))), bits / 8);
    }
  }
  return b;
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("omni_test_wav_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    decode_wav(bytes.data(), bytes.size(), "clip.wav");
  } catch (const AudioError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Wav, DecodesEveryCommonSampleFormat) {
  struct Case { uint16_t tag; int bits; bool extensible; };
  for (const Case& c : {Case{1, 8, false}, Case{1, 16, false}, Case{1, 24, false}, Case{1, 32, false},
                        Case{3, 32, false}, Case{3, 64, false}, Case{1, 16, true}, Case{1, 24, true},
                        Case{3, 32, true}}) {
    SCOPED_TRACE("tag " + std::to_string(c.tag) + " bits " + std::to_string(c.bits) +
                 (c.extensible ? " extensible" : ""));
    const auto bytes = riff({{"fmt ", fmt(c.tag, 1, 22050, c.bits, c.extensible)}, {"data", encode(kValues, c.tag, c.bits)}});
    const WavData w = decode_wav(bytes.data(), bytes.size());
    EXPECT_EQ(w.channels, 1);
    EXPECT_EQ(w.sample_rate, 22050);
    EXPECT_EQ(w.bits_per_sample, c.bits);
    EXPECT_EQ(w.encoding, c.tag == 3 ? SampleEncoding::Float : SampleEncoding::Pcm);
    ASSERT_EQ(w.interleaved.size(), kValues.size());
    for (size_t i = 0; i < kValues.size(); ++i) EXPECT_FLOAT_EQ(w.interleaved[i], kValues[i]) << "sample " << i;
  }
}

TEST(Wav, FullScalePcmMapsToMinusOneAndJustBelowOne) {
  std::vector<uint8_t> data;
  le(data, 0x8000, 2);  // -32768
  le(data, 0x7FFF, 2);  // 32767
  const auto bytes = riff({{"fmt ", fmt(1, 1, 16000, 16)}, {"data", data}});
  const WavData w = decode_wav(bytes.data(), bytes.size());
  EXPECT_EQ(w.interleaved[0], -1.f);
  EXPECT_FLOAT_EQ(w.interleaved[1], 32767.f / 32768.f);
}

TEST(Wav, DownmixAveragesChannels) {
  // 3 channels, 2 frames.
  const std::vector<float> inter = {0.5f, 0.25f, -0.75f, 1.f, -1.f, 0.5f};
  const auto bytes = riff({{"fmt ", fmt(3, 3, 48000, 32)}, {"data", encode(inter, 3, 32)}});
  const WavData w = decode_wav(bytes.data(), bytes.size());
  ASSERT_EQ(w.frames(), 2u);
  const std::vector<float> mono = downmix_to_mono(w);
  ASSERT_EQ(mono.size(), 2u);
  EXPECT_FLOAT_EQ(mono[0], 0.0f);
  EXPECT_FLOAT_EQ(mono[1], 0.5f / 3.f);
}

TEST(Wav, SkipsUnknownAndOddSizedChunksWithOrWithoutPadByte) {
  for (bool pad : {true, false}) {
    SCOPED_TRACE(pad ? "padded" : "unpadded");
    const Chunk list{"LIST", {'I', 'N', 'F', 'O', 'x'}, pad};  // 5 bytes: odd
    const auto bytes = riff({{"fmt ", fmt(1, 1, 16000, 16)}, list, {"fact", {1, 0, 0, 0}},
                             {"data", encode(kValues, 1, 16)}});
    const WavData w = decode_wav(bytes.data(), bytes.size());
    ASSERT_EQ(w.interleaved.size(), kValues.size());
    EXPECT_FLOAT_EQ(w.interleaved[1], 0.5f);
  }
}

TEST(Wav, ErrorsNameTheSourceAndTheProblem) {
  const auto good_fmt = fmt(1, 1, 16000, 16);
  {
    const std::string e = error_of({'n', 'o', 'p', 'e'});
    EXPECT_NE(e.find("clip.wav"), std::string::npos) << e;
    EXPECT_NE(e.find("too short"), std::string::npos) << e;
  }
  EXPECT_NE(error_of(riff({{"JUNK", {1, 2}}})).find("no fmt chunk"), std::string::npos);
  {
    auto b = riff({{"fmt ", good_fmt}, {"data", encode(kValues, 1, 16)}});
    std::memcpy(b.data(), "RIFX", 4);
    EXPECT_NE(error_of(b).find("not a RIFF/WAVE file"), std::string::npos);
  }
  EXPECT_NE(error_of(riff({{"fmt ", good_fmt}})).find("no data chunk"), std::string::npos);
  EXPECT_NE(error_of(riff({{"fmt ", good_fmt}, {"data", {}}})).find("contains no samples"), std::string::npos);
  EXPECT_NE(error_of(riff({{"data", encode(kValues, 1, 16)}, {"fmt ", good_fmt}})).find("before the fmt"),
            std::string::npos);
  EXPECT_NE(error_of(riff({{"fmt ", fmt(2, 1, 16000, 4)}, {"data", {1, 2}}})).find("unsupported sample format tag 2"),
            std::string::npos);
  EXPECT_NE(error_of(riff({{"fmt ", fmt(3, 1, 16000, 16)}, {"data", {1, 2}}})).find("float samples of 16 bits"),
            std::string::npos);
  {  // data chunk header says more bytes than the file has
    auto b = riff({{"fmt ", good_fmt}, {"data", encode(kValues, 1, 16)}});
    b.resize(b.size() - 4);
    const std::string e = error_of(b);
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  }
  {
    const std::string missing = temp_path("does_not_exist.wav");
    try {
      read_wav_file(missing);
      ADD_FAILURE() << "no error for a missing file";
    } catch (const AudioError& e) {
      EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    }
  }
}

TEST(Wav, StreamingWriterRoundTripsFloatAndInt16) {
  std::vector<float> signal(1001);
  for (size_t i = 0; i < signal.size(); ++i) signal[i] = 0.9f * std::sin(0.01f * float(i));
  for (WavSampleFormat f : {WavSampleFormat::Float32, WavSampleFormat::Int16}) {
    const std::string path = temp_path(f == WavSampleFormat::Float32 ? "f32.wav" : "i16.wav");
    {
      WavWriter w(path, 24000, f);
      w.append(signal.data(), 400);  // streamed in uneven pieces
      w.append(signal.data() + 400, 601);
      EXPECT_EQ(w.samples_written(), 1001u);
      w.close();
    }
    const WavData back = read_wav_file(path);
    EXPECT_EQ(back.sample_rate, 24000);
    EXPECT_EQ(back.channels, 1);
    ASSERT_EQ(back.interleaved.size(), signal.size());
    const float tol = f == WavSampleFormat::Float32 ? 0.f : 1.f / 32768.f;
    for (size_t i = 0; i < signal.size(); ++i) ASSERT_NEAR(back.interleaved[i], signal[i], tol) << i;
    // encode_wav gives the same bytes as the file writer.
    std::ifstream in(path, std::ios::binary);
    const std::vector<uint8_t> file_bytes((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(encode_wav(signal.data(), signal.size(), 24000, f), file_bytes);
    fs::remove(path);
  }
}

TEST(Wav, Int16WriterClampsOutOfRangeSamples) {
  const std::vector<float> loud = {2.f, -2.f, 1.f, -1.f};
  const auto bytes = encode_wav(loud.data(), loud.size(), 16000, WavSampleFormat::Int16);
  const WavData w = decode_wav(bytes.data(), bytes.size());
  EXPECT_FLOAT_EQ(w.interleaved[0], 32767.f / 32768.f);
  EXPECT_EQ(w.interleaved[1], -1.f);
}

TEST(Wav, WriterReportsWriteErrors) {
  EXPECT_THROW(WavWriter(temp_path("no_such_dir") + "/x.wav", 16000), AudioError);
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "/dev/full is not available";
  // /dev/full accepts open() and fails every write with ENOSPC, like a full disk.
  std::vector<float> block(1 << 16, 0.1f);
  try {
    WavWriter w("/dev/full", 16000);
    for (int i = 0; i < 8; ++i) w.append(block);
    w.close();
    ADD_FAILURE() << "writing to /dev/full did not fail";
  } catch (const AudioError& e) {
    EXPECT_NE(std::string(e.what()).find("No space left"), std::string::npos) << e.what();
  }
}

TEST(Resample, SineKeepsItsShapeAndDuration) {
  const int in_rate = 16000, out_rate = 44100;
  const double freq = 1000.0;
  std::vector<float> in(16000);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(0.5 * std::sin(2 * M_PI * freq * double(i) / in_rate));
  const std::vector<float> out = resample(in.data(), in.size(), in_rate, out_rate);
  ASSERT_EQ(out.size(), 44100u);
  double max_err = 0;
  for (size_t i = 2000; i < out.size() - 2000; ++i)  // away from the start/stop transients
    max_err = std::max(max_err, std::abs(out[i] - 0.5 * std::sin(2 * M_PI * freq * double(i) / out_rate)));
  EXPECT_LT(max_err, 1e-3);
}

TEST(Resample, StreamingMatchesOneShot) {
  std::vector<float> in(48000);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(0.3 * std::sin(0.05 * double(i)) + 0.1 * std::sin(0.31 * double(i)));
  const std::vector<float> whole = resample(in.data(), in.size(), 48000, 16000);
  StreamResampler s(48000, 16000);
  std::vector<float> streamed;
  for (size_t off = 0; off < in.size(); off += 4801) {
    const auto part = s.process(in.data() + off, std::min<size_t>(4801, in.size() - off));
    streamed.insert(streamed.end(), part.begin(), part.end());
  }
  const auto tail = s.flush();
  streamed.insert(streamed.end(), tail.begin(), tail.end());
  ASSERT_GE(streamed.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(streamed[i], whole[i], 1e-6f) << i;
}

TEST(Resample, RejectsInvalidRates) {
  const float x[4] = {0, 0, 0, 0};
  EXPECT_THROW(resample(x, 4, 0, 16000), AudioError);
  EXPECT_THROW(StreamResampler(16000, -1), AudioError);
}

// Any prefix or corruption of a valid file decodes or throws AudioError; nothing else.
TEST(Wav, CorruptAndTruncatedInputsNeverCrash) {
  const auto good = riff({{"fmt ", fmt(1, 2, 16000, 24, true)}, {"LIST", {1, 2, 3}, false},
                          {"data", encode(kValues, 1, 24)}});
  auto survives = [](const std::vector<uint8_t>& b) {
    try {
      const WavData w = decode_wav(b.data(), b.size());
      return !w.interleaved.empty();
    } catch (const AudioError&) {
      return true;
    }
  };
  for (size_t n = 0; n <= good.size(); ++n)
    ASSERT_TRUE(survives(std::vector<uint8_t>(good.begin(), good.begin() + long(n)))) << "prefix " << n;
  uint32_t state = 12345;
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> b = good;
    for (int k = 0; k < 3; ++k) {
      state = state * 1664525u + 1013904223u;
      b[(state >> 8) % b.size()] = uint8_t(state >> 24);
    }
    ASSERT_TRUE(survives(b)) << "iteration " << iter;
  }
}
