// Image decoding and preprocessing on hostile or unusual input: every refusal is an
// ImageError / ConfigError naming the problem, and no size read from the data allocates
// before it is checked.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vision/image.h"
#include "vision/preprocess.h"

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string images() { return std::string(OMNI_FIXTURES) + "/images/"; }

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const omni::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A PNG signature and IHDR chunk claiming w x h (CRC left wrong on purpose where asked).
std::vector<uint8_t> png_header(uint32_t w, uint32_t h) {
  std::vector<uint8_t> d = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (uint32_t v : {w, h})
    for (int s = 24; s >= 0; s -= 8) d.push_back(uint8_t(v >> s));
  for (uint8_t b : {8, 2, 0, 0, 0}) d.push_back(b);  // 8-bit RGB
  // CRC32 over "IHDR" + data.
  uint32_t crc = 0xffffffffu;
  for (size_t i = 12; i < d.size(); ++i) {
    crc ^= d[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  for (int s = 24; s >= 0; s -= 8) d.push_back(uint8_t(crc >> s));
  return d;
}

TEST(VisionImage, DecodesEachFixtureFormat) {
  const auto png = omni::load_image_file(images() + "garden_224x160.png");
  EXPECT_EQ(png.width, 224);
  EXPECT_EQ(png.height, 160);
  const auto jpg = omni::load_image_file(images() + "street_250x190.jpg");
  EXPECT_EQ(jpg.width, 250);
  EXPECT_EQ(jpg.height, 190);
  const auto gray = omni::load_image_file(images() + "hall_gray_180x135.jpg");
  for (size_t i = 0; i < gray.rgb.size(); i += 3) {  // gray becomes R = G = B
    ASSERT_EQ(gray.rgb[i], gray.rgb[i + 1]);
    ASSERT_EQ(gray.rgb[i], gray.rgb[i + 2]);
  }
}

TEST(VisionImage, TransparentPixelsBecomeWhite) {
  // The badge's corners are fully transparent.
  const auto img = omni::load_image_file(images() + "badge_rgba_160x120.png");
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(img.at(0, 0, c), 255);
    EXPECT_EQ(img.at(119, 159, c), 255);
  }
}

TEST(VisionImage, DataAndDeclaredFormatMustAgree) {
  const auto bytes = read_file(images() + "garden_224x160.png");
  EXPECT_NO_THROW(omni::decode_image_as(omni::ImageFormat::png, bytes.data(), bytes.size(), "image 1"));
  const std::string m = message_of(
      [&] { omni::decode_image_as(omni::ImageFormat::jpeg, bytes.data(), bytes.size(), "image 1"); });
  EXPECT_NE(m.find("image 1: said to be jpeg but the data is png"), std::string::npos) << m;
  EXPECT_NE(message_of([] { omni::parse_image_format("gif"); }).find("unknown image format \"gif\""),
            std::string::npos);
}

TEST(VisionImage, RefusesEmptyUnknownAndTruncatedData) {
  EXPECT_NE(message_of([] { omni::decode_image(nullptr, 0, "image 1"); }).find("image 1: empty image data"),
            std::string::npos);
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
  EXPECT_NE(message_of([&] { omni::decode_image(gif, sizeof gif, "x.gif"); }).find("x.gif: not a PNG or JPEG"),
            std::string::npos);
  for (const char* name : {"garden_224x160.png", "street_250x190.jpg"}) {
    auto bytes = read_file(images() + name);
    bytes.resize(bytes.size() / 2);
    const std::string m = message_of([&] { omni::decode_image(bytes.data(), bytes.size(), name); });
    EXPECT_NE(m.find(std::string(name) + ": undecodable"), std::string::npos) << m;
  }
  EXPECT_NE(message_of([] { omni::load_image_file("/nonexistent/cat.png"); }).find("/nonexistent/cat.png: no such"),
            std::string::npos);
}

TEST(VisionImage, HugeHeaderIsRefusedBeforeAllocation) {
  // 1,000,000 x 1,000,000 RGB would be 3 TB: refused from the header alone.
  const auto d = png_header(1000000, 1000000);
  const std::string m = message_of([&] { omni::decode_image(d.data(), d.size(), "huge.png"); });
  EXPECT_NE(m.find("huge.png"), std::string::npos) << m;
  EXPECT_EQ(m.find("out of memory"), std::string::npos) << m;
  // Within each side's limit but over the pixel count.
  omni::ImageLimits lim;
  lim.max_side = 20000;
  lim.max_pixels = 1 << 20;
  const auto d2 = png_header(20000, 20000);
  const std::string m2 = message_of([&] { omni::decode_image(d2.data(), d2.size(), "big.png", lim); });
  EXPECT_NE(m2.find("big.png: 20000x20000 is over the limit"), std::string::npos) << m2;
  // A file over the byte limit is refused before it is read.
  omni::ImageLimits tiny;
  tiny.max_bytes = 100;
  const std::string m3 = message_of([&] { omni::load_image_file(images() + "garden_224x160.png", tiny); });
  EXPECT_NE(m3.find("bytes is over the limit of 100"), std::string::npos) << m3;
}

TEST(VisionImage, AspectRatioOver200IsRefused) {
  const std::string m = message_of([] { omni::smart_resize(2, 401, 32, 3136, 12845056); });
  EXPECT_NE(m.find("aspect ratio"), std::string::npos) << m;
  EXPECT_NO_THROW(omni::smart_resize(2, 400, 32, 3136, 12845056));
}

TEST(VisionImage, SmartResizeRoundsHalfToEven) {
  // 48/32 = 1.5 -> 2, 80/32 = 2.5 -> 2, 112/32 = 3.5 -> 4 (then the min_pixels branch may grow it).
  EXPECT_EQ(omni::smart_resize(80, 112, 32, 1, 1 << 30).height, 64);
  EXPECT_EQ(omni::smart_resize(80, 112, 32, 1, 1 << 30).width, 128);
  EXPECT_EQ(omni::smart_resize(48, 48, 32, 1, 1 << 30).height, 64);
}

TEST(VisionImage, PatchRowsAreInMergeBlockOrder) {
  // A 64x64 image whose pixel value encodes its position: patch row r of the layout must hold
  // the 16x16 patch at (bh*2+ih, bw*2+iw), with the temporal pair duplicated.
  omni::VisionPreprocessConfig cfg;
  cfg.patch_size = 16;
  cfg.do_normalize = false;
  cfg.do_rescale = false;
  cfg.min_pixels = 64 * 64;
  omni::RgbImage img;
  img.width = img.height = 64;
  img.rgb.resize(64 * 64 * 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) img.rgb[(size_t(y) * 64 + size_t(x)) * 3 + size_t(c)] = uint8_t((y / 16) * 4 + x / 16 + 50 * c);
  const auto p = omni::preprocess_image(cfg, img);
  ASSERT_EQ(p.rows(), 16);
  ASSERT_EQ(p.row_size, 1536);
  const int expect_patch[16] = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 3; ++c)
      for (int t = 0; t < 2; ++t)
        EXPECT_EQ(p.pixels[size_t(r) * 1536 + size_t((c * 2 + t) * 256)], float(expect_patch[r] + 50 * c))
            << "row " << r << " channel " << c << " frame " << t;
}

TEST(VisionImage, PreprocessorConfigErrorsNameTheKey) {
  const std::string path = std::string(OMNI_BUILD_DIR) + "/vision_preproc_test.json";
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };
  write(R"({"patch_size": 16, "min_pixels": 3136, "max_pixels": 12845056})");
  const auto c = omni::VisionPreprocessConfig::load(path);
  EXPECT_EQ(c.patch_size, 16);
  EXPECT_EQ(c.min_pixels, 3136);
  EXPECT_FLOAT_EQ(c.mean[0], 0.48145466f);  // class default when absent
  write(R"({"image_mean": [0.5, 0.5], "patch_size": 16})");
  EXPECT_NE(message_of([&] { omni::VisionPreprocessConfig::load(path); }).find("\"image_mean\""), std::string::npos);
  write(R"({"image_std": [0.5, 0, 0.5]})");
  EXPECT_NE(message_of([&] { omni::VisionPreprocessConfig::load(path); }).find("\"image_std\""), std::string::npos);
  write(R"({"size": {"shortest_edge": 100, "longest_edge": 50}})");
  EXPECT_NE(message_of([&] { omni::VisionPreprocessConfig::load(path); }).find("min_pixels <= max_pixels"),
            std::string::npos);
  write(R"({"merge_size": "2"})");
  EXPECT_NE(message_of([&] { omni::VisionPreprocessConfig::load(path); }).find("\"merge_size\""), std::string::npos);
  std::filesystem::remove(path);
}

TEST(VisionImage, VideoFramesMustShareOneSize) {
  omni::VisionPreprocessConfig cfg;
  omni::RgbImage a, b;
  a.width = a.height = 64;
  a.rgb.assign(64 * 64 * 3, 0);
  b.width = 32;
  b.height = 64;
  b.rgb.assign(32 * 64 * 3, 0);
  EXPECT_NE(message_of([&] { omni::preprocess_video(cfg, {a, b}); }).find("video frame 1 is 32x64"),
            std::string::npos);
  EXPECT_THROW(omni::preprocess_video(cfg, {}), omni::ImageError);
}

}  // namespace
