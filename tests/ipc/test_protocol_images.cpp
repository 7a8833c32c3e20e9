// Request validation of ask's images (docs/protocol.md "ask"): the array's shape and bounds, each item exactly
// one of an absolute path and base64 bytes with their format, strict base64. Decoding the pictures is the
// daemon's (tests/integration/e2e_images.cpp); here: what is refused before anything is taken from a request.
#include <gtest/gtest.h>

#include "ipc/protocol.h"

using namespace omni::ipc;
using nlohmann::json;

namespace {

ParseResult parse(const json& j) { return parse_request(j.dump()); }

void expect_bad(const json& request, const std::string& needle) {
  const ParseResult r = parse(request);
  ASSERT_FALSE(r.ok()) << request.dump();
  EXPECT_EQ(to_string(r.error->code), "bad_request") << r.error->message;
  EXPECT_NE(r.error->message.find(needle), std::string::npos) << "message: " << r.error->message;
}

json ask_with(const json& images) { return {{"id", 1}, {"cmd", "ask"}, {"text", "What is this?"}, {"images", images}}; }

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

}  // namespace

TEST(ProtocolImages, AskTakesPathsAndBase64ImagesInOrder) {
  const ParseResult r = parse(ask_with({{{"path", "/srv/a.png"}},
                                        {{"base64", "iVBORw0KGgo="}, {"format", "png"}},
                                        {{"base64", "/9j/4A=="}, {"format", "jpeg"}}}));
  ASSERT_TRUE(r.ok()) << r.error->message;
  const auto& ask = std::get<AskRequest>(r.request->command);
  ASSERT_EQ(ask.images.size(), 3u);
  EXPECT_EQ(ask.images[0].path, "/srv/a.png");
  EXPECT_TRUE(ask.images[0].bytes.empty());
  EXPECT_EQ(ask.images[1].bytes, (std::vector<std::uint8_t>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}));
  EXPECT_EQ(ask.images[1].format, "png");
  EXPECT_EQ(ask.images[2].bytes, (std::vector<std::uint8_t>{0xff, 0xd8, 0xff, 0xe0}));
  EXPECT_EQ(ask.images[2].format, "jpeg");
  EXPECT_TRUE(ask.speak);
  // Images alone are a question too.
  EXPECT_TRUE(parse({{"id", 1}, {"cmd", "ask"}, {"images", {{{"path", "/a.jpg"}}}}}).ok());
}

TEST(ProtocolImages, TheImagesArrayMustBeANonEmptyArrayOfAtMostEight) {
  expect_bad(ask_with("/a.png"), "field 'images' must be an array");
  expect_bad(ask_with(json::object()), "field 'images' must be an array");
  expect_bad(ask_with(json::array()), "field 'images' is empty");
  json nine = json::array();
  for (int i = 0; i < 9; ++i) nine.push_back({{"path", "/a.png"}});
  expect_bad(ask_with(nine), "field 'images' has 9 images; an ask takes at most 8");
  nine.erase(nine.begin());
  EXPECT_TRUE(parse(ask_with(nine)).ok());
}

TEST(ProtocolImages, EachImageIsExactlyOneOfAnAbsolutePathAndBase64WithItsFormat) {
  expect_bad(ask_with({"/a.png"}), "images[0] must be an object, not a string");
  expect_bad(ask_with({{{"path", "/a.png"}}, json::object()}), "images[1] needs exactly one of 'path'");
  expect_bad(ask_with({{{"path", "/a.png"}, {"base64", "AAAA"}, {"format", "png"}}}),
             "images[0] needs exactly one of 'path'");
  expect_bad(ask_with({{{"path", "/a.png"}, {"url", "http://x"}}}), "unknown field 'images[0].url'");
  expect_bad(ask_with({{{"path", "a.png"}}}), "images[0].path 'a.png' is not absolute");
  expect_bad(ask_with({{{"path", "./a.png"}}}), "is not absolute");
  expect_bad(ask_with({{{"path", ""}}}), "images[0].path must not be empty");
  expect_bad(ask_with({{{"path", 7}}}), "images[0].path must be a string, not an integer");
  expect_bad(ask_with({{{"path", std::string("/a\0b.png", 8)}}}), "images[0].path contains a NUL character");
  expect_bad(ask_with({{{"path", "/" + std::string(kMaxImagePathBytes, 'a')}}}), "images[0].path is 4097 bytes");
  expect_bad(ask_with({{{"path", "/a.png"}, {"format", "png"}}}), "images[0].format is only for base64 images");
  expect_bad(ask_with({{{"base64", "AAAA"}}}), "images[0] needs 'format'");
  expect_bad(ask_with({{{"base64", "AAAA"}, {"format", "gif"}}}), "images[0].format must be \"png\" or \"jpeg\", not 'gif'");
  expect_bad(ask_with({{{"base64", "AAAA"}, {"format", "jpg"}}}), "not 'jpg'");
  expect_bad(ask_with({{{"base64", "AAAA"}, {"format", 1}}}), "not an integer");
  expect_bad(ask_with({{{"base64", 12}, {"format", "png"}}}), "images[0].base64 must be a string");
  expect_bad(ask_with({{{"base64", ""}, {"format", "png"}}}), "images[0].base64 is empty");
}

TEST(ProtocolImages, Base64MustBeStrictAndWithinTheLimit) {
  expect_bad(ask_with({{{"path", "/a.png"}}, {{"base64", "AAA"}, {"format", "png"}}}),
             "images[1].base64 is not valid base64: 3 characters is not a multiple of 4");
  expect_bad(ask_with({{{"base64", "AA AA==="}, {"format", "png"}}}), "character 2 is byte 32");
  expect_bad(ask_with({{{"base64", "AA*A"}, {"format", "png"}}}), "character 2 is '*'");
  expect_bad(ask_with({{{"base64", "A=AA"}, {"format", "png"}}}), "character 1 is '=' before the end");
  expect_bad(ask_with({{{"base64", "AB=="}, {"format", "png"}}}), "not a canonical encoding");
  expect_bad(ask_with({{{"base64", "AAB="}, {"format", "png"}}}), "not a canonical encoding");
  const std::string over(kMaxImageBase64Bytes + 4, 'A');
  expect_bad(ask_with({{{"base64", over}, {"format", "png"}}}), "images[0].base64 is 16777220 characters; at most 16777216");
}

TEST(ProtocolImages, AnAskWithImagesIsSpokenUnlessSpeakIsFalse) {
  json r = ask_with({{{"path", "/a.png"}}});
  auto spoken = parse(r);
  ASSERT_TRUE(spoken.ok());
  EXPECT_TRUE(std::get<AskRequest>(spoken.request->command).speak);
  r["speak"] = false;
  auto quiet = parse(r);
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(std::get<AskRequest>(quiet.request->command).speak);
}

TEST(ProtocolImages, DecodeBase64RoundTripsEveryPaddingLength) {
  std::vector<std::uint8_t> out;
  std::string error;
  ASSERT_TRUE(decode_base64("", out, error));
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(decode_base64("Zg==", out, error));
  EXPECT_EQ(out, bytes_of("f"));
  ASSERT_TRUE(decode_base64("Zm8=", out, error));
  EXPECT_EQ(out, bytes_of("fo"));
  ASSERT_TRUE(decode_base64("Zm9v", out, error));
  EXPECT_EQ(out, bytes_of("foo"));
  ASSERT_TRUE(decode_base64("Zm9vYmFy", out, error));
  EXPECT_EQ(out, bytes_of("foobar"));
  ASSERT_TRUE(decode_base64("+/+/", out, error));
  EXPECT_EQ(out, (std::vector<std::uint8_t>{0xfb, 0xff, 0xbf}));
  for (size_t n = 0; n < 300; ++n) {  // every length mod 3, every byte value
    std::vector<std::uint8_t> data(n);
    for (size_t i = 0; i < n; ++i) data[i] = std::uint8_t(i * 37 + n);
    ASSERT_TRUE(decode_base64(encode_base64(data.data(), data.size()), out, error)) << error;
    EXPECT_EQ(out, data);
  }
  EXPECT_EQ(encode_base64(bytes_of("fo").data(), 2), "Zm8=");
  EXPECT_FALSE(decode_base64("====", out, error));
  EXPECT_FALSE(decode_base64("Zm9v\n", out, error));
  EXPECT_FALSE(decode_base64("Zm9v-_==", out, error));  // the URL-safe alphabet is not base64
}
