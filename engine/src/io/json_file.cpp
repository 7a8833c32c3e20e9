#include "io/json_file.h"

#include <fstream>

#include "omni/errors.h"
#include "omni/limits.h"

namespace omni {

nlohmann::json read_json_object(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw ConfigError(path + ": cannot open " + what);
  const std::streamoff size = in.tellg();
  if (size > limits::kMaxConfigJsonBytes)
    throw ConfigError(path + ": the file is " + std::to_string(size) + " bytes, more than the " +
                      std::to_string(limits::kMaxConfigJsonBytes) + " " + what + " may have");
  in.seekg(0);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError(path + ": expected a JSON object");
  return j;
}

}  // namespace omni
