#include "tensor.h"

#include <cmath>

#include "omni/errors.h"
#include "quant.h"

namespace omni {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::I32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::Q8: return 0;
    case DType::Q4: return 0;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::I32: return "I32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::Q8: return "Q8";
    case DType::Q4: return "Q4";
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

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (ax < 0x38800000u) {  // below 2^-14: fp16 subnormal (or zero), in units of 2^-24
    if (ax < 0x33000000u) return sign;  // below 2^-25: rounds to zero
    const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(ax >> 23);  // 14..24 (value = mant * 2^(e-150), unit 2^-24)
    const uint32_t q = mant >> shift, rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    return uint16_t(sign | (q + (rest > half || (rest == half && (q & 1u)))));
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
  const uint32_t r = ax - 0x38000000u;  // exponent 127 -> 15
  const uint32_t q = r >> 13, rest = r & 0x1fffu;
  return uint16_t(sign | (q + (rest > 0x1000u || (rest == 0x1000u && (q & 1u)))));
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

size_t Tensor::bytes() const {
  if (is_quantized(dtype)) return ndim == 0 ? 0 : size_t(shape[0] * quant_row_bytes(dtype, row_numel()));
  return size_t(numel()) * dtype_size(dtype);
}

Tensor Tensor::rows(int64_t begin, int64_t count) const {
  if (ndim == 0 || begin < 0 || count < 0 || begin + count > shape[0])
    throw Error("tensor: rows [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                ") out of range for shape " + shape_str());
  Tensor t = *this;
  if (is_quantized(dtype)) {
    const int64_t K = row_numel();
    t.data = static_cast<char*>(data) + begin * quant_row_bytes(dtype, K);
    t.scales = static_cast<uint16_t*>(scales) + begin * quant_groups(dtype, K);
    t.shape[0] = count;
    return t;
  }
  t.data = static_cast<char*>(data) + size_t(begin * row_numel()) * dtype_size(dtype);
  t.shape[0] = count;
  return t;
}

Tensor Tensor::reshaped(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, dims, on_device);
  t.scales = scales;
  if (is_quantized(dtype) && t.row_numel() != row_numel())
    throw Error("tensor: a quantized " + shape_str() + " keeps its rows; cannot view it as " + t.shape_str());
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
