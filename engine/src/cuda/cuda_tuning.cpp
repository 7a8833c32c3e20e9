#include "cuda/cuda_tuning.h"

#include <cstdlib>
#include <string>

#include "omni/errors.h"

namespace omni::cuda {
namespace {

// The value of `name` if it is set, as one of `allowed` (space-separated); "" when unset.
std::string switch_value(const char* name, const std::string& allowed) {
  const char* v = std::getenv(name);
  if (!v) return "";
  const std::string s = v;
  if ((" " + allowed + " ").find(" " + s + " ") == std::string::npos || s.empty())
    throw Error(std::string(name) + "=" + s + ": expected one of " + allowed);
  return s;
}

}  // namespace

CudaTuning CudaTuning::from_env() {
  CudaTuning t;
  if (switch_value("OMNI_CUDA_PDL", "0 1") == "0") t.pdl = false;
  if (const std::string v = switch_value("OMNI_CUDA_GEMV_HOIST", "0 4 5"); !v.empty()) t.gemv_hoist = std::stoi(v);
  if (switch_value("OMNI_CUDA_GEMV_WIDE", "0 1") == "0") t.gemv_wide = false;
  if (switch_value("OMNI_CUDA_ROUTER_HOIST", "0 1") == "0") t.router_hoist = false;
  if (switch_value("OMNI_CUDA_GATEUP_MINB", "2 4") == "2") t.gateup_split = false;
  if (switch_value("OMNI_CUDA_DOWN_ROWS", "1 4") == "1") t.down_rows = false;
  if (const std::string v = switch_value("OMNI_CUDA_FUSED_LAYER", "0 2"); !v.empty()) t.decode_layer = std::stoi(v);
  if (switch_value("OMNI_CUDA_MOE_TC", "0 1") == "0") t.moe_tc = false;
  if (switch_value("OMNI_CUDA_MOE_MMA", "0 1") == "0") t.moe_mma = false;
  if (switch_value("OMNI_CUDA_ATTN_MMA", "0 1") == "0") t.attn_mma = false;
  if (switch_value("OMNI_CUDA_QSTREAM", "0 1") == "0") t.qstream = false;
  if (switch_value("OMNI_CUDA_QGATEUP_MINB", "2 3") == "2") t.qgateup_min_blocks = 2;
  return t;
}

}  // namespace omni::cuda
