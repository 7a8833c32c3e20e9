// config.json parsing (both rope key styles, errors naming keys) and safetensors loading
// (header validation, truncated files, shape checks).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/model_config.h"
#include "omni/errors.h"

namespace fs = std::filesystem;
using namespace omni;

namespace {

std::string read_file(const std::string& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The release's config.json, committed (tests/fixtures/README.md, "release/").
std::string release_config_path() { return std::string(OMNI_FIXTURES) + "/release/config.json"; }

// Writes a safetensors file with the given tensors (F32 data filled with i*0.5).
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& ts,
                       size_t truncate_by = 0) {
  nlohmann::json h = nlohmann::json::object();
  size_t off = 0;
  for (auto& [name, shape] : ts) {
    size_t n = 1;
    for (auto d : shape) n *= size_t(d);
    h[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {off, off + n * 4}}};
    off += n * 4;
  }
  std::string hs = h.dump();
  hs.append((8 - hs.size() % 8) % 8, ' ');  // writers pad the header so that the data is aligned
  uint64_t len = hs.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << hs;
  std::vector<float> data(off / 4);
  for (size_t i = 0; i < data.size(); ++i) data[i] = float(i) * 0.5f;
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(off - truncate_by));
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("omni_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST(ModelConfig, ReadsReleaseConfigWithRopeScalingKeys) {
  std::string path = release_config_path();
  ModelConfig c = ModelConfig::load(path);
  EXPECT_EQ(c.thinker.vocab_size, 152064);
  EXPECT_EQ(c.thinker.num_layers, 48);
  EXPECT_EQ(c.thinker.num_heads, 32);
  EXPECT_EQ(c.thinker.num_kv_heads, 4);
  EXPECT_EQ(c.thinker.head_dim, 128);
  EXPECT_EQ(c.thinker.num_experts, 128);
  EXPECT_EQ(c.thinker.num_experts_per_tok, 8);
  EXPECT_TRUE(c.thinker.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.thinker.rope.theta, 1e6);
  EXPECT_EQ(c.thinker.rope.mrope_section, (std::vector<int>{24, 20, 20}));
  EXPECT_EQ(c.audio.d_model, 1280);
  EXPECT_EQ(c.audio.output_dim, 2048);
  ASSERT_TRUE(c.has_talker);
  EXPECT_EQ(c.talker.accept_hidden_layer, 24);
  EXPECT_EQ(c.talker.text.num_experts_per_tok, 6);
  EXPECT_DOUBLE_EQ(c.talker.text.rope.theta, 1e6);
  EXPECT_EQ(c.talker.text.shared_expert_intermediate_size, 768);
  EXPECT_DOUBLE_EQ(c.talker.code_predictor.rope.theta, 1e6);
  EXPECT_EQ(c.talker.speaker_ids.at("ethan"), 2302);
  EXPECT_EQ(c.talker.codec_eos_id, 2150);
  EXPECT_EQ(c.code2wav.samples_per_frame(), 1920);
  EXPECT_EQ(c.code2wav.sliding_window, 72);
}

TEST(ModelConfig, ReadsTheReleaseVisionTower) {
  const ModelConfig c = ModelConfig::load(release_config_path());
  ASSERT_TRUE(c.has_vision);
  EXPECT_EQ(c.vision.depth, 27);
  EXPECT_EQ(c.vision.hidden_size, 1152);
  EXPECT_EQ(c.vision.head_dim(), 72);
  EXPECT_EQ(c.vision.intermediate_size, 4304);
  EXPECT_EQ(c.vision.position_side(), 48);
  EXPECT_EQ(c.vision.deepstack_visual_indexes, (std::vector<int>{8, 16, 24}));
  EXPECT_EQ(c.vision.out_hidden_size, 2048);
  EXPECT_EQ(c.vision.patch_row_size(), 1536);
  EXPECT_DOUBLE_EQ(c.vision.rope_theta, 10000.0);
  EXPECT_EQ(c.ids.vision_start, 151652);
  EXPECT_EQ(c.ids.vision_end, 151653);
}

TEST(ModelConfig, VisionConfigErrorsNameTheKey) {
  const nlohmann::json j = nlohmann::json::parse(read_file(release_config_path()));
  auto expect_key = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json bad = j;
    bad["thinker_config"]["vision_config"][key] = value;
    try {
      ModelConfig::parse(bad.dump(), "v.json");
      ADD_FAILURE() << "expected ConfigError for " << key;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("thinker_config.vision_config.") + key), std::string::npos)
          << e.what();
    }
  };
  expect_key("num_position_embeddings", 2300);  // not a square
  expect_key("deepstack_visual_indexes", {8, 16, 27});  // a block past the depth
  expect_key("out_hidden_size", 1024);  // not the thinker's width
  expect_key("hidden_act", "relu");
  expect_key("num_heads", 7);  // 1152 / 7 is not whole
}

TEST(ModelConfig, RopeParametersStyleAndErrorsNameTheKey) {
  std::string path = release_config_path();
  ASSERT_TRUE(fs::exists(path)) << path;
  nlohmann::json j = nlohmann::json::parse(read_file(path));
  auto& tc = j["thinker_config"]["text_config"];
  tc.erase("rope_scaling");
  tc.erase("rope_theta");
  tc["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}, {"mrope_section", {24, 20, 20}},
                           {"interleaved", true}};
  ModelConfig c = ModelConfig::parse(j.dump(), "x.json");
  EXPECT_DOUBLE_EQ(c.thinker.rope.theta, 5e5);
  EXPECT_TRUE(c.thinker.rope.interleaved);

  nlohmann::json other = j;
  other["model_type"] = "qwen2_5_omni";
  try {
    ModelConfig::parse(other.dump(), "other/config.json");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model_type"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("other/config.json"), std::string::npos);
  }
  nlohmann::json bad = j;
  bad["thinker_config"]["text_config"]["num_attention_heads"] = "32";
  try {
    ModelConfig::parse(bad.dump(), "c.json");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("thinker_config.text_config.num_attention_heads"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ModelConfig::parse("{not json", "c.json"), ConfigError);
}

TEST(Checkpoint, LoadsSingleFileAndChecksShapes) {
  fs::path dir = temp_dir("single");
  write_safetensors((dir / "model.safetensors").string(), {{"a.weight", {2, 3}}, {"b", {4}}});
  Checkpoint ck(dir.string());
  Tensor a = ck.get("a.weight", {2, 3});
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_FLOAT_EQ(a.as<float>()[5], 2.5f);
  Tensor b = ck.get("b", {4});
  EXPECT_FLOAT_EQ(b.as<float>()[0], 3.0f);
  try {
    ck.get("a.weight", {3, 2});
    FAIL();
  } catch (const CheckpointError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("a.weight"), std::string::npos);
    EXPECT_NE(m.find("[2, 3]"), std::string::npos);
    EXPECT_NE(m.find("[3, 2]"), std::string::npos);
    EXPECT_NE(m.find("model.safetensors"), std::string::npos);
  }
  EXPECT_THROW(ck.get("missing", {1}), CheckpointError);
  fs::remove_all(dir);
}

TEST(Checkpoint, ShardedIndexMissingShardAndTruncation) {
  fs::path dir = temp_dir("sharded");
  write_safetensors((dir / "model-00001-of-00002.safetensors").string(), {{"x", {8}}});
  write_safetensors((dir / "model-00002-of-00002.safetensors").string(), {{"y", {2, 2}}});
  nlohmann::json idx = {{"metadata", {{"total_size", 48}}},
                        {"weight_map", {{"x", "model-00001-of-00002.safetensors"},
                                        {"y", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(dir / "model.safetensors.index.json") << idx.dump();
  {
    Checkpoint ck(dir.string());
    EXPECT_EQ(ck.tensor_count(), 2u);
    EXPECT_NE(ck.file_of("y").find("00002"), std::string::npos);
  }
  // Truncated shard: the error names the file and the tensor.
  write_safetensors((dir / "model-00002-of-00002.safetensors").string(), {{"y", {2, 2}}}, 4);
  try {
    Checkpoint ck(dir.string());
    FAIL();
  } catch (const CheckpointError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("model-00002-of-00002.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  }
  fs::remove(dir / "model-00002-of-00002.safetensors");
  try {
    Checkpoint ck(dir.string());
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
  EXPECT_THROW(Checkpoint("/nonexistent/model"), CheckpointError);
}

TEST(Checkpoint, RejectsGarbageHeaders) {
  const char junk[] = "\xff\xff\xff\xff\xff\xff\xff\x7f{}";
  EXPECT_THROW(SafetensorsFile::parse_header(junk, sizeof(junk), "j"), CheckpointError);
  std::string h = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})";
  std::string file(8, '\0');
  uint64_t n = h.size();
  std::memcpy(file.data(), &n, 8);
  file += h + std::string(8, '\0');
  EXPECT_THROW(SafetensorsFile::parse_header(file.data(), file.size(), "j"), CheckpointError);  // offsets vs shape
}

// The vision tower's patch embedding is 5-D; it is indexed with its last dimensions folded.
TEST(Checkpoint, FoldsDimensionsBeyondFourIntoTheLast) {
  fs::path d = temp_dir("ck5d");
  write_safetensors((d / "model-00001-of-00001.safetensors").string(),
                    {{"a.weight", {2, 3}}, {"thinker.visual.patch_embed.proj.weight", {2, 3, 2, 2, 2}}});
  std::ofstream(d / "model.safetensors.index.json")
      << R"({"weight_map": {"a.weight": "model-00001-of-00001.safetensors",
            "thinker.visual.patch_embed.proj.weight": "model-00001-of-00001.safetensors"}})";
  Checkpoint ck(d.string());
  EXPECT_TRUE(ck.contains("a.weight"));
  EXPECT_TRUE(ck.contains("thinker.visual.patch_embed.proj.weight"));
  EXPECT_EQ(ck.get("a.weight", {2, 3}).numel(), 6);
  EXPECT_EQ(ck.get("thinker.visual.patch_embed.proj.weight", {2, 3, 2, 4}).numel(), 48);
  EXPECT_THROW(ck.get("thinker.visual.patch_embed.proj.weight", {2, 3, 2, 2}), CheckpointError);
  fs::remove_all(d);
}
