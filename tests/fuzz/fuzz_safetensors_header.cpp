// libFuzzer target: the safetensors header parser (SafetensorsFile::parse_header, engine/src/io/checkpoint.cpp).
// The input is a whole file image (8-byte length, JSON header, data). Properties: the parser either throws
// CheckpointError or returns tensors whose data lies entirely inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>

#include "io/checkpoint.h"
#include "omni/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  try {
    auto tensors = omni::SafetensorsFile::parse_header(bytes, size, "<fuzz>");
    for (const auto& [name, t] : tensors) {
      const char* begin = static_cast<const char*>(t.data);
      if (t.ndim < 0 || t.ndim > omni::kMaxDims) std::abort();
      if (begin < bytes || begin + t.bytes() > bytes + size) std::abort();
    }
  } catch (const omni::CheckpointError&) {
  }
  return 0;
}
