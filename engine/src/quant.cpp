#include "quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "omni/engine.h"
#include "omni/errors.h"

namespace omni {
namespace {

float element(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: return t.as<const float>()[i];
    case DType::BF16: return bf16_to_f32(t.as<const uint16_t>()[i]);
    case DType::F16: return f16_to_f32(t.as<const uint16_t>()[i]);
    default: throw Error(std::string("quantize: a ") + dtype_name(t.dtype) + " tensor is not a float weight");
  }
}

// The quantized value of w under scale s (quant.h): IEEE division, rint (ties to even), clamp.
int quantize_value(float w, float s, int qmax) {
  if (s == 0.f) return 0;
  const float r = std::nearbyint(w / s);
  return int(std::min(float(qmax), std::max(float(-qmax - 1), r)));
}

DType parse_format(const std::string& v, const std::string& spec) {
  if (v == "bf16") return DType::BF16;
  if (v == "int8") return DType::Q8;
  if (v == "int4") return DType::Q4;
  throw ConfigError("weights '" + spec + "': format '" + v +
                    "' is not one of bf16, int8, int4 (or part=format with parts experts, attention, lm_head, "
                    "talker)");
}

}  // namespace

void quantize_rows(const Tensor& src, DType format, uint8_t* data, uint16_t* scales) {
  if (!is_quantized(format)) throw Error("quantize: the target format must be Q8 or Q4");
  if (src.ndim != 2) throw Error("quantize: only matrices are quantized, not " + src.shape_str());
  const int64_t N = src.dim(0), K = src.dim(1);
  const int64_t row_bytes = quant_row_bytes(format, K), groups = quant_groups(format, K);
  const int64_t gsize = quant_group_elems(format, K);
  const int qmax = quant_max(format);
  element(src, 0);  // throws for non-float tensors before any thread starts
#pragma omp parallel if (N * K >= (int64_t(1) << 22))
  {
    std::vector<int8_t> q(static_cast<size_t>(quant_row_elems(format, K)));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      std::fill(q.begin(), q.end(), int8_t(0));
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k0 = g * gsize, k1 = std::min(K, k0 + gsize);
        float absmax = 0.f;
        for (int64_t k = k0; k < k1; ++k) absmax = std::max(absmax, std::fabs(element(src, n * K + k)));
        const uint16_t s16 = f32_to_f16(absmax / float(qmax));
        const float s = f16_to_f32(s16);
        scales[n * groups + g] = s16;
        for (int64_t k = k0; k < k1; ++k) q[size_t(k)] = int8_t(quantize_value(element(src, n * K + k), s, qmax));
      }
      uint8_t* row = data + n * row_bytes;
      if (format == DType::Q8) {
        std::memcpy(row, q.data(), size_t(row_bytes));
      } else {
        for (int64_t j = 0; j < row_bytes; ++j)
          row[j] = uint8_t((uint8_t(q[size_t(2 * j)]) & 0xfu) | ((uint8_t(q[size_t(2 * j + 1)]) & 0xfu) << 4));
      }
    }
  }
}

void dequantize_row(const Tensor& t, int64_t r, float* dst) {
  if (!is_quantized(t.dtype)) throw Error("dequantize: tensor " + t.shape_str() + " is not quantized");
  const int64_t K = t.row_numel(), groups = quant_groups(t.dtype, K), gsize = quant_group_elems(t.dtype, K);
  const uint8_t* row = static_cast<const uint8_t*>(t.data) + r * quant_row_bytes(t.dtype, K);
  const uint16_t* s = static_cast<const uint16_t*>(t.scales) + r * groups;
  for (int64_t k = 0; k < K; ++k) {
    int q;
    if (t.dtype == DType::Q8) {
      q = int8_t(row[k]);
    } else {
      const int nib = (row[k >> 1] >> ((k & 1) * 4)) & 0xf;
      q = nib >= 8 ? nib - 16 : nib;
    }
    dst[k] = float(q) * f16_to_f32(s[k / gsize]);
  }
}

bool WeightPlan::all_bf16() const {
  return experts == DType::BF16 && attention == DType::BF16 && lm_head == DType::BF16 && talker == DType::BF16;
}

const char* weight_format_name(DType t) {
  return t == DType::Q8 ? "int8" : t == DType::Q4 ? "int4" : "bf16";
}

WeightPlan parse_weight_plan(const std::string& spec) {
  WeightPlan p;
  if (spec.empty() || spec.find('=') == std::string::npos) {
    const DType f = parse_format(spec, spec);
    p.experts = p.attention = p.lm_head = p.talker = f;
    return p;
  }
  size_t pos = 0;
  while (pos <= spec.size()) {
    const size_t end = std::min(spec.find(',', pos), spec.size());
    const std::string item = spec.substr(pos, end - pos);
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      throw ConfigError("weights '" + spec + "': '" + item + "' is not part=format (parts experts, attention, "
                        "lm_head, talker; formats bf16, int8, int4)");
    const std::string part = item.substr(0, eq);
    const DType f = parse_format(item.substr(eq + 1), spec);
    if (part == "experts") p.experts = f;
    else if (part == "attention") p.attention = f;
    else if (part == "lm_head") p.lm_head = f;
    else if (part == "talker") p.talker = f;
    else
      throw ConfigError("weights '" + spec + "': part '" + part +
                        "' is not one of experts, attention, lm_head, talker");
    pos = end + 1;
  }
  return p;
}

std::string weight_plan_string(const WeightPlan& p) {
  return std::string("experts=") + weight_format_name(p.experts) + ",attention=" + weight_format_name(p.attention) +
         ",lm_head=" + weight_format_name(p.lm_head) + ",talker=" + weight_format_name(p.talker);
}

// Declared in omni/engine.h (the daemon validates model.weights with it); defined here, beside the
// parser, so that a program holding only the parsers (the daemon-config fuzzer) links it.
void check_weights(const std::string& spec) { parse_weight_plan(spec); }

}  // namespace omni
