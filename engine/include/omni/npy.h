// Minimal .npy reader/writer (float32, int32, int64 little-endian, C order): fixtures from
// the Python reference tools, and `omni-run --logits-out`. Public so that tools need no engine internals.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace omni {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> f32;    // filled for '<f4' (and '<f8', converted)
  std::vector<int64_t> i64;  // filled for '<i4' / '<i8'
  bool is_float = true;
  int64_t numel() const;
};

NpyArray read_npy(const std::string& path);  // throws omni::Error naming the file
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace omni
