// Tensor: a non-owning view of row-major data that lives elsewhere (a mapped checkpoint file,
// a backend's arena). Views are cheap to copy; nothing here allocates.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace omni {

// Q8 and Q4 are weight-only quantized matrices [N, K] (quant.h): packed integers in `data`,
// fp16 scales in `scales`; they are made by Backend::weight(host, format, name) and read only
// by linear/attention/mlp/moe.
enum class DType : uint8_t { F32, BF16, F16, I32, Q8, Q4 };

size_t dtype_size(DType t);  // 0 for Q8/Q4 (see Tensor::bytes)
inline bool is_quantized(DType t) { return t == DType::Q8 || t == DType::Q4; }
const char* dtype_name(DType t);

inline float bf16_to_f32(uint16_t v) {
  uint32_t bits = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// Round to nearest even, as torch does when casting float32 to bfloat16.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}
float f16_to_f32(uint16_t v);
// Round to nearest even, with fp16 subnormals, as CUDA's __float2half_rn.
uint16_t f32_to_f16(float f);

constexpr int kMaxDims = 4;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  bool on_device = false;  // true when `data` is device memory (CUDA backend)
  void* scales = nullptr;  // Q8/Q4: fp16 scales [shape[0], quant_groups] beside `data`

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims, bool device = false);

  bool empty() const { return data == nullptr; }
  int64_t dim(int i) const { return shape[size_t(i < 0 ? ndim + i : i)]; }
  int64_t numel() const;
  // Bytes of `data` (Q8/Q4: the packed rows, padded as quant.h says; the scales not counted).
  size_t bytes() const;
  // Elements in one slice along the first dimension.
  int64_t row_numel() const { return ndim == 0 ? 1 : numel() / shape[0]; }
  // Rows [begin, begin+count) along the first dimension; shares the data.
  Tensor rows(int64_t begin, int64_t count) const;
  // The same data seen with another shape of equal element count.
  Tensor reshaped(std::initializer_list<int64_t> dims) const;
  std::string shape_str() const;  // "[4096, 2048]"

  template <class T>
  T* as() const { return static_cast<T*>(data); }
};

}  // namespace omni
