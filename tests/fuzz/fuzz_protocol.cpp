// libFuzzer target for the control protocol parser (ipc/protocol.cpp).
// Build: cmake -S . -B build-fuzz -DOMNI_CUDA=OFF -DOMNI_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang
//        cmake --build build-fuzz --target fuzz_protocol && ./build-fuzz/ipc/fuzz_protocol -max_total_time=60
// Input layout: byte 0 selects whether a binary frame follows; the rest is split at the first NUL into the
// JSON frame and the binary frame. Properties checked: no crash, no exception, exactly one of request/error,
// the reply always serializes, a valid request's id equals the echoed id.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ipc/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  bool with_binary = data[0] & 1;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::optional<std::string> binary;
  std::string_view json_frame = rest;
  if (with_binary) {
    auto nul = rest.find('\0');
    if (nul != std::string_view::npos) {
      json_frame = rest.substr(0, nul);
      binary = std::string(rest.substr(nul + 1));
    }
  }
  omni::ipc::ParseResult r = omni::ipc::parse_request(json_frame, binary);
  if (r.request.has_value() == r.error.has_value()) std::abort();
  nlohmann::json reply = r.ok() ? omni::ipc::ok_reply(r.id)
                                : omni::ipc::error_reply(r.id, r.error->code, r.error->message);
  std::string wire = omni::ipc::serialize(reply);
  if (wire.empty()) std::abort();
  if (r.ok() && r.request->id != r.id) std::abort();
  return 0;
}
