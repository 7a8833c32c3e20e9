// Bounds on what model files and clips may declare (omni/limits.h, issue 22): every id, count, size and
// duration read from outside is checked before it sizes anything, and the error names the file, the key
// and the value. The findings that started this are held here: a tokenizer.json with one id of
// 1,652,222,222 (the fuzzer's, tests/fuzz/regressions/fuzz_tokenizer_json/) and one of 200,000,000, and a
// WAV whose header claims 1 Hz. Each is loaded in a child process whose address space may grow by only a
// little, so a large allocation fails the test instead of passing slowly.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "audio/io/question_limits.h"
#include "audio/io/wav.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "model/mel.h"
#include "omni/engine.h"
#include "omni/errors.h"
#include "omni/limits.h"
#include "omni/tokenizer.h"

namespace fs = std::filesystem;
using namespace omni;

namespace {

const std::string kFinding =
    std::string(OMNI_FIXTURES) + "/../fuzz/regressions/fuzz_tokenizer_json/tokenizer-json-huge-id.json";

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("omni_bounds_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return (path / name).string();
  }
};

long vm_size_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stol(line.substr(7));
  return -1;
}

// What `f` (run in a forked child whose address space may grow by at most `headroom_mb`) threw, and how
// long it took. "(no error)" when it returned, "(child died: ...)" when it crashed or hit the limit.
struct Outcome {
  std::string error;
  double seconds = 0;
};
Outcome run_bounded(size_t headroom_mb, const std::function<void()>& f) {
  int fds[2];
  if (::pipe(fds) != 0) return {"(pipe failed)", 0};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    const long vm = vm_size_kb();
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = rlim_t(vm) * 1024 + rlim_t(headroom_mb) * 1024 * 1024;
    ::setrlimit(RLIMIT_AS, &lim);
    std::string msg = "(no error)";
    const auto t0 = std::chrono::steady_clock::now();
    try {
      f();
    } catch (const std::bad_alloc&) {
      msg = "(child died: std::bad_alloc: the address-space limit was hit)";
    } catch (const std::exception& e) {
      msg = e.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string out = std::to_string(s) + "\n" + msg;
    [[maybe_unused]] ssize_t w = ::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const size_t nl = out.find('\n');
  if (!WIFEXITED(status) || nl == std::string::npos)
    return {"(child died: status " + std::to_string(status) + ", output '" + out + "')", 0};
  return {out.substr(nl + 1), std::stod(out.substr(0, nl))};
}

// The GPT-2 byte-level alphabet: the vocab string of byte `b`.
std::string byte_char(int b) {
  std::vector<int> bytes, chars;
  for (int c = 0; c < 256; ++c)
    if ((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) bytes.push_back(c);
  chars = bytes;
  for (int c = 0, n = 0; c < 256; ++c)
    if (std::find(bytes.begin(), bytes.end(), c) == bytes.end()) bytes.push_back(c), chars.push_back(256 + n++);
  const int cp = chars[size_t(std::find(bytes.begin(), bytes.end(), b) - bytes.begin())];
  std::string out;
  if (cp < 0x80) out += char(cp);
  else out += char(0xC0 | (cp >> 6)), out += char(0x80 | (cp & 0x3F));
  return out;
}

// The finding made valid again: its mutated entry removed and the byte tokens the fuzzer's mutations
// took away given back (at the lowest free ids), plus, when `extra_id` >= 0, an entry "extra" at that id.
nlohmann::json finding_repaired(int64_t extra_id = -1) {
  nlohmann::json j = nlohmann::json::parse(read(kFinding));
  nlohmann::json& v = j["model"]["vocab"];
  v.erase("\u00a0a5");
  std::set<int64_t> used;
  for (auto& [k, id] : v.items()) used.insert(id.get<int64_t>());
  int64_t next = 0;
  for (int b = 0; b < 256; ++b) {
    if (v.contains(byte_char(b))) continue;
    while (used.count(next)) ++next;
    v[byte_char(b)] = next;
    used.insert(next);
  }
  if (extra_id >= 0) v["extra"] = extra_id;
  return j;
}

// A model directory holding `tokenizer` as tokenizer.json, with the tiny model's config.json beside it.
std::string model_dir_with_tokenizer(const TempDir& dir, const std::string& tokenizer) {
  dir.write("tokenizer.json", tokenizer);
  fs::copy_file(std::string(OMNI_FIXTURES) + "/models/tiny-a/config.json", dir.path / "config.json",
                fs::copy_options::overwrite_existing);
  return dir.path.string();
}

}  // namespace

// The fuzzer's finding: one vocab id of 1,652,222,222 made the loader resize its tables to that many
// strings (53 GB) and omni-run say only "std::bad_alloc".
TEST(Bounds, HugeIdTokenizerFromTheFuzzerIsRefusedFastWithoutALargeAllocation) {
  const std::string text = read(kFinding);
  ASSERT_NE(text.find("1652222222"), std::string::npos) << "the regression input is missing: " << kFinding;
  TempDir dir("huge_id");
  const std::string path = dir.write("tokenizer.json", text);
  // Loaded alone (omni-run --tokenize on a directory without config.json): the hard bound.
  const Outcome alone = run_bounded(256, [&] { Tokenizer::load(path); });
  EXPECT_NE(alone.error.find("tokenizer.json"), std::string::npos) << alone.error;
  EXPECT_NE(alone.error.find("model.vocab[\""), std::string::npos) << alone.error;
  EXPECT_NE(alone.error.find("id 1652222222"), std::string::npos) << alone.error;
  EXPECT_NE(alone.error.find(std::to_string(limits::kMaxVocab)), std::string::npos) << alone.error;
  EXPECT_LT(alone.seconds, 0.25);
  // Loaded with its model: the checkpoint's vocabulary, and config.json named as the source of the bound.
  const Outcome with_model = run_bounded(256, [&] {
    Tokenizer::load(path, 152064, "thinker_config.text_config.vocab_size in config.json");
  });
  EXPECT_NE(with_model.error.find("id 1652222222 is outside the model's vocabulary of 152064 ids"), std::string::npos)
      << with_model.error;
  EXPECT_NE(with_model.error.find("vocab_size in config.json"), std::string::npos) << with_model.error;
  EXPECT_LT(with_model.seconds, 0.25);
}

// Below INT32_MAX, so it used to pass the reader's check: 12.5 s and 6.6 GB to accept, and a failure only
// when the token was used.
TEST(Bounds, TokenizerWithAnIdOf200MillionIsRefusedFastWithoutALargeAllocation) {
  TempDir dir("200m");
  const std::string path = dir.write("tokenizer.json", replace_all(read(kFinding), "1652222222", "200000000"));
  for (const bool alone : {true, false}) {
    const Outcome o = run_bounded(256, [&] {
      if (alone) Tokenizer::load(path);
      else Tokenizer::load(path, 152064, "config.json");
    });
    EXPECT_NE(o.error.find("tokenizer.json"), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("model.vocab[\""), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("id 200000000 is outside the model's vocabulary"), std::string::npos) << o.error;
    EXPECT_LT(o.seconds, 0.25);
  }
}

// The same file with the id inside the vocabulary loads: the bound is the vocabulary, not a guess.
TEST(Bounds, TokenizerIdsUpToTheVocabularyAreAcceptedAndOneMoreIsNot) {
  TempDir dir("edge");
  // 258 entries (ids 0..256 and the one below); the two added tokens are numbered after the vocab.
  const std::string ok = dir.write("ok.json", finding_repaired(4095).dump());
  auto tok = Tokenizer::load(ok, 4096, "test");
  EXPECT_EQ(tok->vocab_size(), 4096u);
  const std::string off = dir.write("off.json", finding_repaired(4096).dump());
  const Outcome o = run_bounded(256, [&] { Tokenizer::load(off, 4096, "test"); });
  EXPECT_NE(o.error.find("off.json': model.vocab[\"extra\"]"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("id 4096 is outside the model's vocabulary of 4096 ids (test)"), std::string::npos) << o.error;
}

// Added tokens whose content is not in the vocab get the ids after it (as HF numbers them); those ids
// must fit the model too.
TEST(Bounds, AddedTokensNumberedPastTheVocabularyAreRefused) {
  TempDir dir("added");
  const nlohmann::json j = finding_repaired();
  const std::string path = dir.write("tokenizer.json", j.dump());
  // Neither added token's content is in the vocab: <|im_start|> gets id N, <think> N + 1 (N vocab entries).
  const int64_t n = int64_t(j["model"]["vocab"].size());
  EXPECT_EQ(Tokenizer::load(path, n + 2, "test")->token_id("<think>"), n + 1);
  const Outcome o = run_bounded(256, [&] { Tokenizer::load(path, n + 1, "test"); });
  EXPECT_NE(o.error.find("added_tokens[1]"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("id " + std::to_string(n + 1) + " is outside the model's vocabulary of " +
                         std::to_string(n + 1) + " ids"),
            std::string::npos)
      << o.error;
}

// The engine loads the tokenizer with the checkpoint's thinker vocab_size as the bound, before it maps
// any weights.
TEST(Bounds, ModelLoadRefusesATokenizerIdOutsideTheConfigsVocabulary) {
  TempDir dir("model");
  const std::string model = model_dir_with_tokenizer(dir, replace_all(read(kFinding), "1652222222", "152064"));
  LoadOptions lo;
  lo.model_dir = model;
  lo.device = "cpu";
  const Outcome o = run_bounded(512, [&] { Model::load(lo); });
  EXPECT_NE(o.error.find(model + "/tokenizer.json': model.vocab[\""), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("id 152064 is outside the model's vocabulary of 152064 ids (thinker_config.text_config."
                         "vocab_size in " + model + "/config.json)"),
            std::string::npos)
      << o.error;
  EXPECT_LT(o.seconds, 0.5);
}

TEST(Bounds, TokenizerFileLargerThanTheLimitIsRefusedBeforeItIsRead) {
  TempDir dir("big");
  const fs::path p = dir.path / "tokenizer.json";
  { std::ofstream(p) << "{}"; }
  fs::resize_file(p, uintmax_t(limits::kMaxTokenizerJsonBytes) + 1);  // sparse: nothing is written
  const Outcome o = run_bounded(64, [&] { Tokenizer::load(p.string()); });
  EXPECT_NE(o.error.find("tokenizer.json': the file is " + std::to_string(limits::kMaxTokenizerJsonBytes + 1) + " bytes"),
            std::string::npos)
      << o.error;
}

TEST(Bounds, TokenizerWithMoreMergesThanTheLimitStopsReadingThere) {
  // model.merges of kMaxVocab + 1 entries "a b": refused at entry kMaxVocab, naming the key.
  std::string text = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [)";
  for (int64_t i = 0; i <= limits::kMaxVocab; ++i) text += i ? ",\"a b\"" : "\"a b\"";
  text += "]}}";
  TempDir dir("merges");
  const std::string path = dir.write("tokenizer.json", text);
  const Outcome o = run_bounded(512, [&] { Tokenizer::load(path); });
  EXPECT_NE(o.error.find("model.merges: more than " + std::to_string(limits::kMaxVocab) + " entries"), std::string::npos)
      << o.error;
}

// --- config.json, preprocessor_config.json, safetensors -------------------------------------------------

namespace {
nlohmann::json tiny_config() { return nlohmann::json::parse(read(std::string(OMNI_FIXTURES) + "/models/tiny-a/config.json")); }
std::string config_error(const nlohmann::json& j) {
  try {
    ModelConfig::parse(j.dump(), "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(Bounds, ConfigIntegersBeyond32BitsAreRefusedNotTruncated) {
  auto j = tiny_config();
  j["thinker_config"]["text_config"]["vocab_size"] = int64_t(1) << 32;  // would truncate to 0
  EXPECT_EQ(config_error(j), "config.json: key 'thinker_config.text_config.vocab_size' must be an integer within 32 "
                             "bits (got 4294967296)");
  j = tiny_config();
  j["thinker_config"]["text_config"]["hidden_size"] = uint64_t(1) << 63;
  EXPECT_NE(config_error(j).find("hidden_size' must be an integer within 32 bits (got 9223372036854775808)"),
            std::string::npos);
}

TEST(Bounds, ConfigWidthsAndCountsAboveTheirLimitsAreRefusedNamingKeyAndValue) {
  struct Case {
    std::vector<std::string> path;
    int64_t value;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"thinker_config", "text_config", "vocab_size"}, 2000000,
       "key 'thinker_config.text_config.vocab_size' must be at most 1048576 (got 2000000)"},
      {{"thinker_config", "text_config", "num_hidden_layers"}, 100000,
       "key 'thinker_config.text_config.num_hidden_layers' must be at most 1024 (got 100000)"},
      {{"thinker_config", "text_config", "num_experts"}, 1000000, "num_experts' must be at most 4096 (got 1000000)"},
      {{"thinker_config", "audio_config", "encoder_ffn_dim"}, 1 << 30,
       "key 'thinker_config.audio_config.encoder_ffn_dim' must be at most 131072 (got 1073741824)"},
      {{"thinker_config", "text_config", "num_key_value_heads"}, -3,
       "num_key_value_heads' must be between 1 and 1024 (got -3)"},
  };
  for (const Case& c : cases) {
    auto j = tiny_config();
    nlohmann::json* at = &j;
    for (const auto& k : c.path) at = &(*at)[k];
    *at = c.value;
    const std::string e = config_error(j);
    EXPECT_NE(e.find(c.expect), std::string::npos) << e;
  }
  // The release's own numbers stay well inside: the tiny model (release widths in its talker/code2wav) loads.
  EXPECT_EQ(config_error(tiny_config()), "(no error)");
}

TEST(Bounds, Code2WavUpsamplingWhoseProductOverflowsIsRefused) {
  auto j = tiny_config();
  if (!j.contains("code2wav_config")) GTEST_SKIP() << "tiny-a has no code2wav_config";
  j["code2wav_config"]["upsample_rates"] = {65536, 65536, 65536};
  EXPECT_NE(config_error(j).find("code2wav_config.upsample_rates' must be a list whose product"), std::string::npos)
      << config_error(j);
}

TEST(Bounds, PreprocessorConfigSizesAreBoundedBeforeTheFilterBankIsMade) {
  TempDir dir("mel");
  const std::string p = dir.write("preprocessor_config.json",
                                  R"({"feature_size": 128, "sampling_rate": 16000, "hop_length": 160, "n_fft": 16777216})");
  const Outcome o = run_bounded(128, [&] { MelFrontend m(MelConfig::load(p)); });
  EXPECT_NE(o.error.find("preprocessor_config.json: \"n_fft\" must be a positive integer of at most 8192 (got 16777216)"),
            std::string::npos)
      << o.error;
}

TEST(Bounds, SafetensorsShapeErrorsNameTheDimensionAndValue) {
  auto image = [](const std::string& header) {
    std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
    const uint64_t n = padded.size();
    std::string out(reinterpret_cast<const char*>(&n), 8);
    return out + padded + std::string(64, '\0');
  };
  auto error = [](const std::string& img) {
    try {
      SafetensorsFile::parse_header(img.data(), img.size(), "w.safetensors");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error(image(R"({"t": {"dtype": "F32", "shape": [2199023255552], "data_offsets": [0, 4]}})")),
            "w.safetensors: tensor 't': shape[0] is 2199023255552, not an integer in 0..2^40");
  EXPECT_EQ(error(image(R"({"t": {"dtype": "F32", "shape": [1099511627776, 2], "data_offsets": [0, 4]}})")),
            "w.safetensors: tensor 't': shape [1099511627776,2] has more than 2^40 elements");
  // Byte counts against the file: the offsets must match the shape and lie inside the data.
  EXPECT_NE(error(image(R"({"t": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}})")).find(
                "data ends at byte 4096 but the file holds 64 data bytes"),
            std::string::npos);
}

TEST(Bounds, SafetensorsHeaderLengthAboveTheFormatsLimitIsRefused) {
  // 100 MB + 1 of header length in a file that large (sparse, mapped, nothing read but the length).
  TempDir dir("st");
  const fs::path p = dir.path / "model.safetensors";
  const uint64_t n = uint64_t(limits::kMaxSafetensorsHeaderBytes) + 8;
  {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&n), 8);
  }
  fs::resize_file(p, n + 16);
  const Outcome o = run_bounded(256, [&] { SafetensorsFile f(p.string()); });
  EXPECT_NE(o.error.find("model.safetensors: header length " + std::to_string(n) + " is more than the " +
                         std::to_string(limits::kMaxSafetensorsHeaderBytes) + " bytes"),
            std::string::npos)
      << o.error;
  EXPECT_LT(o.seconds, 0.25);
}

// --- WAV ----------------------------------------------------------------------------------------------

namespace {
// A 16-bit PCM WAV of `frames` frames, whatever the rate and channels claim.
std::string pcm16_wav(int rate, int channels, size_t frames) {
  const uint32_t data = uint32_t(frames * size_t(channels) * 2);
  std::string h = "RIFF";
  auto u32 = [&](uint32_t v) { h.append(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { h.append(reinterpret_cast<const char*>(&v), 2); };
  u32(36 + data);
  h += "WAVEfmt ";
  u32(16);
  u16(1);
  u16(uint16_t(channels));
  u32(uint32_t(rate));
  u32(uint32_t(rate * channels * 2));
  u16(uint16_t(channels * 2));
  u16(16);
  h += "data";
  u32(data);
  std::string body(data, '\0');
  for (size_t i = 0; i + 1 < body.size(); i += 2) body[i] = char(i * 37);  // something that is not silence
  return h + body;
}
}  // namespace

// The client's finding: a 170 KB WAV claiming 1 Hz was resampled to 23 hours of 16 kHz audio (14 GB).
TEST(Bounds, OneHertzWavIsRefusedFromItsHeaderBeforeAnySampleIsDecoded) {
  const std::string wav = pcm16_wav(1, 1, 85000);  // 170 KB
  ASSERT_EQ(wav.size(), 170044u);
  const Outcome o = run_bounded(32, [&] {
    audio::load_wav_mono(wav.data(), wav.size(), 16000, "q.wav", audio::question_clip_limits());
  });
  EXPECT_EQ(o.error, "WAV q.wav: lasts 85000 s (85000 frames at the declared sample_rate 1 Hz); the longest clip "
                     "accepted is 300 s");
  EXPECT_LT(o.seconds, 0.05);
  // Without bounds it is an ordinary (if odd) file: the check is the bound, not the parser.
  EXPECT_EQ(audio::probe_wav(wav.data(), wav.size()).frames, 85000u);
}

TEST(Bounds, QuestionClipBoundsAreExactAtTheirEdges) {
  const audio::ClipLimits l = audio::question_clip_limits();
  auto error = [&](audio::WavInfo info) {
    try {
      audio::check_clip(info, l, "c.wav");
    } catch (const audio::AudioError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  audio::WavInfo info;
  info.channels = 2;
  info.sample_rate = 16000;
  info.frames = 300 * 16000;
  EXPECT_EQ(error(info), "(no error)");
  info.frames += 1;
  EXPECT_NE(error(info).find("WAV c.wav: lasts 300.0000625 s"), std::string::npos) << error(info);
  info.frames = 16000;
  info.sample_rate = limits::kMinInputSampleRate - 1;
  EXPECT_EQ(error(info), "WAV c.wav: sample_rate 3999 Hz is below the 4000 Hz accepted");
  info.sample_rate = limits::kMaxInputSampleRate + 1;
  EXPECT_EQ(error(info), "WAV c.wav: sample_rate 768001 Hz is above the 768000 Hz accepted");
  info.sample_rate = 48000;
  info.channels = limits::kMaxInputChannels + 1;
  EXPECT_EQ(error(info), "WAV c.wav: channels 65 is more than the 64 accepted");
}

TEST(Bounds, ProbeAgreesWithDecodeAndABoundedClipConverts) {
  const std::string wav = pcm16_wav(8000, 2, 8000);  // 1 s stereo at 8 kHz
  const audio::WavInfo info = audio::probe_wav(wav.data(), wav.size());
  const audio::WavData data = audio::decode_wav(wav.data(), wav.size());
  EXPECT_EQ(info.frames, data.frames());
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.sample_rate, 8000);
  EXPECT_DOUBLE_EQ(info.seconds(), 1.0);
  EXPECT_EQ(audio::load_wav_mono(wav.data(), wav.size(), 16000, "x", audio::question_clip_limits()).size(), 16000u);
}

TEST(Bounds, WavSampleRateAbove2GHzIsReportedAsWritten) {
  std::string wav = pcm16_wav(8000, 1, 10);
  const uint32_t rate = 0x80000000u;
  std::memcpy(&wav[24], &rate, 4);
  try {
    audio::decode_wav(wav.data(), wav.size(), "r.wav");
    FAIL() << "accepted";
  } catch (const audio::AudioError& e) {
    EXPECT_STREQ(e.what(), "WAV r.wav: fmt chunk declares sample_rate 2147483648");
  }
}
