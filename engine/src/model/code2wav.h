// Code2wav (docs/model.md §3.9): 16 codebooks per 80 ms frame -> 24 kHz waveform, written over Backend
// operations and run as a STREAM. Every stage is causal: the transformer is causal (sliding
// window, KV cache, absolute positions), the convolutions keep their left context between calls,
// and each k=2s transposed convolution holds back its last input row because output block m
// needs inputs m and m+1. So after any number of frames n the decoder has emitted exactly the
// 1920*n - 555 samples that a single HF `code2wav(codes[:n])` call returns, with the same values
// whatever the chunking (the CPU backend accumulates every output element in a fixed order).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "backend.h"
#include "io/checkpoint.h"
#include "io/model_config.h"

namespace omni {

struct SnakeWeights { Tensor log_alpha, log_beta; };
struct ConvWeights { Tensor w, b; };

struct Code2WavWeights {
  Tensor code_embedding;  // [Q*codebook, H]
  struct Layer {
    Tensor input_norm, post_norm, attn_scale, mlp_scale;
    AttentionWeights attn;
    MlpWeights mlp;
  };
  std::vector<Layer> layers;
  Tensor final_norm;
  struct Upsample {  // transposed conv (k = s = r) + ConvNeXt block
    int rate = 0;
    ConvWeights tconv, dwconv, pw1, pw2;
    Tensor ln_w, ln_b, gamma;
  };
  std::vector<Upsample> upsample;
  ConvWeights pre_conv;  // decoder.0: k7, H -> decoder_dim
  struct ResUnit { int dilation = 1; SnakeWeights act1, act2; ConvWeights conv1, conv2; };
  struct Block { int rate = 0; SnakeWeights snake; ConvWeights tconv; std::vector<ResUnit> units; };
  std::vector<Block> blocks;
  SnakeWeights final_snake;
  ConvWeights out_conv;  // k7, C -> 1
};

// The loaded weights; shared by every decoder of a model.
class Code2Wav {
 public:
  Code2Wav(Backend& be, const Checkpoint& ck, const Code2WavConfig& cfg);
  // Synthetic weights of the config's shapes (synthetic_weight_for, seeds from `seed`): for
  // benchmarks without a checkpoint.
  Code2Wav(Backend& be, const Code2WavConfig& cfg, uint64_t seed);
  const Code2WavConfig& config() const { return cfg_; }
  const Code2WavWeights& weights() const { return w_; }
  Backend& backend() const { return be_; }
  // Samples a single call on n >= 1 frames yields: samples_per_frame*n - lookahead_samples().
  int lookahead_samples() const;

 private:
  // A weight by checkpoint name and expected shape (names are used only by the checkpoint).
  using WeightSource = std::function<Tensor(const std::string& name, std::initializer_list<int64_t> shape)>;
  void load(const WeightSource& get);

  Backend& be_;
  Code2WavConfig cfg_;
  Code2WavWeights w_;
};

// One decode stream: the activation buffers, conv histories and KV caches of one utterance.
class Code2WavDecoder {
 public:
  // `max_push_frames`: the most frames one push() takes; `max_positions`: the most frames one
  // stream may hold between resets (KV cache capacity).
  Code2WavDecoder(const Code2Wav& model, int max_push_frames, int max_positions);
  ~Code2WavDecoder();
  Code2WavDecoder(const Code2WavDecoder&) = delete;
  Code2WavDecoder& operator=(const Code2WavDecoder&) = delete;

  void reset();  // a fresh stream: position 0, zero left context
  // Decodes n frames (codes [n][Q], frame-major) and appends the samples that became final
  // (clamped to [-1, 1]) to `out`. n <= max_push_frames.
  void push(const int32_t* codes, int n, std::vector<float>& out);
  int frames() const { return position_; }
  int max_push_frames() const { return max_push_; }
  int max_positions() const { return max_positions_; }
  int quantizers() const { return m_.config().num_quantizers; }
  int samples_per_frame() const { return m_.config().samples_per_frame(); }

 private:
  struct Buffers;
  void transformer(int n);
  const Code2Wav& m_;
  Backend& be_;
  int max_push_, max_positions_;
  int position_ = 0;
  Buffers* b_;
};

// HF `code2wav(codes)`: one call on all T frames; codes [Q][T] (codebook-major, as HF's [16, T]).
std::vector<float> code2wav_decode(Code2WavDecoder& dec, const std::vector<int32_t>& codes_qt, int T);
// HF `chunked_decode(codes, chunk_size, left_context_size)`.
std::vector<float> code2wav_chunked_decode(Code2WavDecoder& dec, const std::vector<int32_t>& codes_qt, int T,
                                           int chunk_size = 300, int left_context = 25);

// Streams frames into waveform with HF's chunking semantics (chunk 300, left context 25): the
// output equals `chunked_decode` of all frames, delivered as soon as each sample is final.
class Code2WavStream {
 public:
  Code2WavStream(Code2WavDecoder& dec, int chunk_size = 300, int left_context = 25, int push_frames = 1);
  void reset();
  // Adds one frame (Q codes); decodes when `push_frames` frames are pending. Returns samples.
  void add_frame(const int32_t* codes, std::vector<float>& out);
  void flush(std::vector<float>& out);  // decodes pending frames (end of speech)
  int frames() const { return int(history_.size()); }

 private:
  void decode_pending(std::vector<float>& out);
  Code2WavDecoder& dec_;
  int chunk_, context_, push_frames_, Q_;
  std::vector<std::vector<int32_t>> history_;  // every frame of the utterance
  int decoded_ = 0;                            // frames already handed to the decoder
  size_t discard_ = 0;                         // samples of the re-decoded context still to drop
};

}  // namespace omni
