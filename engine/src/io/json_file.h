// Small JSON configuration files of a checkpoint (preprocessor_config.json): read whole, bounded first.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace omni {

// The JSON object in `path`. Throws ConfigError naming the file when it cannot be opened, is larger than
// limits::kMaxConfigJsonBytes (checked before anything is read), is not valid JSON or is not an object;
// `what` names the file's role in the messages ("the preprocessor config").
nlohmann::json read_json_object(const std::string& path, const std::string& what);

}  // namespace omni
