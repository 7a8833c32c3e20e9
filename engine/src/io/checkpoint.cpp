#include "io/checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <set>
#include <sstream>

#include "omni/errors.h"
#include "omni/limits.h"

namespace omni {
namespace {

using nlohmann::json;

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "BF16") *out = DType::BF16;
  else if (s == "F16") *out = DType::F16;
  else if (s == "F32") *out = DType::F32;
  else if (s == "I32") *out = DType::I32;
  else return false;
  return true;
}

}  // namespace

std::map<std::string, Tensor> SafetensorsFile::parse_header(const char* data, size_t size,
                                                            const std::string& origin) {
  if (size < 8) throw CheckpointError(origin + ": truncated safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);
  if (header_len > size - 8)
    throw CheckpointError(origin + ": header length " + std::to_string(header_len) + " exceeds the file size " +
                          std::to_string(size) + " (truncated or not a safetensors file)");
  if (header_len > uint64_t(limits::kMaxSafetensorsHeaderBytes))
    throw CheckpointError(origin + ": header length " + std::to_string(header_len) + " is more than the " +
                          std::to_string(limits::kMaxSafetensorsHeaderBytes) + " bytes the safetensors format allows");
  json header;
  try {
    header = json::parse(data + 8, data + 8 + header_len);
  } catch (const json::exception& e) {
    throw CheckpointError(origin + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw CheckpointError(origin + ": safetensors header is not a JSON object");
  const char* base = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::map<std::string, Tensor> out;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = origin + ": tensor '" + name + "'";
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets") ||
        !info["dtype"].is_string() || !info["shape"].is_array() || !info["data_offsets"].is_array() ||
        info["data_offsets"].size() != 2)
      throw CheckpointError(where + ": malformed header entry");
    Tensor t;
    std::string dt = info["dtype"].get<std::string>();
    if (!parse_dtype(dt, &t.dtype)) throw CheckpointError(where + ": unsupported dtype " + dt);
    // Tensor holds at most kMaxDims dimensions: a tensor of more (the vision tower's 5-D patch
    // embedding [D, C, T, P, P]) is indexed with its dimensions from the kMaxDims-th on folded into
    // the last ([D, C, T, P*P]); the data are the same, row-major.
    const size_t dims = info["shape"].size();
    t.ndim = int(std::min(dims, size_t(kMaxDims)));
    uint64_t numel = 1;
    for (size_t i = 0; i < dims; ++i) {
      const json& d = info["shape"][i];
      // Each dimension and the element count at most 2^40 (1 TiB of bf16 would be 2^39 elements): no product
      // below overflows, and data_offsets are then checked against the file's size.
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 40))
        throw CheckpointError(where + ": shape[" + std::to_string(i) + "] is " + d.dump(0).substr(0, 40) +
                              ", not an integer in 0..2^40");
      numel *= d.get<uint64_t>();
      if (numel > (uint64_t(1) << 40))
        throw CheckpointError(where + ": shape " + info["shape"].dump().substr(0, 120) + " has more than 2^40 elements");
      if (i < size_t(kMaxDims)) t.shape[i] = int64_t(d.get<uint64_t>());
      else t.shape[size_t(kMaxDims) - 1] *= int64_t(d.get<uint64_t>());
    }
    const json& offs = info["data_offsets"];
    if (!offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      throw CheckpointError(where + ": bad data_offsets");
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (begin > end || end - begin != numel * dtype_size(t.dtype))
      throw CheckpointError(where + ": data_offsets do not match shape and dtype");
    if (end > data_size)
      throw CheckpointError(where + ": data ends at byte " + std::to_string(end) + " but the file holds " +
                            std::to_string(data_size) + " data bytes (truncated file)");
    // Tensors are used in place (a view into the mapping), so their data must be aligned to the element
    // size: writers pad the header with spaces to a multiple of 8 bytes for this. Reading a misaligned
    // float is undefined behaviour (and slow or faulting off x86), so such a file is refused.
    if ((8 + header_len + begin) % dtype_size(t.dtype) != 0)
      throw CheckpointError(where + ": data at byte " + std::to_string(8 + header_len + begin) +
                            " is not aligned to its " + dt + " element size (the header should be padded to a "
                            "multiple of 8 bytes; re-save the file with a current safetensors)");
    t.data = const_cast<char*>(base + begin);
    out.emplace(name, t);
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw CheckpointError(path + ": cannot stat: " + std::strerror(errno));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    map_ = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      ::close(fd);
      throw CheckpointError(path + ": cannot map: " + std::strerror(errno));
    }
  }
  ::close(fd);
  try {
    tensors_ = parse_header(static_cast<const char*>(map_), size_, path);
  } catch (...) {
    if (map_) ::munmap(map_, size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

const Tensor& SafetensorsFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw CheckpointError(path_ + ": no tensor '" + name + "'");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

SafetensorsIndex SafetensorsIndex::parse(const std::string& json_text, const std::string& origin) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw CheckpointError(origin + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw CheckpointError(origin + ": missing the 'weight_map' object");
  if (j["weight_map"].empty()) throw CheckpointError(origin + ": the 'weight_map' object is empty");
  SafetensorsIndex out;
  std::set<std::string> seen;
  for (auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw CheckpointError(origin + ": weight_map['" + name + "'] is not a file name");
    std::string f = file.get<std::string>();
    if (f.empty() || f == "." || f == ".." || f.find('/') != std::string::npos || f.find('\0') != std::string::npos)
      throw CheckpointError(origin + ": shard name '" + f + "' must be a plain file name");
    out.weight_map[name] = f;
    if (seen.insert(f).second) out.shards.push_back(f);
  }
  return out;
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw CheckpointError(dir + ": model directory does not exist");
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  std::ifstream index(index_path, std::ios::binary | std::ios::ate);
  if (index) {
    if (index.tellg() > limits::kMaxIndexJsonBytes)
      throw CheckpointError(index_path + ": the file is " + std::to_string(index.tellg()) + " bytes, more than the " +
                            std::to_string(limits::kMaxIndexJsonBytes) + " an index may have");
    index.seekg(0);
    std::stringstream text;
    text << index.rdbuf();
    SafetensorsIndex parsed = SafetensorsIndex::parse(text.str(), index_path);
    weight_map = std::move(parsed.weight_map);
    shard_names = std::move(parsed.shards);
  } else if (::stat(single_path.c_str(), &st) == 0) {
    shard_names.push_back("model.safetensors");
  } else {
    throw CheckpointError(dir + ": no model.safetensors and no model.safetensors.index.json");
  }
  std::map<std::string, const SafetensorsFile*> by_name;
  for (const std::string& shard : shard_names) {
    std::string path = dir + "/" + shard;
    if (::stat(path.c_str(), &st) != 0)
      throw CheckpointError(path + ": shard listed in model.safetensors.index.json is missing");
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    by_name[shard] = files_.back().get();
  }
  if (weight_map.empty()) {
    for (const std::string& n : files_[0]->names()) where_[n] = files_[0].get();
  } else {
    for (auto& [name, shard] : weight_map) {
      const SafetensorsFile* f = by_name[shard];
      if (!f->contains(name))
        throw CheckpointError(f->path() + ": tensor '" + name + "' is listed in the index but not in this shard");
      where_[name] = f;
    }
  }
}

std::string Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? dir_ : it->second->path();
}

Tensor Checkpoint::get_any(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw CheckpointError(dir_ + ": missing tensor '" + name + "'");
  const Tensor& t = it->second->get(name);
  bytes_handed_out_ += t.bytes();
  return t;
}

Tensor Checkpoint::get(const std::string& name, std::initializer_list<int64_t> shape) const {
  Tensor t = get_any(name);
  Tensor want(nullptr, DType::F32, shape);
  bool same = t.ndim == want.ndim;
  for (int i = 0; same && i < t.ndim; ++i) same = t.shape[size_t(i)] == want.shape[size_t(i)];
  if (!same)
    throw CheckpointError(file_of(name) + ": tensor '" + name + "' has shape " + t.shape_str() + ", expected " +
                          want.shape_str());
  if (t.dtype == DType::I32)
    throw CheckpointError(file_of(name) + ": tensor '" + name + "' has dtype I32, expected BF16, F16 or F32");
  return t;
}

}  // namespace omni
