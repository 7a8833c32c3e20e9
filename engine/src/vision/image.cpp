// PNG (libpng) and JPEG (libjpeg-turbo) decoding into RgbImage. Both libraries report errors
// through longjmp; the jump targets live in small C-style functions that own no C++ objects
// whose destructors could be skipped (the output vector is owned by the caller's frame).
#include "vision/image.h"

#include <sys/stat.h>

#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE
#include <cstring>
#include <fstream>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

namespace omni {
namespace {

void check_dims(int64_t w, int64_t h, const ImageLimits& limits, const std::string& what) {
  if (w <= 0 || h <= 0)
    throw ImageError(what + ": empty image (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  if (w > limits.max_side || h > limits.max_side || w * h > limits.max_pixels)
    throw ImageError(what + ": " + std::to_string(w) + "x" + std::to_string(h) + " is over the limit of " +
                     std::to_string(limits.max_side) + " pixels a side and " + std::to_string(limits.max_pixels) +
                     " pixels");
}

// White background under a pixel of opacity a (0..255), rounded like PIL's paste with a mask:
// (src*a + 255*(255-a)) / 255 to nearest.
inline uint8_t over_white(unsigned v, unsigned a) {
  const unsigned t = v * a + 255u * (255u - a) + 128u;
  return uint8_t((t + (t >> 8)) >> 8);
}

// ---- PNG ----
struct PngRead {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char message[200];
  jmp_buf jump;
};

void png_error_cb(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngRead*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof r->message, "%s", msg ? msg : "error");
  longjmp(r->jump, 1);
}
void png_warning_cb(png_structp, png_const_charp) {}
void png_read_cb(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngRead*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "truncated file");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

// Returns 0 on success, 1 with r.message set on a libpng error, 2 when the header's size is
// over the limits (dims in w/h), 3 for a zero-size header.
int png_decode(PngRead& r, const ImageLimits& limits, std::vector<uint8_t>& rgba, std::vector<png_bytep>& rows,
               png_uint_32& w, png_uint_32& h) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_error_cb, png_warning_cb);
  if (!png) {
    std::snprintf(r.message, sizeof r.message, "out of memory");
    return 1;
  }
  png_infop info = png_create_info_struct(png);
  if (setjmp(r.jump)) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return 1;
  }
  if (!info) png_error(png, "out of memory");
  png_set_read_fn(png, &r, png_read_cb);
  png_set_user_limits(png, png_uint_32(limits.max_side), png_uint_32(limits.max_side));
  png_set_chunk_malloc_max(png, 8u << 20);  // text/ICC chunks
  png_read_info(png, info);
  w = png_get_image_width(png, info);
  h = png_get_image_height(png, info);
  if (w == 0 || h == 0) {
    png_destroy_read_struct(&png, &info, nullptr);
    return 3;
  }
  if (int64_t(w) > limits.max_side || int64_t(h) > limits.max_side || int64_t(w) * int64_t(h) > limits.max_pixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    return 2;
  }
  // To 8-bit RGBA: palette and low-bit gray expanded, tRNS made alpha, 16-bit samples keep
  // their high byte (as PIL does), gray copied to R, G and B, opaque images get alpha 255.
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_gray_to_rgb(png);
  png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != size_t(w) * 4) png_error(png, "unexpected row layout after conversion");
  rgba.resize(size_t(w) * size_t(h) * 4);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = rgba.data() + size_t(y) * size_t(w) * 4;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return 0;
}

RgbImage decode_png(const uint8_t* data, size_t size, const std::string& what, const ImageLimits& limits) {
  // IHDR must be the first chunk: its size is checked here, before libpng reads further
  // (libpng's own user limits stay as a second guard).
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t o) {
      return int64_t(data[o]) << 24 | int64_t(data[o + 1]) << 16 | int64_t(data[o + 2]) << 8 | int64_t(data[o + 3]);
    };
    check_dims(be32(16), be32(20), limits, what);
  }
  PngRead r{data, size, 0, {0}, {}};
  std::vector<uint8_t> rgba;
  std::vector<png_bytep> rows;
  png_uint_32 w = 0, h = 0;
  const int rc = png_decode(r, limits, rgba, rows, w, h);
  if (rc == 1) throw ImageError(what + ": undecodable PNG: " + r.message);
  if (rc == 2 || rc == 3) check_dims(w, h, limits, what);
  RgbImage img;
  img.width = int(w);
  img.height = int(h);
  img.rgb.resize(size_t(w) * size_t(h) * 3);
  for (size_t i = 0, n = size_t(w) * size_t(h); i < n; ++i) {
    const unsigned a = rgba[i * 4 + 3];
    for (size_t c = 0; c < 3; ++c)
      img.rgb[i * 3 + c] = a == 255 ? rgba[i * 4 + c] : over_white(rgba[i * 4 + c], a);
  }
  return img;
}

// ---- JPEG ----
struct JpegErr {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
};

void jpeg_error_cb(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}
// Warnings are ignored (PIL accepts e.g. extraneous bytes) except a premature end of the data,
// which PIL refuses as a truncated image: that one is remembered and makes the decode fail.
void jpeg_warning_cb(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) reinterpret_cast<JpegErr*>(cinfo->err)->truncated = true;
}

// 0 ok, 1 libjpeg error (message), 2 over the limits (w/h), 3 empty, 4 unsupported colour space,
// 5 truncated data.
int jpeg_decode(const uint8_t* data, size_t size, const ImageLimits& limits, JpegErr& err, std::vector<uint8_t>& rgb,
                unsigned& w, unsigned& h) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_cb;
  err.mgr.emit_message = jpeg_warning_cb;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  // libjpeg's working memory (progressive coefficient buffers) is bounded as well.
  cinfo.mem->max_memory_to_use = long(limits.max_pixels) * 16;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  w = cinfo.image_width;
  h = cinfo.image_height;
  if (w == 0 || h == 0) {
    jpeg_destroy_decompress(&cinfo);
    return 3;
  }
  if (int64_t(w) > limits.max_side || int64_t(h) > limits.max_side || int64_t(w) * int64_t(h) > limits.max_pixels) {
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    return 4;
  }
  // libjpeg's defaults (islow DCT, fancy upsampling) are those PIL decodes with.
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3 || cinfo.output_width != w || cinfo.output_height != h)
    (*cinfo.err->error_exit)(reinterpret_cast<j_common_ptr>(&cinfo));
  rgb.resize(size_t(w) * size_t(h) * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = rgb.data() + size_t(cinfo.output_scanline) * size_t(w) * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  if (!err.truncated) jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return err.truncated ? 5 : 0;
}

RgbImage decode_jpeg(const uint8_t* data, size_t size, const std::string& what, const ImageLimits& limits) {
  JpegErr err{};
  RgbImage img;
  unsigned w = 0, h = 0;
  const int rc = jpeg_decode(data, size, limits, err, img.rgb, w, h);
  if (rc == 1) throw ImageError(what + ": undecodable JPEG: " + err.message);
  if (rc == 2 || rc == 3) check_dims(w, h, limits, what);
  if (rc == 4) throw ImageError(what + ": CMYK JPEG images are not supported (convert to RGB)");
  if (rc == 5) throw ImageError(what + ": undecodable JPEG: the data ends before the image does (truncated)");
  img.width = int(w);
  img.height = int(h);
  return img;
}

}  // namespace

ImageFormat parse_image_format(const std::string& name) {
  if (name == "png") return ImageFormat::png;
  if (name == "jpeg" || name == "jpg") return ImageFormat::jpeg;
  throw ImageError("unknown image format \"" + name + "\" (png or jpeg)");
}

const char* image_format_name(ImageFormat f) { return f == ImageFormat::png ? "png" : "jpeg"; }

ImageFormat sniff_image_format(const uint8_t* data, size_t size, const std::string& what) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size == 0) throw ImageError(what + ": empty image data");
  if (size >= 8 && std::memcmp(data, png_sig, 8) == 0) return ImageFormat::png;
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::jpeg;
  throw ImageError(what + ": not a PNG or JPEG image");
}

RgbImage decode_image_as(ImageFormat format, const uint8_t* data, size_t size, const std::string& what,
                         const ImageLimits& limits) {
  if (size > limits.max_bytes)
    throw ImageError(what + ": " + std::to_string(size) + " bytes is over the limit of " +
                     std::to_string(limits.max_bytes));
  const ImageFormat found = sniff_image_format(data, size, what);
  if (found != format)
    throw ImageError(what + ": said to be " + image_format_name(format) + " but the data is " +
                     image_format_name(found));
  return format == ImageFormat::png ? decode_png(data, size, what, limits) : decode_jpeg(data, size, what, limits);
}

RgbImage decode_image(const uint8_t* data, size_t size, const std::string& what, const ImageLimits& limits) {
  if (size > limits.max_bytes)
    throw ImageError(what + ": " + std::to_string(size) + " bytes is over the limit of " +
                     std::to_string(limits.max_bytes));
  return decode_image_as(sniff_image_format(data, size, what), data, size, what, limits);
}

RgbImage load_image_file(const std::string& path, const ImageLimits& limits) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw ImageError(path + ": no such image file");
  if (!S_ISREG(st.st_mode)) throw ImageError(path + ": not a regular file");
  if (size_t(st.st_size) > limits.max_bytes)
    throw ImageError(path + ": " + std::to_string(st.st_size) + " bytes is over the limit of " +
                     std::to_string(limits.max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot open the image file");
  std::vector<uint8_t> bytes(size_t(st.st_size));
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size())))
    throw ImageError(path + ": cannot read the image file");
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

}  // namespace omni
