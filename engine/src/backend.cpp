// Default implementations of the optional Backend hooks (backend.h).
#include "backend.h"

#include <limits>
#include <string>
#include <vector>

#include "omni/errors.h"

namespace omni {

Tensor Backend::synthetic_weight(std::initializer_list<int64_t> shape, uint64_t seed, float scale) {
  Tensor t = alloc(shape, DType::BF16);
  std::vector<uint16_t> host(size_t(t.numel()));
  for (size_t i = 0; i < host.size(); ++i) host[i] = f32_to_bf16(scale * synthetic_value(seed, i));
  upload(t, host.data());
  return t;
}

Tensor Backend::synthetic_weight_as(std::initializer_list<int64_t> shape, uint64_t seed, float scale, DType format) {
  if (!is_quantized(format)) return synthetic_weight(shape, seed, scale);
  Tensor t(nullptr, DType::BF16, shape);
  std::vector<uint16_t> host(size_t(t.numel()));
  for (size_t i = 0; i < host.size(); ++i) host[i] = f32_to_bf16(scale * synthetic_value(seed, i));
  t.data = host.data();
  return weight_as(t, format, "synthetic " + t.shape_str());  // quantized copies; `host` may go
}

void Backend::decoder_layer(const DecoderLayerWeights& L, float eps, const Tensor& x, const Tensor& branch,
                            bool add_branch, const AttentionArgs& args, const Tensor& normed) {
  if (add_branch) add_rms_norm(x, branch, L.input_norm, eps, normed);
  else rms_norm(x, L.input_norm, eps, normed);
  attention(L.attn, normed, args, branch);
  add_rms_norm(x, branch, L.post_norm, eps, normed);
  if (L.is_moe) moe(L.moe, normed, branch);
  else mlp(L.mlp, normed, branch);
}

void Backend::mask_logits(const Tensor& logits, const uint64_t* allowed) {
  if (logits.dtype != DType::F32) throw Error("mask_logits: logits must be float32");
  std::vector<float> host(size_t(logits.numel()));
  download(host.data(), logits);
  for (size_t i = 0; i < host.size(); ++i)
    if (!((allowed[i >> 6] >> (i & 63)) & 1)) host[i] = -std::numeric_limits<float>::infinity();
  upload(logits, host.data());
}

void Backend::begin_capture() { throw Error("backend " + name() + " cannot capture graphs"); }
int Backend::end_capture() { throw Error("backend " + name() + " cannot capture graphs"); }
void Backend::replay(int) { throw Error("backend " + name() + " cannot replay graphs"); }

namespace {
std::string conv_shapes(const Tensor& x, const Tensor& w, const Tensor& out) {
  return "x " + x.shape_str() + ", w " + w.shape_str() + ", out " + out.shape_str();
}
}  // namespace

int64_t check_conv1d_args(const Tensor& x, const Tensor& w, const Tensor& out, int dilation, int groups) {
  if (w.ndim != 3 || x.ndim != 2 || out.ndim != 2 || groups <= 0 || dilation <= 0)
    throw Error("conv1d: bad arguments: " + conv_shapes(x, w, out));
  const int64_t c_out = w.dim(0), per_group = w.dim(1), K = w.dim(2);
  const int64_t L_out = x.dim(0) - (K - 1) * dilation;
  if (per_group * groups != x.dim(1) || c_out % groups != 0 || out.dim(1) != c_out || out.dim(0) != L_out)
    throw Error("conv1d: shapes do not match (dilation " + std::to_string(dilation) + ", groups " +
                std::to_string(groups) + "): " + conv_shapes(x, w, out));
  return L_out;
}

int64_t check_conv_transpose1d_args(const Tensor& x, const Tensor& w, const Tensor& out, int stride) {
  if (w.ndim != 3 || x.ndim != 2 || out.ndim != 2 || stride <= 0)
    throw Error("conv_transpose1d: bad arguments: " + conv_shapes(x, w, out));
  const int64_t c_in = w.dim(0), c_out = w.dim(1), K = w.dim(2), s = stride;
  const int64_t L_out = (x.dim(0) + 1) * s - K;
  if (K < s || K > 2 * s || x.dim(1) != c_in || out.dim(1) != c_out || out.dim(0) != L_out)
    throw Error("conv_transpose1d: shapes do not match (stride " + std::to_string(stride) + "): " +
                conv_shapes(x, w, out));
  return L_out;
}

}  // namespace omni
