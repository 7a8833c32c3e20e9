// libFuzzer target: PNG and JPEG decoding (omni::decode_image, engine/src/vision/image.cpp).
// Properties: ImageError, or an image inside the limits whose buffer holds exactly width*height
// RGB pixels; the first two bytes choose a small limit so the size checks are exercised too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "vision/image.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  omni::ImageLimits lim;
  lim.max_side = 4096;
  lim.max_pixels = 1 << 22;
  if (size >= 2 && data[0] == 'L') {  // "L<n>": a tight limit of n*8 pixels a side
    lim.max_side = 8 * (int(data[1]) + 1);
    data += 2;
    size -= 2;
  }
  try {
    const omni::RgbImage img = omni::decode_image(data, size, "<fuzz>", lim);
    if (img.width <= 0 || img.height <= 0 || img.width > lim.max_side || img.height > lim.max_side) std::abort();
    if (int64_t(img.width) * img.height > lim.max_pixels) std::abort();
    if (img.rgb.size() != size_t(img.width) * size_t(img.height) * 3) std::abort();
  } catch (const omni::ImageError&) {
  }
  return 0;
}
