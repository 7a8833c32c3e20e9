// The checkpoint's sampling defaults (generation_config.json, read as transformers reads it), the newline id from
// the tokenizer, and StopReason's one spelling.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "io/model_config.h"
#include "model_impl.h"
#include "omni/engine.h"
#include "omni/errors.h"
#include "omni/limits.h"

namespace fs = std::filesystem;

namespace {

const std::string kTinyA = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";

std::string error_of(const std::string& json) {
  try {
    omni::parse_generation_config(json, "/m/generation_config.json");
  } catch (const omni::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

// A model directory with tiny-a's files and `generation_config` (none when empty).
fs::path model_dir_with(const std::string& generation_config) {
  char tmpl[] = "/tmp/omni-genconf-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  for (const auto& e : fs::directory_iterator(kTinyA))
    fs::create_symlink(fs::canonical(e.path()), dir / e.path().filename());
  if (!generation_config.empty()) std::ofstream(dir / "generation_config.json") << generation_config;
  return dir;
}

std::unique_ptr<omni::Model> load(const fs::path& dir) {
  omni::LoadOptions o;
  o.model_dir = dir.string();
  return omni::Model::load(o);
}

}  // namespace

TEST(GenerationConfig, AMissingFileMeansGreedyWithTransformersDefaults) {
  const omni::Sampling s = omni::load_generation_config("/nonexistent/generation_config.json");
  EXPECT_TRUE(s.greedy);
  EXPECT_EQ(s.temperature, 1.0f);
  EXPECT_EQ(s.top_k, 50);
  EXPECT_EQ(s.top_p, 1.0f);
  EXPECT_EQ(s.repetition_penalty, 1.0f);
}

TEST(GenerationConfig, ReadsTheSamplingKeysAndIgnoresOthers) {
  const omni::Sampling s = omni::parse_generation_config(
      R"({"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05,
          "bos_token_id": 151643, "eos_token_id": [151645, 151643], "transformers_version": "4.57.0"})",
      "g.json");
  EXPECT_FALSE(s.greedy);
  EXPECT_FLOAT_EQ(s.temperature, 0.7f);
  EXPECT_EQ(s.top_k, 20);
  EXPECT_FLOAT_EQ(s.top_p, 0.8f);
  EXPECT_FLOAT_EQ(s.repetition_penalty, 1.05f);
}

TEST(GenerationConfig, AbsentKeysTakeTransformersDefaults) {
  omni::Sampling s = omni::parse_generation_config(R"({"do_sample": true})", "g.json");
  EXPECT_FALSE(s.greedy);
  EXPECT_EQ(s.temperature, 1.0f);
  EXPECT_EQ(s.top_k, 50);
  EXPECT_EQ(s.top_p, 1.0f);
  EXPECT_EQ(s.repetition_penalty, 1.0f);
  // Values without do_sample: still greedy (transformers samples only when do_sample is true); the penalty
  // applies to greedy answers too.
  s = omni::parse_generation_config(R"({"temperature": 0.5, "repetition_penalty": 1.2})", "g.json");
  EXPECT_TRUE(s.greedy);
  EXPECT_FLOAT_EQ(s.repetition_penalty, 1.2f);
  EXPECT_TRUE(omni::parse_generation_config(R"({"do_sample": false, "temperature": 0.5})", "g.json").greedy);
}

TEST(GenerationConfig, BadValuesNameTheFileTheKeyAndTheValue) {
  struct Case {
    const char* json;
    const char* key;
    const char* value;  // as the message quotes it
  } cases[] = {{R"({"do_sample": "yes"})", "'do_sample'", "\"yes\""},
               {R"({"temperature": 0})", "'temperature'", "got 0"},
               {R"({"temperature": -1})", "'temperature'", "got -1"},
               {R"({"temperature": 1e300})", "'temperature'", "got 1e+300"},
               {R"({"temperature": "hot"})", "'temperature'", "\"hot\""},
               {R"({"top_k": -1})", "'top_k'", "got -1"},
               {R"({"top_k": 2.5})", "'top_k'", "got 2.5"},
               {R"({"top_k": 4294967296})", "'top_k'", "got 4294967296"},
               {R"({"top_k": 18446744073709551615})", "'top_k'", "got 18446744073709551615"},
               {R"({"top_p": 0})", "'top_p'", "got 0"},
               {R"({"top_p": 1.5})", "'top_p'", "got 1.5"},
               {R"({"repetition_penalty": 0})", "'repetition_penalty'", "got 0"},
               {R"({"repetition_penalty": null, "top_p": [1]})", "'top_p'", "[1]"},
               {R"([1, 2])", "JSON object", ""},
               {R"({"do_sample": tru)", "not valid JSON", ""}};
  for (const auto& c : cases) {
    const std::string e = error_of(c.json);
    EXPECT_NE(e.find("/m/generation_config.json"), std::string::npos) << c.json << " -> " << e;
    EXPECT_NE(e.find(c.key), std::string::npos) << c.json << " -> " << e;
    EXPECT_NE(e.find(c.value), std::string::npos) << c.json << " -> " << e;
  }
}

TEST(GenerationConfig, AnOversizedFileIsRefusedBeforeItIsRead) {
  char tmpl[] = "/tmp/omni-genconf-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  const fs::path file = dir / "generation_config.json";
  std::ofstream(file) << "{}";
  fs::resize_file(file, uintmax_t(omni::limits::kMaxConfigJsonBytes) + 1);  // sparse: nothing is written
  try {
    omni::load_generation_config(file.string());
    ADD_FAILURE() << "an oversized generation_config.json was read";
  } catch (const omni::ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(file.string() + ": the file is " + std::to_string(omni::limits::kMaxConfigJsonBytes + 1) +
                     " bytes, more than the " + std::to_string(omni::limits::kMaxConfigJsonBytes)),
              std::string::npos)
        << m;
  }
  fs::remove_all(dir);
}

TEST(GenerationConfig, ADirectoryInItsPlaceIsAnError) {
  char tmpl[] = "/tmp/omni-genconf-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  fs::create_directory(dir / "generation_config.json");
  try {
    omni::load_generation_config((dir / "generation_config.json").string());
    ADD_FAILURE() << "a directory read as generation_config.json";
  } catch (const omni::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "generation_config.json").string()), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(GenerationConfig, AModelUsesItsCheckpointsDefaultsAndRefusesABadFile) {
  EXPECT_TRUE(load(kTinyA)->default_sampling().greedy);  // tiny-a has none
  const fs::path good = model_dir_with(R"({"do_sample": true, "temperature": 0.9, "top_p": 0.95})");
  const omni::Sampling s = load(good)->default_sampling();
  EXPECT_FALSE(s.greedy);
  EXPECT_FLOAT_EQ(s.temperature, 0.9f);
  EXPECT_FLOAT_EQ(s.top_p, 0.95f);
  EXPECT_EQ(s.top_k, 50);
  const fs::path bad = model_dir_with(R"({"do_sample": true, "top_p": 2})");
  try {
    load(bad);
    ADD_FAILURE() << "a bad generation_config.json loaded";
  } catch (const omni::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find((bad / "generation_config.json").string() + ": key 'top_p'"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(good);
  fs::remove_all(bad);
}

TEST(Model, TheNewlineIdComesFromTheTokenizer) {
  auto model = load(kTinyA);
  auto& impl = dynamic_cast<omni::ModelImpl&>(*model);
  const std::vector<int32_t> ids = model->tokenize("\n");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(impl.config().ids.newline, ids[0]);
  EXPECT_EQ(impl.config().ids.newline, impl.tokenizer().token_id("\n"));
}

TEST(StopReason, HasOneWireNameEach) {
  EXPECT_EQ(omni::to_string(omni::StopReason::EndOfTurn), "end_of_turn");
  EXPECT_EQ(omni::to_string(omni::StopReason::MaxTokens), "max_tokens");
  EXPECT_EQ(omni::to_string(omni::StopReason::Cancelled), "cancelled");
  EXPECT_EQ(omni::to_string(omni::StopReason::ContextFull), "context_full");
}
