// Host fallbacks of the audio encoder operations for backends that do not implement them:
// download the operands as float, run the CPU reference, upload the result.
#include <vector>

#include "backend.h"
#include "cpu/cpu_backend.h"
#include "omni/errors.h"

namespace omni {
namespace {

struct HostCopy {
  std::vector<float> data;
  Tensor view;
  HostCopy(Backend& be, const Tensor& t) : data(static_cast<size_t>(t.numel())), view(t) {
    be.download_f32(data.data(), t);
    view.data = data.data();
    view.dtype = DType::F32;
    view.on_device = false;
  }
  explicit HostCopy(const Tensor& like) : data(static_cast<size_t>(like.numel())), view(like) {
    view.data = data.data();
    view.dtype = DType::F32;
    view.on_device = false;
  }
};

void upload_from_f32(Backend& be, const Tensor& dst, const std::vector<float>& src) {
  if (dst.dtype == DType::F32) {
    be.upload(dst, src.data());
  } else if (dst.dtype == DType::BF16) {
    std::vector<uint16_t> tmp(src.size());
    for (size_t i = 0; i < src.size(); ++i) tmp[i] = f32_to_bf16(src[i]);
    be.upload(dst, tmp.data());
  } else {
    throw Error("backend " + be.name() + ": host fallback cannot write " + dtype_name(dst.dtype) + " outputs");
  }
}

}  // namespace

void Backend::conv2d_gelu(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int pad, const Tensor& out) {
  HostCopy hx(*this, x), hw(*this, w), hb(*this, b), ho(out);
  CpuBackend().conv2d_gelu(hx.view, hw.view, hb.view, stride, pad, ho.view);
  upload_from_f32(*this, out, ho.data);
}

void Backend::permute_0312(const Tensor& x, const Tensor& out) {
  HostCopy hx(*this, x), ho(out);
  CpuBackend().permute_0312(hx.view, ho.view);
  upload_from_f32(*this, out, ho.data);
}

}  // namespace omni
