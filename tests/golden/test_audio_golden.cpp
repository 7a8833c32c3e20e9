// Audio in against transformers (tests/fixtures/golden, written by tools/make_fixtures.py):
// WhisperFeatureExtractor features within 1e-4 absolute, the audio tower's output within 1e-4
// relative (||a-b|| / ||b||), token counts, the scatter into the thinker's embeddings, and the
// thinker answering the spoken clip (logits within 1e-4 relative, identical greedy tokens).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "audio/io/wav.h"
#include "audio_input.h"
#include "backend.h"
#include "golden_util.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "model/audio_encoder.h"
#include "model/mel.h"
#include "model/thinker.h"
#include "omni/errors.h"
#include "omni/npy.h"

namespace fs = std::filesystem;
using namespace omni;

namespace {

const std::string kFixtures = OMNI_FIXTURES;

std::vector<std::string> clip_names() {
  std::vector<std::string> names;
  if (fs::is_directory(kFixtures + "/audio"))
    for (const auto& e : fs::directory_iterator(kFixtures + "/audio"))
      if (e.path().extension() == ".wav") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string wav_path(const std::string& clip) { return kFixtures + "/audio/" + clip + ".wav"; }
std::string features_path(const std::string& clip) { return kFixtures + "/golden/audio/" + clip + "/features.npy"; }
std::string model_dir(const std::string& model) { return kFixtures + "/models/" + model; }
std::string golden_dir(const std::string& model, const std::string& clip) {
  return kFixtures + "/golden/" + model + "/audio/" + clip;
}

MelFeatures mel_from_npy(const NpyArray& a) {
  MelFeatures m;
  m.bins = int(a.shape.at(0));
  m.frames = int(a.shape.at(1));
  m.data = a.f32;
  return m;
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return golden::rel_err(a.data(), b.data(), std::min(a.size(), b.size()));
}

struct LoadedModel {
  ModelConfig cfg;
  Checkpoint ck;
  std::unique_ptr<Backend> be = make_cpu_backend();
  explicit LoadedModel(const std::string& model)
      : cfg(ModelConfig::load(model_dir(model) + "/config.json")), ck(model_dir(model)) {}
};

// Encodes `mel` on the CPU backend; returns [N, output_dim] as floats.
std::vector<float> encode(LoadedModel& m, AudioEncoder& enc, const MelFeatures& mel) {
  const int n = enc.token_count(mel.frames);
  Tensor out = m.be->alloc({int64_t(n), int64_t(m.cfg.audio.output_dim)});
  enc.encode(mel, out);
  std::vector<float> host(size_t(out.numel()));
  m.be->download_f32(host.data(), out);
  return host;
}

void check_encoder(const std::string& model) {
  SCOPED_TRACE(model);
  ASSERT_TRUE(fs::is_directory(model_dir(model))) << model_dir(model) << " is missing";
  LoadedModel m(model);
  const auto names = clip_names();
  ASSERT_FALSE(names.empty()) << "no clips under " << kFixtures << "/audio";
  // One window per pass, so the longest clip also exercises the multi-pass path.
  AudioEncoder enc(*m.be, m.cfg.audio, load_audio_encoder_weights(m.ck, *m.be, m.cfg.audio), 1);
  MelFrontend front(MelConfig::load(model_dir(model) + "/preprocessor_config.json"));
  for (const std::string& clip : names) {
    SCOPED_TRACE(clip);
    const NpyArray feat = read_npy(features_path(clip));
    const NpyArray golden = read_npy(golden_dir(model, clip) + "/encoder_out.npy");
    const MelFeatures mel = mel_from_npy(feat);
    const int n = audio_token_count(mel.frames, m.cfg.audio);
    ASSERT_EQ(golden.shape, (std::vector<int64_t>{n, m.cfg.audio.output_dim}));
    const double err = relative_error(encode(m, enc, mel), golden.f32);
    EXPECT_LT(err, 1e-4) << "encoder on transformers' features";
    // The whole path from the WAV file: our features into our encoder.
    const std::vector<float> wave = audio::load_wav_mono(wav_path(clip));
    const double err_e2e = relative_error(encode(m, enc, front.compute(wave.data(), wave.size())), golden.f32);
    EXPECT_LT(err_e2e, 1e-4) << "encoder on our features";
    std::printf("[ audio ] %s %s: %d tokens, encoder rel err %.3g (HF features), %.3g (ours)\n", model.c_str(),
                clip.c_str(), n, err, err_e2e);
  }
}

}  // namespace

TEST(AudioGolden, MelFeaturesMatchWhisperFeatureExtractor) {
  const auto names = clip_names();
  ASSERT_FALSE(names.empty()) << "no clips under " << kFixtures << "/audio";
  MelFrontend front(MelConfig::load(model_dir("tiny-a") + "/preprocessor_config.json"));
  for (const std::string& clip : names) {
    SCOPED_TRACE(clip);
    const std::vector<float> wave = audio::load_wav_mono(wav_path(clip));
    const MelFeatures ours = front.compute(wave.data(), wave.size());
    const NpyArray golden = read_npy(features_path(clip));
    ASSERT_EQ(golden.shape, (std::vector<int64_t>{ours.bins, ours.frames}));
    double max_abs = 0;
    for (size_t i = 0; i < ours.data.size(); ++i)
      max_abs = std::max(max_abs, std::abs(double(ours.data[i]) - golden.f32[i]));
    EXPECT_LE(max_abs, 1e-4);
    std::printf("[ audio ] %s: %zu samples, %d frames, features max abs diff %.3g\n", clip.c_str(), wave.size(),
                ours.frames, max_abs);
  }
}

TEST(AudioGolden, EncoderMatchesTransformersTinyA) { check_encoder("tiny-a"); }
TEST(AudioGolden, EncoderMatchesTransformersTinyB) { check_encoder("tiny-b"); }

// The Session's wiring: encode once, then fill each prefill chunk's <|audio_pad|> rows (chunks of
// 7 rows here, so pad runs are split across chunks); other rows keep their embeddings.
TEST(AudioGolden, PrefillChunksGetTheEncodedRowsAtTheAudioPads) {
  const std::string model = "tiny-a";
  LoadedModel m(model);
  AudioInput input(*m.be, m.ck, m.cfg, model_dir(model), 512);
  for (const std::string& clip : clip_names()) {
    SCOPED_TRACE(clip);
    const NpyArray ids_npy = read_npy(golden_dir(model, clip) + "/prompt_ids.npy");
    const std::vector<int32_t> ids(ids_npy.i64.begin(), ids_npy.i64.end());
    const std::vector<float> wave = audio::load_wav_mono(wav_path(clip));
    const int pads = int(std::count(ids.begin(), ids.end(), m.cfg.ids.audio_pad));
    ASSERT_EQ(input.token_count(wave.size()), pads) << "prompt pads vs. audio_token_count";
    ASSERT_EQ(input.encode(wave.data(), wave.size()), pads);

    const int64_t S = int64_t(ids.size()), H = m.cfg.thinker.hidden_size, chunk = 7;
    Tensor x = m.be->alloc({chunk, H});
    std::vector<float> scattered, host(size_t(chunk * H));
    for (int64_t begin = 0; begin < S; begin += chunk) {
      const int64_t n = std::min(chunk, S - begin);
      for (size_t i = 0; i < host.size(); ++i) host[i] = float(begin) + float(i % 97);
      m.be->upload(x, host.data());
      input.fill_prefill_chunk(ids, size_t(begin), x.rows(0, n));
      std::vector<float> after(size_t(chunk * H));
      m.be->download_f32(after.data(), x);
      for (int64_t r = 0; r < n; ++r) {
        const bool is_pad = ids[size_t(begin + r)] == m.cfg.ids.audio_pad;
        for (int64_t c = 0; c < H; ++c) {
          const size_t k = size_t(r * H + c);
          if (is_pad) scattered.push_back(after[k]);
          else ASSERT_EQ(after[k], host[k]) << "row " << begin + r << " is not an audio pad but was overwritten";
        }
      }
    }
    const NpyArray golden = read_npy(golden_dir(model, clip) + "/encoder_out.npy");
    EXPECT_LT(relative_error(scattered, golden.f32), 1e-4);
    // A prompt with the wrong number of pads is an error, not a silent misalignment (docs/model.md §9.9).
    std::vector<int32_t> fewer = ids;
    fewer.erase(std::find(fewer.begin(), fewer.end(), m.cfg.ids.audio_pad));
    const size_t first_pad = size_t(std::find(fewer.begin(), fewer.end(), m.cfg.ids.audio_pad) - fewer.begin());
    EXPECT_THROW(input.fill_prefill_chunk(fewer, first_pad, x.rows(0, 1)), Error);
    // Chunks without pads are left alone whatever is encoded (text-only prefill chunks).
    EXPECT_NO_THROW(input.fill_prefill_chunk(fewer, 0, x.rows(0, 1)));
  }
  // Longer than the room made at load: refused before any prompt is built.
  EXPECT_THROW(input.token_count(16000 * 40), Error);

  // Two spoken turns in one prompt (a re-prefilled history): clip rows follow in prompt order.
  std::vector<int32_t> ids;
  std::vector<float> expected;
  input.clear();
  for (const std::string& clip : {std::string("short_0p73s"), std::string("mid_3p37s")}) {
    const NpyArray turn = read_npy(golden_dir(model, clip) + "/prompt_ids.npy");
    ids.insert(ids.end(), turn.i64.begin(), turn.i64.end());
    const NpyArray golden = read_npy(golden_dir(model, clip) + "/encoder_out.npy");
    expected.insert(expected.end(), golden.f32.begin(), golden.f32.end());
    const std::vector<float> wave = audio::load_wav_mono(wav_path(clip));
    input.append(wave.data(), wave.size());
  }
  const int64_t H = m.cfg.thinker.hidden_size, S = int64_t(ids.size());
  Tensor x = m.be->alloc({S, H});
  input.fill_prefill_chunk(ids, 0, x);
  std::vector<float> all(size_t(S * H)), scattered;
  m.be->download_f32(all.data(), x);
  for (int64_t r = 0; r < S; ++r)
    if (ids[size_t(r)] == m.cfg.ids.audio_pad) scattered.insert(scattered.end(), &all[size_t(r * H)], &all[size_t((r + 1) * H)]);
  EXPECT_LT(relative_error(scattered, expected), 1e-4);
}

namespace {

// A spoken question end to end below the Session: WAV -> features -> encoder -> audio_pad rows
// of prefill chunks (32 rows, so the pads straddle chunk boundaries) -> thinker -> greedy.
void check_spoken_answer(const std::string& model) {
  SCOPED_TRACE(model);
  LoadedModel m(model);
  const int chunk = 32;
  Thinker thinker(m.ck, *m.be, m.cfg, chunk);
  AudioInput input(*m.be, m.ck, m.cfg, model_dir(model), 512);
  for (const std::string& clip : clip_names()) {
    SCOPED_TRACE(clip);
    const std::string dir = golden_dir(model, clip);
    const NpyArray ids_npy = read_npy(dir + "/prompt_ids.npy"), greedy = read_npy(dir + "/greedy.npy");
    const NpyArray cols = read_npy(dir + "/logit_cols.npy"), sub = read_npy(dir + "/logits_sub.npy");
    std::vector<int32_t> ids(ids_npy.i64.begin(), ids_npy.i64.end());
    const int steps = int(greedy.numel());
    const std::vector<float> wave = audio::load_wav_mono(wav_path(clip));
    input.encode(wave.data(), wave.size());

    const int64_t H = m.cfg.thinker.hidden_size, V = m.cfg.thinker.vocab_size;
    const int capacity = int(ids.size()) + steps;
    std::vector<KVCache> caches = alloc_kv_caches(*m.be, m.cfg.thinker, capacity);
    Tensor ids_t = m.be->alloc({chunk}, DType::I32), pos_t = m.be->alloc({chunk}, DType::I32);
    Tensor x = m.be->alloc({chunk, H}), logits = m.be->alloc({1, V});
    std::vector<int32_t> pos(chunk);
    auto run = [&](size_t begin, int n) {  // rows ids[begin, begin + n) at positions begin..
      for (int i = 0; i < n; ++i) pos[size_t(i)] = int32_t(begin) + i;
      m.be->upload(ids_t.rows(0, n), ids.data() + begin);
      m.be->upload(pos_t.rows(0, n), pos.data());
      thinker.embed(ids_t.rows(0, n), x.rows(0, n));
      input.fill_prefill_chunk(ids, begin, x.rows(0, n));
      thinker.forward(x.rows(0, n), pos_t.rows(0, n), caches);
      thinker.logits(x.rows(n - 1, 1), logits);
    };
    for (size_t b = 0; b < ids.size(); b += chunk) run(b, int(std::min<size_t>(chunk, ids.size() - b)));
    std::vector<float> row(static_cast<size_t>(V));
    double worst = 0;
    for (int s = 0; s < steps; ++s) {
      m.be->download_f32(row.data(), logits);
      std::vector<float> mine;
      for (int64_t c : cols.i64) mine.push_back(row[size_t(c)]);
      const std::vector<float> ref(sub.f32.begin() + long(s) * long(cols.numel()),
                                   sub.f32.begin() + long(s + 1) * long(cols.numel()));
      const double err = relative_error(mine, ref);
      worst = std::max(worst, err);
      EXPECT_LT(err, 1e-4) << "logits step " << s;
      const int32_t tok = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
      ASSERT_EQ(tok, int32_t(greedy.i64[size_t(s)])) << "greedy token at step " << s;
      ids.push_back(tok);  // the fixture's run feeds every token back (never stops at <|im_end|>)
      if (s + 1 < steps) run(ids.size() - 1, 1);
    }
    std::printf("[ audio ] %s %s: %d greedy tokens match, worst logits rel err %.3g\n", model.c_str(), clip.c_str(),
                steps, worst);
  }
}

}  // namespace

TEST(AudioGolden, ThinkerAnswersSpokenClipLikeTransformersTinyA) { check_spoken_answer("tiny-a"); }
TEST(AudioGolden, ThinkerAnswersSpokenClipLikeTransformersTinyB) { check_spoken_answer("tiny-b"); }
