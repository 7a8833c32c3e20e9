// libFuzzer target: model.safetensors.index.json (SafetensorsIndex::parse, engine/src/io/checkpoint.cpp).
// Properties: CheckpointError or a non-empty weight map whose shards are plain file names (no path can
// leave the model directory), each listed once, and every weight_map value is one of them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "io/checkpoint.h"
#include "omni/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    omni::SafetensorsIndex index = omni::SafetensorsIndex::parse(text, "<fuzz>");
    if (index.weight_map.empty() || index.shards.empty()) std::abort();
    std::set<std::string> shards(index.shards.begin(), index.shards.end());
    if (shards.size() != index.shards.size()) std::abort();
    for (const std::string& s : shards)
      if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos) std::abort();
    for (const auto& [name, shard] : index.weight_map)
      if (!shards.count(shard)) std::abort();
  } catch (const omni::CheckpointError&) {
  }
  return 0;
}
