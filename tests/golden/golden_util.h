// Helpers shared by the golden tests: fixture paths and the relative error ‖a−b‖/‖b‖.
#pragma once
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "omni/engine.h"

namespace golden {

inline std::string fixtures() { return OMNI_FIXTURES; }
inline std::string model_dir(const std::string& name) { return std::string(OMNI_BUILD_DIR) + "/models/" + name; }

// Sub-directories of `dir` (sorted), e.g. the cases of one golden stage.
inline std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  if (!std::filesystem::is_directory(dir)) return out;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

inline double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline const std::vector<std::string>& models() {
  static const std::vector<std::string> m = {"tiny-a", "tiny-b"};
  return m;
}

// Loads each tiny model and calls `check` for every case directory of one golden stage
// (e.g. "text", "speech"); returns how many cases ran.
inline int for_each_case(const std::string& stage, const std::function<void(omni::Model&, const std::string&)>& check,
                         const std::string& device = "cpu") {
  int cases = 0;
  for (const std::string& name : models()) {
    omni::LoadOptions lo;
    lo.model_dir = model_dir(name);
    lo.device = device;
    lo.context_tokens = 512;
    auto model = omni::Model::load(lo);
    for (const std::string& dir : subdirs(fixtures() + "/golden/" + name + "/" + stage)) {
      check(*model, dir);
      ++cases;
    }
  }
  return cases;
}

}  // namespace golden
