// The tiny transformers fixtures (tests/fixtures, tools/make_fixtures.py) end to end through
// the public API on device "cuda": greedy tokens identical to transformers and to the CPU
// engine; logits within 2e-2 relative (kTolModel) of both, per step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "backend.h"
#include "omni/engine.h"
#include "omni/npy.h"

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
// Overridable so that a test binary built elsewhere can run on a GPU host (tests/gpu/run.sh).
std::string fixtures() { return env_or("OMNI_GPU_FIXTURES", OMNI_FIXTURES); }
std::string models() { return env_or("OMNI_GPU_MODELS", std::string(OMNI_BUILD_DIR) + "/models"); }

double rel_err(const std::vector<float>& a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Generated {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};

Generated generate(omni::Model& m, const std::vector<int32_t>& prompt, int steps) {
  Generated r;
  omni::Callbacks cb;
  cb.on_logits = [&](const float* l, size_t n) { r.logits.emplace_back(l, l + n); };
  omni::GenerateOptions opt;
  opt.max_new_tokens = steps;
  auto session = m.new_session();
  r.tokens = session->generate_from_ids(prompt, opt, cb).tokens;
  return r;
}

TEST(CudaFixtures, TinyModelsMatchTransformersAndCpu) {
  if (!omni::cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
  int cases = 0;
  for (const std::string name : {"tiny-a", "tiny-b"}) {
    const std::string mdir = models() + "/" + name;
    ASSERT_TRUE(std::filesystem::exists(mdir + "/config.json")) << mdir;
    omni::LoadOptions lc, lg;
    lc.model_dir = lg.model_dir = mdir;
    lc.context_tokens = lg.context_tokens = 512;
    lg.device = "cuda";
    auto cpu = omni::Model::load(lc);
    auto gpu = omni::Model::load(lg);
    const std::string text = fixtures() + "/golden/" + name + "/text";
    std::vector<std::string> dirs;
    for (auto& e : std::filesystem::directory_iterator(text))
      if (e.is_directory()) dirs.push_back(e.path().string());
    std::sort(dirs.begin(), dirs.end());
    for (const std::string& dir : dirs) {
      SCOPED_TRACE(dir);
      const omni::NpyArray prompt = omni::read_npy(dir + "/prompt_ids.npy");
      const omni::NpyArray greedy = omni::read_npy(dir + "/greedy.npy");
      const omni::NpyArray cols = omni::read_npy(dir + "/logit_cols.npy");
      const omni::NpyArray sub = omni::read_npy(dir + "/logits_sub.npy");
      std::vector<int32_t> ids(prompt.i64.begin(), prompt.i64.end());
      // Steps up to the first <|im_end|> the engine would stop at; both runs stop alike.
      const int steps = int(greedy.numel());
      const Generated c = generate(*cpu, ids, steps), g = generate(*gpu, ids, steps);
      ASSERT_EQ(g.tokens, c.tokens) << "greedy tokens, CUDA vs CPU";
      ASSERT_EQ(g.logits.size(), c.logits.size());
      for (size_t s = 0; s < g.tokens.size(); ++s) {
        EXPECT_EQ(g.tokens[s], int32_t(greedy.i64[s])) << "step " << s << " vs transformers";
        EXPECT_LT(rel_err(g.logits[s], c.logits[s].data(), c.logits[s].size()), 2e-2) << "step " << s << " vs CPU";
        const size_t K = size_t(cols.numel());
        std::vector<float> mine(K);
        for (size_t k = 0; k < K; ++k) mine[k] = g.logits[s][size_t(cols.i64[k])];
        EXPECT_LT(rel_err(mine, sub.f32.data() + s * K, K), 2e-2) << "step " << s << " vs transformers";
      }
      ++cases;
    }
  }
  EXPECT_GE(cases, 6);
}

}  // namespace

// Session::rollback on the CUDA backend (captured decode graph, device KV cache): a turn that ran, with
// speech, and was rolled back leaves no trace; the next turn is bit-identical to a session that never ran it.
TEST(CudaFixtures, RolledBackTurnLeavesNoTrace) {
  if (!omni::cuda_backend_available()) GTEST_SKIP() << "no CUDA device";
  omni::LoadOptions lo;
  lo.model_dir = models() + "/tiny-a";
  lo.context_tokens = 512;
  lo.device = "cuda";
  auto model = omni::Model::load(lo);
  omni::GenerateOptions opt;
  opt.max_new_tokens = 8;
  opt.speak = true;
  opt.max_speech_frames = 8;
  struct Turn {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;
    std::vector<float> audio;
  };
  auto run = [&](omni::Session& s, const std::string& text) {
    Turn t;
    omni::Callbacks cb;
    cb.on_logits = [&](const float* l, size_t n) { t.logits.emplace_back(l, l + n); };
    cb.on_audio = [&](const float* a, size_t n) { t.audio.insert(t.audio.end(), a, a + n); };
    omni::UserTurn u;
    u.text = text;
    t.tokens = s.respond(u, opt, cb).tokens;
    return t;
  };
  auto plain = model->new_session({.system_prompt = "Be brief."});
  run(*plain, "First question");
  const Turn want = run(*plain, "Second question");
  auto spec = model->new_session({.system_prompt = "Be brief."});
  run(*spec, "First question");
  const omni::SessionMark m = spec->mark();
  run(*spec, "A different, longer question that is taken back");
  spec->rollback(m);
  const Turn got = run(*spec, "Second question");
  EXPECT_EQ(got.tokens, want.tokens);
  ASSERT_EQ(got.logits.size(), want.logits.size());
  for (size_t i = 0; i < got.logits.size(); ++i) EXPECT_EQ(got.logits[i], want.logits[i]) << "step " << i;
  EXPECT_FALSE(got.audio.empty());
  EXPECT_EQ(got.audio, want.audio);
  EXPECT_EQ(spec->context_used(), plain->context_used());
}
