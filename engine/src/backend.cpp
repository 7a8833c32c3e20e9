// Default implementations of the optional Backend hooks (backend.h).
#include "backend.h"

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

void Backend::begin_capture() { throw Error("backend " + name() + " cannot capture graphs"); }
int Backend::end_capture() { throw Error("backend " + name() + " cannot capture graphs"); }
void Backend::replay(int) { throw Error("backend " + name() + " cannot replay graphs"); }

}  // namespace omni
