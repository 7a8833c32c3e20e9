// Still images as the vision preprocessor takes them: 8-bit RGB, rows top to bottom, pixels
// interleaved (HWC). PNG and JPEG files are decoded with the Debian-packaged libpng and
// libjpeg-turbo; every size read from a file is checked against ImageLimits before any pixel
// buffer is allocated. Transparency (RGBA, gray+alpha, palette or tRNS transparency) is
// composited onto white, as the Qwen pipeline does for RGBA pictures (docs/model.md, "Vision").
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "omni/errors.h"

namespace omni {

// ImageError (omni/errors.h) names the image and what is wrong with it.

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // [height][width][3]
  uint8_t at(int y, int x, int c) const { return rgb[(size_t(y) * size_t(width) + size_t(x)) * 3 + size_t(c)]; }
};

enum class ImageFormat { png, jpeg };

// Bounds checked before decoding: the encoded size, each side and the pixel count of the
// decoded picture (a 24-byte PNG header can claim 2^31 x 2^31 pixels).
struct ImageLimits {
  size_t max_bytes = size_t(64) << 20;
  int max_side = 16384;
  int64_t max_pixels = int64_t(64) << 20;
};

// "png" / "jpeg" (also "jpg"); throws ImageError naming the unknown format.
ImageFormat parse_image_format(const std::string& name);
const char* image_format_name(ImageFormat f);
// The format announced by the first bytes, or throws ImageError ("<what>: not a PNG or JPEG image").
ImageFormat sniff_image_format(const uint8_t* data, size_t size, const std::string& what);

// Decodes `data` (format from its signature). `what` names the image in error messages.
RgbImage decode_image(const uint8_t* data, size_t size, const std::string& what, const ImageLimits& limits = {});
// Same, but the caller said which format the bytes are; a different signature is an error.
RgbImage decode_image_as(ImageFormat format, const uint8_t* data, size_t size, const std::string& what,
                         const ImageLimits& limits = {});
// Reads and decodes a file (its size is checked before it is read).
RgbImage load_image_file(const std::string& path, const ImageLimits& limits = {});

}  // namespace omni
