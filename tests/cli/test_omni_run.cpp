// omni-run as scripts use it: JSON output, --tokenize, --logits-out, and one clear error line
// with a non-zero exit for broken checkpoints and bad flags.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "omni/npy.h"

namespace fs = std::filesystem;

namespace {

struct RunResult {
  int status = -1;
  std::string out, err;
};

RunResult run(const std::string& args) {
  const std::string err_path = (fs::temp_directory_path() / ("omni_run_err_" + std::to_string(::getpid()))).string();
  const std::string cmd = std::string(OMNI_RUN_BIN) + " " + args + " 2>" + err_path;
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_path);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  fs::remove(err_path);
  return r;
}

const std::string kTinyA = std::string(OMNI_BUILD_DIR) + "/models/tiny-a";
const std::string kTinyB = std::string(OMNI_BUILD_DIR) + "/models/tiny-b";

// A writable copy of a tiny model (files copied, not linked) to break on purpose.
fs::path copy_model(const std::string& src, const std::string& tag) {
  fs::path dst = fs::temp_directory_path() / ("omni_run_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(dst);
  fs::create_directories(dst);
  for (auto& e : fs::directory_iterator(src))
    fs::copy_file(fs::canonical(e.path()), dst / e.path().filename());
  return dst;
}

int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void expect_one_line_error(const RunResult& r, const std::string& must_contain) {
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

}  // namespace

TEST(OmniRun, ChatPromptJsonAndLogits) {
  const std::string npy = (fs::temp_directory_path() / "omni_run_logits.npy").string();
  RunResult r = run("--model " + kTinyA + " --system 'Be brief.' --prompt 'Hi' --greedy --max-new-tokens 4 --json "
              "--logits-out " + npy);
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  // <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
  std::vector<int> expect_prefix = {151644, 8948, 198};
  auto prompt = j["prompt_tokens"].get<std::vector<int>>();
  ASSERT_GE(prompt.size(), 3u);
  EXPECT_EQ(std::vector<int>(prompt.begin(), prompt.begin() + 3), expect_prefix);
  EXPECT_EQ(std::vector<int>(prompt.end() - 3, prompt.end()), (std::vector<int>{151644, 77091, 198}));
  EXPECT_EQ(j["tokens"].size(), 4u);
  EXPECT_TRUE(j["timings"].contains("load_ms"));
  // The bytes the weights were made from: some of the checkpoint's shards (the talker stays unloaded here).
  uint64_t shard_bytes = 0;
  for (const auto& e : fs::directory_iterator(kTinyA))
    if (e.path().extension() == ".safetensors") shard_bytes += e.file_size();
  const uint64_t loaded = j["timings"]["load_bytes"].get<uint64_t>();
  EXPECT_GT(loaded, 0u);
  EXPECT_LT(loaded, shard_bytes);
  omni::NpyArray l = omni::read_npy(npy);
  ASSERT_EQ(l.shape.size(), 2u);
  EXPECT_EQ(l.shape[0], 4);
  EXPECT_EQ(l.shape[1], 152064);
  // Greedy: each row's argmax is the token it chose.
  for (int s = 0; s < 4; ++s) {
    const float* row = l.f32.data() + size_t(s) * 152064;
    EXPECT_EQ(int(std::max_element(row, row + 152064) - row), j["tokens"][size_t(s)].get<int>());
  }
  fs::remove(npy);
}

TEST(OmniRun, TokenizeAndSeededSampling) {
  RunResult t = run("--model " + kTinyB + " --tokenize 'Hello world' --json");
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_EQ(nlohmann::json::parse(t.out)["ids"], nlohmann::json::parse("[9707, 1879]"));
  const std::string args = "--model " + kTinyB + " --ids 9707,1879 --temperature 1.5 --top-k 50 --seed 7 "
                           "--max-new-tokens 6 --json";
  RunResult a = run(args), b = run(args);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
}

TEST(OmniRun, BrokenCheckpointsGiveOneClearErrorLine) {
  {  // a missing shard
    fs::path m = copy_model(kTinyA, "shard");
    fs::remove(m / "model-00002-of-00003.safetensors");
    expect_one_line_error(run("--model " + m.string() + " --ids 1,2 --json"), "model-00002-of-00003.safetensors");
    fs::remove_all(m);
  }
  {  // a truncated file
    fs::path m = copy_model(kTinyB, "trunc");
    fs::resize_file(m / "model.safetensors", fs::file_size(m / "model.safetensors") - 1000);
    expect_one_line_error(run("--model " + m.string() + " --ids 1,2 --json"), "truncated");
    fs::remove_all(m);
  }
  {  // a wrong-shaped tensor: the config claims a wider thinker than the weights hold
    fs::path m = copy_model(kTinyB, "shape");
    nlohmann::json c = nlohmann::json::parse(std::ifstream(m / "config.json"));
    c["thinker_config"]["text_config"]["moe_intermediate_size"] =
        c["thinker_config"]["text_config"]["moe_intermediate_size"].get<int>() + 1;
    std::ofstream(m / "config.json") << c.dump();
    expect_one_line_error(run("--model " + m.string() + " --ids 1,2 --json"), "expected");
    fs::remove_all(m);
  }
  {  // a config of another model type
    fs::path m = copy_model(kTinyB, "type");
    nlohmann::json c = nlohmann::json::parse(std::ifstream(m / "config.json"));
    c["model_type"] = "qwen2_5_omni";
    std::ofstream(m / "config.json") << c.dump();
    expect_one_line_error(run("--model " + m.string() + " --ids 1,2 --json"), "model_type");
    fs::remove_all(m);
  }
  expect_one_line_error(run("--model /nonexistent/dir --ids 1 --json"), "/nonexistent/dir");
  // An activation dtype the device does not offer is named in the error.
  expect_one_line_error(run("--model " + kTinyB + " --dtype bf16 --ids 1,2 --json"), "--dtype bf16");
  expect_one_line_error(run("--model " + kTinyB + " --device cuda --dtype f16 --ids 1,2 --json"), "f16");
}

// --weights: quantized thinker/talker on the CPU reference; a bad value names itself and the set.
TEST(OmniRun, QuantizedWeights) {
  for (const std::string w : {"int8", "int4", "experts=int4,lm_head=int8"}) {
    RunResult r = run("--model " + kTinyA + " --ids 1,2,3 --greedy --max-new-tokens 3 --json --weights " + w);
    EXPECT_EQ(r.status, 0) << w << ": " << r.err;
    EXPECT_NE(r.out.find("\"tokens\""), std::string::npos) << r.out;
  }
  RunResult bad = run("--model " + kTinyA + " --ids 1 --weights int3");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--weights: weights 'int3': format 'int3' is not one of bf16, int8, int4"), std::string::npos)
      << bad.err;
}

// --force-ids feeds the given tokens (teacher forcing) and still reports the model's own picks.
TEST(OmniRun, ForcedTokensKeepThePicks) {
  RunResult free = run("--model " + kTinyA + " --ids 1,2,3 --greedy --max-new-tokens 4 --json");
  RunResult forced = run("--model " + kTinyA + " --ids 1,2,3 --greedy --max-new-tokens 4 --json --force-ids 5,6,7,8");
  ASSERT_EQ(free.status, 0) << free.err;
  ASSERT_EQ(forced.status, 0) << forced.err;
  const auto a = nlohmann::json::parse(free.out)["tokens"], b = nlohmann::json::parse(forced.out)["tokens"];
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(a[0], b[0]);  // the same first context
  // Step 1 saw 1,2,3,5: its pick is the first pick after that prompt.
  RunResult after5 = run("--model " + kTinyA + " --ids 1,2,3,5 --greedy --max-new-tokens 1 --json");
  EXPECT_EQ(nlohmann::json::parse(after5.out)["tokens"][0], b[1]);
  // Forcing the model's own picks changes nothing.
  std::string own;
  for (const auto& t : a) own += (own.empty() ? "" : ",") + std::to_string(int(t));
  RunResult same = run("--model " + kTinyA + " --ids 1,2,3 --greedy --max-new-tokens 4 --json --force-ids " + own);
  EXPECT_EQ(nlohmann::json::parse(same.out)["tokens"], a);
}

TEST(OmniRun, BadFlagsExitWithUsage) {
  RunResult r = run("--model " + kTinyB + " --ids 1,x");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--ids"), std::string::npos);
  EXPECT_EQ(run("--model " + kTinyB).status, 2);
  EXPECT_EQ(run("--model " + kTinyB + " --ids 1 --greedy --temperature 0.5").status, 2);
}

// Hostile model files and clips (issue 22): one clear line naming the file, the key and the value, and
// no minutes-long load. The fuzzer's tokenizer.json with an id of 1,652,222,222 made omni-run print only
// "std::bad_alloc".
TEST(OmniRun, HostileTokenizerAndClipAreRefusedByName) {
  std::ifstream in(std::string(OMNI_SOURCE_DIR) + "/tests/fuzz/regressions/fuzz_tokenizer_json/tokenizer-json-huge-id.json");
  const std::string huge((std::istreambuf_iterator<char>(in)), {});
  ASSERT_NE(huge.find("1652222222"), std::string::npos);
  fs::path m = copy_model(kTinyB, "huge_id");
  fs::remove(m / "tokenizer.json");
  std::ofstream(m / "tokenizer.json") << huge;
  // With its config.json: the model's vocabulary is the bound, for --tokenize and for a full load alike.
  const std::string tok = (m / "tokenizer.json").string();
  for (const char* args : {" --tokenize hi", " --ids 1,2 --json"}) {
    const auto t0 = std::chrono::steady_clock::now();
    const RunResult r = run("--model " + m.string() + args);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
    expect_one_line_error(r, "tokenizer '" + tok + "': model.vocab[\"");
    EXPECT_NE(r.err.find("id 1652222222 is outside the model's vocabulary of 152064 ids"), std::string::npos) << r.err;
  }
  // A WAV whose header claims 1 Hz: refused from the header (85,000 s), not resampled to 23 hours.
  std::string wav = "RIFF";
  auto u32 = [&](uint32_t v) { wav.append(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { wav.append(reinterpret_cast<const char*>(&v), 2); };
  u32(36 + 170000);
  wav += "WAVEfmt ";
  u32(16), u16(1), u16(1), u32(1), u32(2), u16(2), u16(16);
  wav += "data";
  u32(170000);
  wav += std::string(170000, '\x01');
  std::ofstream(m / "q.wav", std::ios::binary) << wav;
  expect_one_line_error(run("--model " + kTinyB + " --audio " + (m / "q.wav").string() + " --json"),
                        "q.wav: lasts 85000 s (85000 frames at the declared sample_rate 1 Hz)");
  fs::remove_all(m);
}

namespace {

fs::path write_file(const std::string& tag, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("omni_run_" + tag + "_" + std::to_string(::getpid()) + ".json");
  std::ofstream(p) << text;
  return p;
}

const char* kTools = R"([{"type": "function", "function": {"name": "set_gripper", "description": "Open or close.",
  "parameters": {"type": "object", "properties": {"closed": {"type": "boolean"},
  "force_n": {"type": "integer", "minimum": 0, "maximum": 40}}, "required": ["closed"]}}},
  {"type": "function", "function": {"name": "move_arm", "parameters": {"type": "object", "properties": {
  "x": {"type": "number", "minimum": -1, "maximum": 1}}, "required": ["x"]}}}])";

}  // namespace

TEST(OmniRun, ToolsWithAForcedCallGiveValidToolCallsInJson) {
  const fs::path tools = write_file("tools", kTools);
  const RunResult r = run("--model " + kTinyA + " --prompt 'Close your hand' --tools " + tools.string() +
                          " --tool-choice set_gripper --temperature 1 --seed 5 --max-new-tokens 200 --json");
  fs::remove(tools);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("tool_calls"));
  ASSERT_GE(j["tool_calls"].size(), 1u);
  for (const auto& c : j["tool_calls"]) {
    EXPECT_EQ(c["name"], "set_gripper");
    EXPECT_TRUE(c["arguments"]["closed"].is_boolean());
    if (c["arguments"].contains("force_n")) {
      EXPECT_GE(c["arguments"]["force_n"].get<int>(), 0);
      EXPECT_LE(c["arguments"]["force_n"].get<int>(), 40);
    }
  }
  EXPECT_EQ(j["stop"], "end_of_turn");
  EXPECT_GT(j["timings"]["masked_steps"].get<int>(), 0);
}

TEST(OmniRun, ToolChoiceNoneGivesNoCallsAndBadToolsAreOneLineErrors) {
  const fs::path tools = write_file("tools_none", kTools);
  const RunResult r = run("--model " + kTinyA + " --prompt hi --tools " + tools.string() +
                          " --tool-choice none --greedy --max-new-tokens 6 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["tool_calls"].size(), 0u);
  expect_one_line_error(run("--model " + kTinyA + " --prompt hi --tools " + tools.string() + " --tool-choice fly"),
                        "no tool is named 'fly'");
  fs::remove(tools);
  const fs::path bad = write_file("tools_bad", R"([{"function": {"name": "f", "parameters": {"type": "object",
      "properties": {"when": {"type": "string", "format": "date-time"}}}}}])");
  expect_one_line_error(run("--model " + kTinyA + " --prompt hi --tools " + bad.string()),
                        "tools[0].function.parameters.properties.when.format");
  fs::remove(bad);
  expect_one_line_error(run("--model " + kTinyA + " --prompt hi --tools /nonexistent/tools.json"),
                        "--tools: cannot read /nonexistent/tools.json");
}

TEST(OmniRun, ResponseSchemaGivesJsonValidUnderIt) {
  const fs::path schema = write_file("schema", R"({"type": "object", "properties": {"answer": {"type": "string",
      "maxLength": 10}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["answer", "confidence"]})");
  const RunResult r = run("--model " + kTinyA + " --prompt 'What is it?' --response-schema " + schema.string() +
                          " --temperature 1 --seed 2 --max-new-tokens 200 --json");
  fs::remove(schema);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto v = nlohmann::json::parse(j["text"].get<std::string>());
  EXPECT_TRUE(v["answer"].is_string());
  EXPECT_LE(v["answer"].get<std::string>().size(), 40u);
  EXPECT_GE(v["confidence"].get<double>(), 0.0);
  EXPECT_LE(v["confidence"].get<double>(), 1.0);
}

TEST(OmniRun, ImageFlagGivesTheGoldenAnswerAndBadImagesAreOneLineErrorsNamingTheFile) {
  // The same prompt as golden/tiny-v/image_chat/garden_identity: transformers' greedy tokens.
  const std::string tiny_v = std::string(OMNI_BUILD_DIR) + "/models/tiny-v";
  const std::string fixtures = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures";
  const std::string image = fixtures + "/images/garden_224x160.png";
  RunResult r = run("--model " + tiny_v + " --image " + image +
                    " --prompt 'What is in this picture?' --greedy --max-new-tokens 12 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const omni::NpyArray ids = omni::read_npy(fixtures + "/golden/tiny-v/image_chat/garden_identity/turn_0_ids.npy");
  const omni::NpyArray greedy = omni::read_npy(fixtures + "/golden/tiny-v/image_chat/garden_identity/greedy.npy");
  EXPECT_EQ(j["prompt_tokens"].get<std::vector<int64_t>>(), ids.i64);
  EXPECT_EQ(j["tokens"].get<std::vector<int64_t>>(), greedy.i64);

  const std::string missing = fixtures + "/images/missing.png";
  expect_one_line_error(run("--model " + tiny_v + " --image " + missing + " --prompt x"), missing);
  const std::string not_image = fixtures + "/golden/tiny-v/image_chat/garden_identity/meta.json";
  expect_one_line_error(run("--model " + tiny_v + " --image " + not_image + " --prompt x"),
                        not_image + ": not a PNG or JPEG image");
}

TEST(OmniRun, MessagesFileGivesTheGoldenAnswerAndBadFilesAreOneLineErrorsNamingTheField) {
  // golden/tiny-v/messages/tool_call_and_result: a system message, the tools, an image turn, a call with its
  // result and a text turn, answered by transformers; its paths are relative to the file's folder.
  const std::string tiny_v = std::string(OMNI_BUILD_DIR) + "/models/tiny-v";
  const std::string fixtures = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures";
  const std::string dir = fixtures + "/golden/tiny-v/messages/tool_call_and_result";
  RunResult r = run("--model " + tiny_v + " --messages " + dir + "/messages.json --tools " + dir +
                    "/tools.json --greedy --max-new-tokens 12 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"].get<std::vector<int64_t>>(), omni::read_npy(dir + "/prompt_ids.npy").i64);
  EXPECT_EQ(j["tokens"].get<std::vector<int64_t>>(), omni::read_npy(dir + "/greedy.npy").i64);

  const fs::path bad = fs::temp_directory_path() / ("omni_run_messages_" + std::to_string(::getpid()));
  fs::create_directories(bad);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(bad / name) << text;
    return (bad / name).string();
  };
  expect_one_line_error(run("--model " + tiny_v + " --messages " + write("a.json", R"([{"role": "user", "content": [
      {"type": "image", "image": "garden.png"}]}])")), (bad / "garden.png").string());
  expect_one_line_error(run("--model " + tiny_v + " --messages " + write("b.json", R"([{"role": "user", "content": [
      {"type": "audio", "audio": "nothing.wav"}]}])")), (bad / "nothing.wav").string());
  expect_one_line_error(run("--model " + tiny_v + " --messages " + write("c.json", R"([{"role": "user",
      "content": [{"type": "text"}]}])")), "messages[0].content[0].text: missing");
  expect_one_line_error(run("--model " + tiny_v + " --messages " + write("d.json", "[{")), "not valid JSON");
  expect_one_line_error(run("--model " + tiny_v + " --messages " + (bad / "none.json").string()),
                        "--messages: cannot read");
  fs::remove_all(bad);
  RunResult both = run("--model " + tiny_v + " --messages x.json --prompt hi");
  EXPECT_EQ(both.status, 2);
  EXPECT_NE(both.err.find("give exactly one input"), std::string::npos) << both.err;
}

TEST(OmniRun, VideoFlagGivesTheGoldenAnswerOfTheSameConversation) {
  // --video FOLDER --video-fps F then --prompt: the user turn of golden/tiny-v/messages/video_then_text.
  const std::string tiny_v = std::string(OMNI_BUILD_DIR) + "/models/tiny-v";
  const std::string fixtures = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures";
  const std::string dir = fixtures + "/golden/tiny-v/messages/video_then_text";
  RunResult r = run("--model " + tiny_v + " --video " + fixtures +
                    "/videos/pan --video-fps 2 --prompt 'Which way does the camera move?' --greedy --max-new-tokens 12"
                    " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_tokens"].get<std::vector<int64_t>>(), omni::read_npy(dir + "/prompt_ids.npy").i64);
  EXPECT_EQ(j["tokens"].get<std::vector<int64_t>>(), omni::read_npy(dir + "/greedy.npy").i64);
  expect_one_line_error(run("--model " + tiny_v + " --video " + fixtures + "/images --prompt x"),
                        ", but the video's first frame is");
  RunResult bad = run("--model " + tiny_v + " --video-fps 2 --prompt x");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--video-fps follows the --video it sets"), std::string::npos) << bad.err;
}

TEST(OmniRun, AVideoFileIsDecodedAndSampledLikeTheSameFramesGivenAsAFolder) {
  // videos/ball_8fps.mkv: 8 frames at 8 fps (raw RGB in Matroska, so decoding is exact). Sampled at 2 fps the video
  // processor's rules keep 4 frames (its minimum), indices 0, 2, 4, 6, whose own rate is 4 fps: the answer must be
  // the one for those four frames given as a folder at 4 fps.
  const std::string tiny_v = std::string(OMNI_BUILD_DIR) + "/models/tiny-v";
  const std::string videos = std::string(OMNI_SOURCE_DIR) + "/tests/fixtures/videos";
  const fs::path folder = fs::temp_directory_path() / ("omni_run_ball_" + std::to_string(::getpid()));
  fs::remove_all(folder);
  fs::create_directories(folder);
  for (const char* f : {"f_00.png", "f_02.png", "f_04.png", "f_06.png"}) fs::copy_file(videos + "/ball/" + f, folder / f);
  const std::string tail = " --prompt 'What moves?' --greedy --max-new-tokens 8 --json";
  RunResult from_file = run("--model " + tiny_v + " --video " + videos + "/ball_8fps.mkv --video-fps 2" + tail);
  RunResult from_folder = run("--model " + tiny_v + " --video " + folder.string() + " --video-fps 4" + tail);
  fs::remove_all(folder);
  ASSERT_EQ(from_file.status, 0) << from_file.err;
  ASSERT_EQ(from_folder.status, 0) << from_folder.err;
  const auto a = nlohmann::json::parse(from_file.out), b = nlohmann::json::parse(from_folder.out);
  EXPECT_EQ(a["prompt_tokens"], b["prompt_tokens"]);
  EXPECT_EQ(a["tokens"], b["tokens"]);
  // Not a video: one error line naming the file.
  const std::string not_video = std::string(OMNI_SOURCE_DIR) + "/README.md";
  expect_one_line_error(run("--model " + tiny_v + " --video " + not_video + " --prompt x"), not_video);
}
