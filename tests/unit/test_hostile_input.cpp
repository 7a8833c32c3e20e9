// Hostile inputs (docs/reliability.md): each case is an input that a careless reader crashes or
// misbehaves on; it must be refused with an error naming the file and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>

#include "io/checkpoint.h"
#include "omni/errors.h"

namespace fs = std::filesystem;
using namespace omni;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// An index whose weight_map is empty names no shard: a reader that does not check reads files_[0].
TEST(HostileInput, CheckpointIndexWithEmptyWeightMapIsRefused) {
  fs::path dir = fs::temp_directory_path() / ("omni_hostile_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "model.safetensors.index.json") << R"({"metadata": {}, "weight_map": {}})";
  const std::string e = error_of([&] { Checkpoint c(dir.string()); });
  EXPECT_NE(e.find("model.safetensors.index.json"), std::string::npos) << e;
  EXPECT_NE(e.find("'weight_map' object is empty"), std::string::npos) << e;
  fs::remove_all(dir);
}

// "" and ".." pass a "no '/'" check but name the directory itself or its parent.
TEST(HostileInput, IndexShardNamesMustBePlainFileNames) {
  for (const char* shard : {"", ".", "..", "a/b.safetensors"}) {
    const std::string text = std::string(R"({"weight_map": {"w": ")") + shard + R"("}})";
    const std::string e = error_of([&] { SafetensorsIndex::parse(text, "idx.json"); });
    EXPECT_NE(e.find("idx.json: shard name '" + std::string(shard) + "' must be a plain file name"),
              std::string::npos)
        << e;
  }
  const SafetensorsIndex ok =
      SafetensorsIndex::parse(R"({"weight_map": {"a": "s1", "b": "s2", "c": "s1"}})", "idx.json");
  EXPECT_EQ(ok.shards, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(ok.weight_map.at("b"), "s2");
}

// A header that is not padded leaves F32 data at an odd offset; the engine uses tensors in place, and
// reading a misaligned float is undefined behaviour (found by `make test-asan`, UBSan).
TEST(HostileInput, MisalignedTensorDataIsRefused) {
  const std::string h = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";  // 54 bytes: unpadded
  std::string file(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(file.data(), &n, 8);
  file += h + std::string(4, '\0');
  const std::string e = error_of([&] { SafetensorsFile::parse_header(file.data(), file.size(), "m.safetensors"); });
  ASSERT_NE((8 + h.size()) % 4, 0u);
  EXPECT_NE(e.find("m.safetensors: tensor 't': data at byte " + std::to_string(8 + h.size()) +
                   " is not aligned to its F32 element size"),
            std::string::npos)
      << e;
  std::string padded = h + std::string(8 - h.size() % 8, ' ');
  const uint64_t m = padded.size();
  std::string good(8, '\0');
  std::memcpy(good.data(), &m, 8);
  good += padded + std::string(4, '\0');
  EXPECT_EQ(SafetensorsFile::parse_header(good.data(), good.size(), "m.safetensors").size(), 1u);
}
