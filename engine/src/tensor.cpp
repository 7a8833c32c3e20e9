#include "tensor.h"

#include <cmath>

#include "omni/errors.h"

namespace omni {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::I32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::I32: return "I32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
  }
  return "?";
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  int exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(float(mant), -24);
    return sign ? -f : f;
  }
  uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13))
                            : (sign | (uint32_t(exp - 15 + 127) << 23) | (mant << 13));
  std::memcpy(&f, &bits, 4);
  return f;
}

Tensor::Tensor(void* d, DType t, std::initializer_list<int64_t> dims, bool device)
    : data(d), dtype(t), ndim(int(dims.size())), on_device(device) {
  if (dims.size() > kMaxDims) throw Error("tensor: more than " + std::to_string(kMaxDims) + " dimensions");
  int i = 0;
  for (int64_t v : dims) shape[size_t(i++)] = v;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[size_t(i)];
  return n;
}

Tensor Tensor::rows(int64_t begin, int64_t count) const {
  if (ndim == 0 || begin < 0 || count < 0 || begin + count > shape[0])
    throw Error("tensor: rows [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                ") out of range for shape " + shape_str());
  Tensor t = *this;
  t.data = static_cast<char*>(data) + size_t(begin * row_numel()) * dtype_size(dtype);
  t.shape[0] = count;
  return t;
}

Tensor Tensor::reshaped(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, dims, on_device);
  if (t.numel() != numel())
    throw Error("tensor: cannot view " + shape_str() + " as " + t.shape_str());
  return t;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[size_t(i)]);
  return s + "]";
}

}  // namespace omni
