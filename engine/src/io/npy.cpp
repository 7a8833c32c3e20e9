#include "omni/npy.h"

#include <cstring>
#include <fstream>

#include "omni/errors.h"

namespace omni {

namespace {
// Element size of the dtypes read_npy reads; 0 for any other.
int64_t npy_item_size(const std::string& descr) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<f8" || descr == "<i8") return 8;
  return 0;
}
}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path + ": cannot open .npy file");
  // Sizes in the header are checked against the file's size before they size anything.
  const int64_t file_size = int64_t(in.tellg());
  in.seekg(0);
  char magic[6];
  uint8_t ver[2];
  in.read(magic, 6);
  in.read(reinterpret_cast<char*>(ver), 2);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file");
  uint32_t hlen = 0;
  if (ver[0] == 1) {
    uint16_t h16 = 0;
    in.read(reinterpret_cast<char*>(&h16), 2);
    hlen = h16;
  } else {
    in.read(reinterpret_cast<char*>(&hlen), 4);
  }
  if (int64_t(hlen) > file_size)
    throw Error(path + ": .npy header length " + std::to_string(hlen) + " exceeds the file size " + std::to_string(file_size));
  std::string header(hlen, '\0');
  in.read(header.data(), hlen);
  if (!in) throw Error(path + ": truncated .npy header");
  auto field = [&](const std::string& key) {
    size_t p = header.find("'" + key + "'");
    if (p == std::string::npos) throw Error(path + ": .npy header lacks '" + key + "'");
    return header.substr(header.find(':', p) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  if (field("fortran_order").find("True") < field("fortran_order").find(','))
    throw Error(path + ": Fortran-order arrays are not supported");
  std::string shp = field("shape");
  shp = shp.substr(shp.find('(') + 1, shp.find(')') - shp.find('(') - 1);
  NpyArray a;
  size_t pos = 0;
  while (pos < shp.size()) {
    size_t end = shp.find(',', pos);
    std::string tok = shp.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (tok.find_first_of("0123456789") != std::string::npos) {
      int64_t d = -1;
      try {
        d = std::stoll(tok);
      } catch (const std::exception&) {
      }
      if (d < 0 || d > file_size) throw Error(path + ": .npy shape entry '" + tok + "' is not a size this file can hold");
      a.shape.push_back(d);
    }
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  if (a.shape.size() > 8) throw Error(path + ": .npy shape has " + std::to_string(a.shape.size()) + " dimensions");
  const int64_t item = npy_item_size(descr);
  if (item == 0) throw Error(path + ": unsupported .npy dtype " + descr);
  // Each dimension is at most file_size, so multiply with a check that stops at the file's size.
  int64_t n = 1;
  for (int64_t d : a.shape) {
    if (d != 0 && n > file_size / d) n = file_size + 1;
    else n *= d;
  }
  const int64_t data_bytes = file_size - int64_t(in.tellg());
  if (n > data_bytes / item)
    throw Error(path + ": .npy shape " + shp + " needs " + (n > file_size ? std::string("more") : std::to_string(n * item)) +
                " bytes of data but the file holds " + std::to_string(data_bytes));
  if (descr == "<f4") {
    a.f32.resize(size_t(n));
    in.read(reinterpret_cast<char*>(a.f32.data()), n * 4);
  } else if (descr == "<f8") {
    std::vector<double> d(static_cast<size_t>(n));
    in.read(reinterpret_cast<char*>(d.data()), n * 8);
    a.f32.assign(d.begin(), d.end());
  } else if (descr == "<i4") {
    std::vector<int32_t> d(static_cast<size_t>(n));
    in.read(reinterpret_cast<char*>(d.data()), n * 4);
    a.i64.assign(d.begin(), d.end());
    a.is_float = false;
  } else if (descr == "<i8") {
    a.i64.resize(size_t(n));
    in.read(reinterpret_cast<char*>(a.i64.data()), n * 8);
    a.is_float = false;
  } else {
    throw Error(path + ": unsupported .npy dtype " + descr);
  }
  if (!in) throw Error(path + ": truncated .npy data");
  return a;
}

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    header += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
    n *= shape[i];
  }
  header += "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw Error(path + ": cannot write .npy file");
  out.write("\x93NUMPY\x01\x00", 8);
  uint16_t hlen = uint16_t(header.size());
  out.write(reinterpret_cast<const char*>(&hlen), 2);
  out.write(header.data(), std::streamsize(header.size()));
  out.write(reinterpret_cast<const char*>(data), n * 4);
  if (!out) throw Error(path + ": write failed (disk full?)");
}

}  // namespace omni
