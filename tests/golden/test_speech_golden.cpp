// Golden tests of speech output against transformers 5.17 (tiny-a checkpoint, float32 weights,
// eager kernels): talker prefill construction, codec codes, waveform, code2wav one-shot and
// HF-chunked decoding, and streamed == one-shot. Fixtures: tools/make_fixtures.py (speech cases)
// and tools/make_speech_chunk_fixture.py (chunked code2wav).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "audio/io/wav.h"
#include "audio_input.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "model/code2wav.h"
#include "model/thinker.h"
#include "omni/npy.h"
#include "speech.h"

namespace omni {
namespace {

const char* const kModels[] = {"tiny-a", "tiny-b"};  // tiny-a is sharded, tiny-b a single file
std::string model_dir(const std::string& model) { return std::string(OMNI_FIXTURES) + "/models/" + model; }
std::string speech_dir(const std::string& model) { return std::string(OMNI_FIXTURES) + "/golden/" + model + "/speech/"; }

// max |got - want| / max |want| over the common prefix of n values (all when n < 0).
double max_rel_diff(const std::vector<float>& got, const std::vector<float>& want, long n = -1) {
  const size_t m = n < 0 ? std::min(got.size(), want.size()) : size_t(n);
  double md = 0, mw = 0;
  for (size_t i = 0; i < m; ++i) {
    md = std::max(md, std::fabs(double(got[i]) - double(want[i])));
    mw = std::max(mw, std::fabs(double(want[i])));
  }
  return md / std::max(mw, 1e-30);
}

std::vector<int32_t> as_i32(const NpyArray& a) { return std::vector<int32_t>(a.i64.begin(), a.i64.end()); }

struct Tiny {
  std::unique_ptr<Backend> be = make_cpu_backend();
  std::string name;
  ModelConfig cfg;
  Checkpoint ck;
  Tensor embed_table;
  explicit Tiny(const std::string& model)
      : name(model), cfg(ModelConfig::load(model_dir(model) + "/config.json")), ck(model_dir(model)) {
    embed_table = be->weight(ck.get("thinker.model.embed_tokens.weight", {cfg.thinker.vocab_size, cfg.thinker.hidden_size}));
  }
};

// ---- code2wav ----

TEST(SpeechGolden, Code2WavOneShotMatchesTransformers) {
  for (const char* model : kModels) {
  Tiny m(model);
  Code2Wav c2w(*m.be, m.ck, m.cfg.code2wav);
  for (const char* name : {"text_ethan", "audio_aiden"}) {
    const NpyArray codes = read_npy(speech_dir(model) + name + "/codes.npy");
    const NpyArray want = read_npy(speech_dir(model) + name + "/code2wav_oneshot.npy");
    const int T = int(codes.shape[1]);
    Code2WavDecoder dec(c2w, T, T);  // the whole sequence in one push, like HF
    const std::vector<float> got = code2wav_decode(dec, as_i32(codes), T);
    ASSERT_EQ(got.size(), want.f32.size()) << name;
    const double rel = max_rel_diff(got, want.f32);
    std::printf("[%s %s] code2wav one-shot, %d frames: max rel diff %.3g\n", model, name, T, rel);
    EXPECT_LT(rel, 1e-4) << model << " " << name;
  }
  }
}

TEST(SpeechGolden, Code2WavStreamedEqualsOneShot) {
  Tiny m("tiny-a");
  Code2Wav c2w(*m.be, m.ck, m.cfg.code2wav);
  const NpyArray codes = read_npy(speech_dir("tiny-a") + "audio_aiden/codes.npy");
  const int T = int(codes.shape[1]), Q = int(codes.shape[0]);
  Code2WavDecoder whole(c2w, T, T);
  const std::vector<float> oneshot = code2wav_decode(whole, as_i32(codes), T);
  ASSERT_EQ(oneshot.size(), size_t(T) * 1920 - 555);
  for (int push : {1, 2, 7}) {
    Code2WavDecoder dec(c2w, push, 325);
    Code2WavStream stream(dec, 300, 25, push);
    std::vector<float> streamed;
    std::vector<int32_t> frame(static_cast<size_t>(Q));
    for (int f = 0; f < T; ++f) {
      for (int q = 0; q < Q; ++q) frame[size_t(q)] = int32_t(codes.i64[size_t(q * T + f)]);
      stream.add_frame(frame.data(), streamed);
      // Samples are final as soon as they appear: after f+1 frames (pushed), a one-shot decode of
      // those frames has exactly 1920*(f+1) - 555 samples.
      if ((f + 1) % push == 0) {
        EXPECT_EQ(streamed.size(), size_t(f + 1) * 1920 - 555) << "push " << push;
      }
    }
    stream.flush(streamed);
    EXPECT_EQ(streamed, oneshot) << "push " << push << ": streamed output differs from one-shot";
  }
}

TEST(SpeechGolden, Code2WavChunkedMatchesTransformers) {
  Tiny m("tiny-a");
  Code2Wav c2w(*m.be, m.ck, m.cfg.code2wav);
  const std::string dir = std::string(OMNI_FIXTURES) + "/golden/tiny-a/speech_code2wav/chunked_t305/";
  const NpyArray codes = read_npy(dir + "codes.npy");
  const NpyArray want = read_npy(dir + "chunked.npy");
  const int T = int(codes.shape[1]), Q = int(codes.shape[0]);
  Code2WavDecoder dec(c2w, 25, 325);
  const std::vector<float> got = code2wav_chunked_decode(dec, as_i32(codes), T, 300, 25);
  ASSERT_EQ(got.size(), want.f32.size());
  ASSERT_EQ(got.size(), size_t(T) * 1920 - 2 * 555);
  const double rel = max_rel_diff(got, want.f32);
  std::printf("code2wav chunked (300/25), %d frames: max rel diff %.3g\n", T, rel);
  EXPECT_LT(rel, 1e-4);
  Code2WavStream stream(dec, 300, 25, 4);
  std::vector<float> streamed;
  std::vector<int32_t> frame(static_cast<size_t>(Q));
  for (int f = 0; f < T; ++f) {
    for (int q = 0; q < Q; ++q) frame[size_t(q)] = int32_t(codes.i64[size_t(q * T + f)]);
    stream.add_frame(frame.data(), streamed);
  }
  stream.flush(streamed);
  EXPECT_EQ(streamed, got) << "streamed HF-chunked output differs from chunked_decode";
}

// ---- talker + code predictor + code2wav through SpeechPipeline ----

struct Case {
  NpyArray prompt, thinker, prefill, trailing, codes, wav, talker_tokens;
  int talker_max_new_tokens = 0;
  bool eos_reached = false;
  std::string audio_clip;  // empty: text-only prompt
  Case(const std::string& model, const std::string& name) {
    const std::string d = speech_dir(model) + name + "/";
    std::ifstream meta(d + "meta.json");
    const nlohmann::json j = nlohmann::json::parse(meta);
    talker_max_new_tokens = j.at("talker_max_new_tokens").get<int>();
    eos_reached = j.at("eos_reached").get<bool>();
    if (j.at("audio_clip").is_string()) audio_clip = j.at("audio_clip").get<std::string>();
    prompt = read_npy(d + "prompt_ids.npy");
    thinker = read_npy(d + "thinker_tokens.npy");
    prefill = read_npy(d + "talker_prefill.npy");
    trailing = read_npy(d + "talker_trailing.npy");
    codes = read_npy(d + "codes.npy");
    wav = read_npy(d + "waveform.npy");
    talker_tokens = read_npy(d + "talker_tokens.npy");
  }
};

// hidden_states[accept_hidden_layer] of the thinker over `prompt` ([P, hidden], host), with the
// clip encoded into its <|audio_pad|> rows: what a Session captures during its prefill.
std::vector<float> thinker_accept_rows(Tiny& m, const std::vector<int32_t>& prompt, const std::string& clip) {
  const int P = int(prompt.size());
  const int64_t H = m.cfg.thinker.hidden_size;
  Thinker thinker(m.ck, *m.be, m.cfg, P);
  AudioInput input(*m.be, m.ck, m.cfg, model_dir(m.name), 256);
  const std::vector<float> wave = audio::load_wav_mono(std::string(OMNI_FIXTURES) + "/audio/" + clip + ".wav");
  input.encode(wave.data(), wave.size());
  std::vector<KVCache> caches = alloc_kv_caches(*m.be, m.cfg.thinker, P);
  Tensor ids = m.be->alloc({P}, DType::I32), pos = m.be->alloc({P}, DType::I32);
  Tensor x = m.be->alloc({P, H}), capture = m.be->alloc({P, H});
  std::vector<int32_t> positions(static_cast<size_t>(P));
  for (int i = 0; i < P; ++i) positions[size_t(i)] = i;
  m.be->upload(ids, prompt.data());
  m.be->upload(pos, positions.data());
  thinker.embed(ids, x);
  input.fill_prefill_chunk(prompt, 0, x);
  thinker.forward(x, pos, caches, capture, m.cfg.talker.accept_hidden_layer);
  std::vector<float> host(size_t(P * H));
  m.be->download_f32(host.data(), capture);
  return host;
}

struct SpeechRun {
  std::vector<float> audio;
  std::unique_ptr<SpeechPipeline> sp;
  std::vector<int> user_positions;
};

// Runs the pipeline on a fixture case. `feed` thinker tokens are given one by one, then
// finish_text(). `prompt_hidden` [P, hidden]: the thinker's accept-layer rows over the prompt
// (needed when it has audio placeholders).
SpeechRun run_case(Tiny& m, SpeechModel& speech, const Case& c, const std::string& speaker, size_t feed,
                   const std::vector<float>& prompt_hidden = {}) {
  SpeechRun r;
  const std::vector<int32_t> prompt = as_i32(c.prompt);
  r.user_positions = talker_user_positions(prompt, m.cfg.ids);
  std::vector<int32_t> user_ids;
  for (int p : r.user_positions) user_ids.push_back(prompt[size_t(p)]);
  const std::vector<int32_t> header(prompt.end() - 3, prompt.end());
  Tensor hidden;  // accept-layer rows of the user part, from the thinker's prefill over the prompt
  if (!prompt_hidden.empty()) {
    const int64_t H = m.cfg.thinker.hidden_size;
    std::vector<float> rows;
    for (int p : r.user_positions)
      rows.insert(rows.end(), prompt_hidden.begin() + long(p) * H, prompt_hidden.begin() + long(p + 1) * H);
    hidden = m.be->alloc({int64_t(user_ids.size()), H});
    m.be->upload(hidden, rows.data());
  }
  r.sp = std::make_unique<SpeechPipeline>(speech, m.embed_table,
                                          [&r](const float* s, size_t n) { r.audio.insert(r.audio.end(), s, s + n); });
  r.sp->keep_inputs_for_tests(true);
  SpeechOptions opt;
  opt.speaker = speaker;
  opt.sampling.greedy = true;
  opt.max_frames = c.talker_max_new_tokens - 1;  // HF's limit counts the final (code-less) token
  r.sp->start(user_ids, hidden, header, opt);
  for (size_t i = 0; i < feed; ++i) r.sp->on_thinker_token(int32_t(c.thinker.i64[i]));
  r.sp->finish_text();
  return r;
}

int code_mismatches(const SpeechPipeline& sp, const NpyArray& codes, int frames) {
  const int T = int(codes.shape[1]), Q = int(codes.shape[0]);
  int bad = 0;
  for (int f = 0; f < frames; ++f)
    for (int q = 0; q < Q; ++q) bad += sp.frames()[size_t(f)][size_t(q)] != int32_t(codes.i64[size_t(q * T + f)]);
  return bad;
}

TEST(SpeechGolden, TextPromptMatchesTransformers) {
  for (const char* model : kModels) {
  SCOPED_TRACE(model);
  Tiny m(model);
  SpeechModel speech(m.ck, *m.be, m.cfg, 256, 64, 2);
  Case c(model, "text_ethan");
  // The thinker stopped on <|im_end|>: every token is fed, as in a live session.
  SpeechRun r = run_case(m, speech, c, "Ethan", c.thinker.i64.size());
  ASSERT_EQ(r.sp->prefill_rows().size(), c.prefill.f32.size());
  const double prefill_rel = max_rel_diff(r.sp->prefill_rows(), c.prefill.f32);
  const double trailing_rel = max_rel_diff(r.sp->text_rows(), c.trailing.f32, long(c.trailing.f32.size()));
  std::printf("[%s text_ethan] talker prefill max rel %.3g, trailing text max rel %.3g\n", model, prefill_rel,
              trailing_rel);
  EXPECT_LT(prefill_rel, 1e-4);
  ASSERT_GE(r.sp->text_rows().size(), c.trailing.f32.size());
  EXPECT_LT(trailing_rel, 1e-4);
  EXPECT_EQ(std::vector<int32_t>(r.sp->talker_tokens()), as_i32(c.talker_tokens));
  ASSERT_EQ(r.sp->frames().size(), size_t(c.codes.shape[1]));
  EXPECT_EQ(code_mismatches(*r.sp, c.codes, int(c.codes.shape[1])), 0);
  EXPECT_EQ(r.sp->reached_eos(), c.eos_reached);
  ASSERT_EQ(r.audio.size(), c.wav.f32.size());
  const double wav_rel = max_rel_diff(r.audio, c.wav.f32);
  std::printf("[%s text_ethan] %zu frames, codes identical; waveform max rel %.3g\n", model, r.sp->frames().size(),
              wav_rel);
  EXPECT_LT(wav_rel, 1e-3);
  }
}

TEST(SpeechGolden, AudioPromptMatchesTransformers) {
  for (const char* model : kModels) {
  SCOPED_TRACE(model);
  Tiny m(model);
  SpeechModel speech(m.ck, *m.be, m.cfg, 256, 64, 3);
  Case c(model, "audio_aiden");
  const size_t H = size_t(m.cfg.talker.text.hidden_size);
  // The thinker hit its token limit: HF does not speak the last token, so feed all but it.
  const std::vector<float> hidden = thinker_accept_rows(m, as_i32(c.prompt), c.audio_clip);
  SpeechRun r = run_case(m, speech, c, "Aiden", c.thinker.i64.size() - 1, hidden);
  ASSERT_EQ(r.sp->prefill_rows().size(), c.prefill.f32.size());
  const double prefill_rel = max_rel_diff(r.sp->prefill_rows(), c.prefill.f32);
  // The audio placeholder rows alone (hidden_projection of the thinker's accept-layer states).
  const std::vector<int32_t> prompt = as_i32(c.prompt);
  std::vector<float> got_mm, want_mm;
  for (size_t row = 0; row < r.user_positions.size(); ++row) {
    if (prompt[size_t(r.user_positions[row])] != m.cfg.ids.audio_pad) continue;
    got_mm.insert(got_mm.end(), r.sp->prefill_rows().begin() + long(row * H), r.sp->prefill_rows().begin() + long((row + 1) * H));
    want_mm.insert(want_mm.end(), c.prefill.f32.begin() + long(row * H), c.prefill.f32.begin() + long((row + 1) * H));
  }
  ASSERT_FALSE(got_mm.empty());
  const double mm_rel = max_rel_diff(got_mm, want_mm);
  std::printf("[%s audio_aiden] talker prefill max rel %.3g (audio rows: %zu, max rel %.3g)\n", model, prefill_rel,
              got_mm.size() / H, mm_rel);
  EXPECT_LT(prefill_rel, 1e-4);
  EXPECT_LT(mm_rel, 1e-4);
  EXPECT_LT(max_rel_diff(r.sp->text_rows(), c.trailing.f32, long(c.trailing.f32.size())), 1e-4);
  const int T = int(c.codes.shape[1]);
  ASSERT_EQ(int(r.sp->frames().size()), T);
  EXPECT_EQ(code_mismatches(*r.sp, c.codes, T), 0);
  EXPECT_EQ(r.sp->reached_eos(), c.eos_reached);
  ASSERT_EQ(r.audio.size(), c.wav.f32.size());
  const double wav_rel = max_rel_diff(r.audio, c.wav.f32);
  std::printf("[%s audio_aiden] %d frames, codes identical; waveform max rel %.3g\n", model, T, wav_rel);
  EXPECT_LT(wav_rel, 1e-3);

  // omnid speaks every generated token, also the last one at the token limit (HF drops it):
  // trailing text differs from HF at row K-1 (K = HF's trailing rows), so frames 0..K-1 and the
  // samples that depend only on them must still match.
  std::vector<float> before = r.audio;
  SpeechRun all = run_case(m, speech, c, "Aiden", c.thinker.i64.size(), hidden);
  const int K = int(c.trailing.shape[0]);
  ASSERT_GE(int(all.sp->frames().size()), K);
  EXPECT_EQ(code_mismatches(*all.sp, c.codes, K), 0);
  const long same = long(K) * 1920 - 555;
  ASSERT_GE(long(all.audio.size()), same);
  const double prefix_rel = max_rel_diff(all.audio, c.wav.f32, same);
  std::printf("[%s audio_aiden, last token spoken] first %d frames identical; first %ld samples max rel %.3g\n", model, K,
              same, prefix_rel);
  EXPECT_LT(prefix_rel, 1e-3);
  EXPECT_GT(all.sp->text_rows().size(), c.trailing.f32.size()) << "the last text token was not fed to the talker";
  }
}

}  // namespace
}  // namespace omni

namespace omni {
namespace {

// A multi-turn text chat: the talker prefill holds both user turns and neither the system turn
// nor the earlier assistant turn (tools/make_speech_multiturn_fixture.py).
TEST(SpeechGolden, MultiTurnPrefillHoldsEveryUserTurn) {
  for (const char* model : kModels) {
    SCOPED_TRACE(model);
    const std::string d = std::string(OMNI_FIXTURES) + "/golden/" + model + "/speech_multiturn/text_chelsie/";
    Tiny m(model);
    SpeechModel speech(m.ck, *m.be, m.cfg, 256, 64, 2);
    std::ifstream in(d + "meta.json");
    const nlohmann::json meta = nlohmann::json::parse(in);
    const std::vector<int32_t> prompt = as_i32(read_npy(d + "prompt_ids.npy"));
    const NpyArray thinker = read_npy(d + "thinker_tokens.npy"), prefill = read_npy(d + "talker_prefill.npy");
    const NpyArray codes = read_npy(d + "codes.npy"), wav = read_npy(d + "waveform.npy");
    const std::vector<int> users = talker_user_positions(prompt, m.cfg.ids);
    std::vector<int32_t> user_ids;
    for (int p : users) user_ids.push_back(prompt[size_t(p)]);
    ASSERT_EQ(user_ids.size() + 9, size_t(meta.at("prefill_rows").get<int>()));
    std::vector<float> audio;
    SpeechPipeline sp(speech, m.embed_table, [&](const float* s, size_t n) { audio.insert(audio.end(), s, s + n); });
    sp.keep_inputs_for_tests(true);
    SpeechOptions opt;
    opt.speaker = "Chelsie";
    opt.sampling.greedy = true;
    opt.max_frames = meta.at("talker_max_new_tokens").get<int>() - 1;
    sp.start(user_ids, Tensor(), std::vector<int32_t>(prompt.end() - 3, prompt.end()), opt);
    // HF speaks every token but the last generated one (the <|im_end|> when the thinker stopped).
    const size_t feed = meta.at("thinker_eos_reached").get<bool>() ? thinker.i64.size() : thinker.i64.size() - 1;
    for (size_t i = 0; i < feed; ++i) sp.on_thinker_token(int32_t(thinker.i64[i]));
    sp.finish_text();
    ASSERT_EQ(sp.prefill_rows().size(), prefill.f32.size());
    const double prefill_rel = max_rel_diff(sp.prefill_rows(), prefill.f32);
    const int T = int(codes.shape[1]);
    ASSERT_EQ(int(sp.frames().size()), T);
    EXPECT_EQ(code_mismatches(sp, codes, T), 0);
    ASSERT_EQ(audio.size(), wav.f32.size());
    const double wav_rel = max_rel_diff(audio, wav.f32);
    std::printf("[%s multi-turn] prefill (%zu user rows) max rel %.3g; %d frames identical; waveform max rel %.3g\n",
                model, user_ids.size(), prefill_rel, T, wav_rel);
    EXPECT_LT(prefill_rel, 1e-4);
    EXPECT_LT(wav_rel, 1e-3);
  }
}

}  // namespace
}  // namespace omni
