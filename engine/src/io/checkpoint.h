// Checkpoint: the safetensors files of a Hugging Face model directory, memory-mapped.
// Tensors are returned as views into the mapping, so loading never copies weights on the
// host; a backend copies each one at most once (to the GPU) or uses the view directly (CPU).
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tensor.h"

namespace omni {

// One memory-mapped .safetensors file and its parsed header.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws CheckpointError naming the file
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const Tensor& get(const std::string& name) const;  // throws if absent
  std::vector<std::string> names() const;
  // Parses a header without a file (used by the fuzzer); returns the tensor table. A tensor of
  // more than kMaxDims dimensions has those from the kMaxDims-th on folded into its last.
  static std::map<std::string, Tensor> parse_header(const char* data, size_t size, const std::string& origin);

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, Tensor> tensors_;
};

// The parsed `model.safetensors.index.json`: tensor name → shard file, and the shards in first-use order.
struct SafetensorsIndex {
  std::map<std::string, std::string> weight_map;
  std::vector<std::string> shards;
  // Throws CheckpointError naming `origin` when the text is not JSON, the weight_map is missing or
  // empty, or a shard name is not a plain file name inside the model directory.
  static SafetensorsIndex parse(const std::string& json_text, const std::string& origin);
};

// A model directory: `model.safetensors`, or shards listed by `model.safetensors.index.json`.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  const std::string& dir() const { return dir_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // The tensor `name`, checked against the expected shape; its dtype must be BF16, F16 or F32.
  // Throws CheckpointError naming the tensor, its file and what was expected.
  Tensor get(const std::string& name, std::initializer_list<int64_t> shape) const;
  Tensor get_any(const std::string& name) const;  // no shape check
  std::string file_of(const std::string& name) const;
  size_t tensor_count() const { return where_.size(); }
  // Stored bytes of every tensor get()/get_any() returned (a tensor asked for twice counts twice).
  uint64_t bytes_handed_out() const { return bytes_handed_out_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
  mutable uint64_t bytes_handed_out_ = 0;
};

}  // namespace omni
