// Golden tests of the speech path against transformers 5.17 (tiny checkpoints, float32).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "checkpoint.h"
#include "code2wav.h"
#include "model_config.h"
#include "npy.h"
#include "speech.h"

namespace omni {
namespace {

std::string ref_dir() {
  const char* e = std::getenv("OMNI_SPEECH_REF");
  return e ? e : "/tmp/speechref";
}

double max_rel_diff(const std::vector<float>& got, const std::vector<float>& want, double* max_abs = nullptr) {
  double md = 0, mw = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    md = std::max(md, std::fabs(double(got[i]) - double(want[i])));
    mw = std::max(mw, std::fabs(double(want[i])));
  }
  if (max_abs) *max_abs = md;
  return md / std::max(mw, 1e-30);
}

std::vector<int32_t> as_i32(const NpyArray& a) { return std::vector<int32_t>(a.i64.begin(), a.i64.end()); }

TEST(SpeechScratch, Code2WavOneShotAndChunked) {
  const std::string d = ref_dir();
  if (!std::filesystem::exists(d + "/tiny/config.json")) GTEST_SKIP() << "no scratch reference";
  auto be = make_cpu_backend();
  ModelConfig cfg = ModelConfig::load(d + "/tiny/config.json");
  Checkpoint ck(d + "/tiny");
  Code2Wav c2w(*be, ck, cfg.code2wav);
  for (const char* name : {"7", "350"}) {
    NpyArray codes = read_npy(d + "/c2w_codes" + name + ".npy");
    const int T = int(codes.shape[1]);
    if (T > 350) continue;
    Code2WavDecoder dec(c2w, T, T);
    NpyArray want = read_npy(d + "/c2w_oneshot" + std::string(name) + ".npy");
    std::vector<float> got = code2wav_decode(dec, as_i32(codes), T);
    ASSERT_EQ(got.size(), want.f32.size());
    double abs = 0, rel = max_rel_diff(got, want.f32, &abs);
    std::printf("code2wav one-shot T=%d: max rel %.3g abs %.3g\n", T, rel, abs);
    EXPECT_LT(rel, 1e-4);
    Code2WavDecoder small(c2w, 3, 400);
    std::vector<float> streamed = code2wav_decode(small, as_i32(codes), T);
    ASSERT_EQ(streamed, got);
  }
}

}  // namespace
}  // namespace omni

namespace omni {
namespace {

struct ScratchModel {
  std::unique_ptr<Backend> be = make_cpu_backend();
  ModelConfig cfg;
  std::unique_ptr<Checkpoint> ck;
  std::unique_ptr<SpeechModel> speech;
  Tensor embed_table;
  explicit ScratchModel(const std::string& dir, int push_frames) {
    cfg = ModelConfig::load(dir + "/config.json");
    ck = std::make_unique<Checkpoint>(dir);
    speech = std::make_unique<SpeechModel>(*ck, *be, cfg, 256, 64, push_frames);
    embed_table = be->weight(ck->get("thinker.model.embed_tokens.weight",
                                     {cfg.thinker.vocab_size, cfg.thinker.hidden_size}));
  }
};

TEST(SpeechScratch, PipelineMatchesTransformers) {
  const std::string d = ref_dir();
  if (!std::filesystem::exists(d + "/tiny/config.json")) GTEST_SKIP() << "no scratch reference";
  ScratchModel M(d + "/tiny", 2);
  const auto prompt = as_i32(read_npy(d + "/prompt_ids.npy"));
  const auto seq = as_i32(read_npy(d + "/sequences.npy"));
  NpyArray hidden = read_npy(d + "/thinker_hidden.npy");
  const int Ht = M.cfg.thinker.hidden_size;
  std::vector<int> users = talker_user_positions(prompt, M.cfg.ids);
  std::vector<int32_t> user_ids;
  std::vector<float> user_hidden;
  for (int p : users) {
    user_ids.push_back(prompt[size_t(p)]);
    user_hidden.insert(user_hidden.end(), hidden.f32.begin() + long(p) * Ht, hidden.f32.begin() + long(p + 1) * Ht);
  }
  Tensor uh = M.be->alloc({int64_t(users.size()), Ht});
  M.be->upload(uh, user_hidden.data());
  // the last '<|im_start|> assistant \n'
  std::vector<int32_t> header(prompt.end() - 3, prompt.end());
  std::vector<float> audio;
  SpeechPipeline sp(*M.speech, M.embed_table, [&](const float* s, size_t n) { audio.insert(audio.end(), s, s + n); });
  sp.keep_inputs_for_tests(true);
  SpeechOptions opt;
  opt.speaker = "Chelsie";
  opt.greedy = true;
  opt.max_frames = 29;  // HF talker_max_new_tokens = 30
  sp.start(user_ids, uh, header, opt);
  // HF never feeds the last generated token: emulate with all tokens but the last.
  for (size_t i = prompt.size(); i + 1 < seq.size(); ++i) sp.on_thinker_token(seq[i]);
  sp.finish_text();
  NpyArray want_prefill = read_npy(d + "/talker_prefill.npy");
  double abs = 0, rel = max_rel_diff(sp.prefill_rows(), want_prefill.f32, &abs);
  ASSERT_EQ(sp.prefill_rows().size(), want_prefill.f32.size());
  std::printf("talker prefill: max rel %.3g abs %.3g\n", rel, abs);
  EXPECT_LT(rel, 1e-4);
  NpyArray want_trailing = read_npy(d + "/talker_trailing.npy");
  std::vector<float> got_trailing(sp.text_rows().begin(),
                                  sp.text_rows().begin() + long(std::min(sp.text_rows().size(), want_trailing.f32.size())));
  rel = max_rel_diff(got_trailing, want_trailing.f32, &abs);
  std::printf("trailing text: max rel %.3g abs %.3g\n", rel, abs);
  EXPECT_LT(rel, 1e-4);
  NpyArray codes = read_npy(d + "/codes.npy");
  const int T = int(codes.shape[1]), Q = int(codes.shape[0]);
  ASSERT_EQ(int(sp.frames().size()), T);
  int mismatches = 0;
  for (int f = 0; f < T; ++f)
    for (int q = 0; q < Q; ++q) mismatches += sp.frames()[size_t(f)][size_t(q)] != int32_t(codes.i64[size_t(q * T + f)]);
  EXPECT_EQ(mismatches, 0);
  NpyArray wav = read_npy(d + "/waveform.npy");
  ASSERT_EQ(audio.size(), wav.f32.size());
  rel = max_rel_diff(audio, wav.f32, &abs);
  std::printf("waveform (%zu samples): max rel %.3g abs %.3g\n", audio.size(), rel, abs);
  EXPECT_LT(rel, 1e-3);
}

}  // namespace
}  // namespace omni
