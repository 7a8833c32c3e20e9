// Code2wav weights and the streaming decoder (see code2wav.h for why chunking is exact).
#include "model/code2wav.h"

#include <algorithm>

#include "omni/errors.h"
#include "synthetic_weights.h"

namespace omni {
namespace {

constexpr int kResidualDilations[3] = {1, 3, 9};
constexpr int kConvKernel = 7;  // every k>1 conv of code2wav (dwconv, pre/out conv, residual conv1)

using WeightSource = std::function<Tensor(const std::string&, std::initializer_list<int64_t>)>;

ConvWeights load_conv(const WeightSource& get, const std::string& p, std::initializer_list<int64_t> shape,
                      int64_t bias) {
  return {get(p + "weight", shape), get(p + "bias", {bias})};
}

SnakeWeights load_snake(const WeightSource& get, const std::string& p, int64_t C) {
  return {get(p + "alpha", {C}), get(p + "beta", {C})};
}

}  // namespace

Code2Wav::Code2Wav(Backend& be, const Checkpoint& ck, const Code2WavConfig& c) : be_(be), cfg_(c) {
  load([&](const std::string& name, std::initializer_list<int64_t> shape) { return be.weight(ck.get(name, shape)); });
}

Code2Wav::Code2Wav(Backend& be, const Code2WavConfig& c, uint64_t seed) : be_(be), cfg_(c) {
  load([&](const std::string&, std::initializer_list<int64_t> shape) { return synthetic_weight_for(be, shape, seed++); });
}

void Code2Wav::load(const WeightSource& get) {
  const Code2WavConfig& c = cfg_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.num_quantizers;
  if (c.num_heads <= 0 || H % c.num_heads != 0) throw ConfigError("code2wav_config: hidden_size not divisible by num_attention_heads");
  const int hd = int(H / c.num_heads);
  const std::string P = "code2wav.";
  w_.code_embedding = get(P + "code_embedding.weight", {Q * c.codebook_size, H});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = P + "pre_transformer.layers." + std::to_string(l) + ".";
    Code2WavWeights::Layer L;
    L.input_norm = get(p + "input_layernorm.weight", {H});
    L.post_norm = get(p + "post_attention_layernorm.weight", {H});
    L.attn_scale = get(p + "self_attn_layer_scale.scale", {H});
    L.mlp_scale = get(p + "mlp_layer_scale.scale", {H});
    const int64_t kv = int64_t(c.num_kv_heads) * hd;
    L.attn.wq = get(p + "self_attn.q_proj.weight", {H, H});
    L.attn.wk = get(p + "self_attn.k_proj.weight", {kv, H});
    L.attn.wv = get(p + "self_attn.v_proj.weight", {kv, H});
    L.attn.wo = get(p + "self_attn.o_proj.weight", {H, H});
    L.attn.num_heads = c.num_heads;
    L.attn.num_kv_heads = c.num_kv_heads;
    L.attn.head_dim = hd;
    L.attn.rope_theta = float(c.rope_theta);
    L.mlp.gate = get(p + "mlp.gate_proj.weight", {I, H});
    L.mlp.up = get(p + "mlp.up_proj.weight", {I, H});
    L.mlp.down = get(p + "mlp.down_proj.weight", {H, I});
    w_.layers.push_back(L);
  }
  w_.final_norm = get(P + "pre_transformer.norm.weight", {H});
  for (size_t j = 0; j < c.upsampling_ratios.size(); ++j) {
    const std::string p = P + "upsample." + std::to_string(j) + ".";
    Code2WavWeights::Upsample U;
    U.rate = c.upsampling_ratios[j];
    U.tconv = load_conv(get, p + "0.conv.", {H, H, U.rate}, H);
    U.dwconv = load_conv(get, p + "1.dwconv.conv.", {H, 1, kConvKernel}, H);
    U.ln_w = get(p + "1.norm.weight", {H});
    U.ln_b = get(p + "1.norm.bias", {H});
    U.gamma = get(p + "1.gamma", {H});
    U.pw1 = load_conv(get, p + "1.pwconv1.", {4 * H, H}, 4 * H);
    U.pw2 = load_conv(get, p + "1.pwconv2.", {H, 4 * H}, H);
    w_.upsample.push_back(U);
  }
  const int64_t D = c.decoder_dim;
  w_.pre_conv = load_conv(get, P + "decoder.0.conv.", {D, H, kConvKernel}, D);
  int64_t C = D;
  for (size_t b = 0; b < c.upsample_rates.size(); ++b) {
    const std::string p = P + "decoder." + std::to_string(b + 1) + ".block.";
    Code2WavWeights::Block B;
    B.rate = c.upsample_rates[b];
    const int64_t Co = C / 2;
    B.snake = load_snake(get, p + "0.", C);
    B.tconv = load_conv(get, p + "1.conv.", {C, Co, 2 * B.rate}, Co);
    for (int u = 0; u < 3; ++u) {
      const std::string q = p + std::to_string(u + 2) + ".";
      Code2WavWeights::ResUnit R;
      R.dilation = kResidualDilations[u];
      R.act1 = load_snake(get, q + "act1.", Co);
      R.act2 = load_snake(get, q + "act2.", Co);
      R.conv1 = load_conv(get, q + "conv1.conv.", {Co, Co, kConvKernel}, Co);
      R.conv2 = load_conv(get, q + "conv2.conv.", {Co, Co, 1}, Co);
      B.units.push_back(R);
    }
    w_.blocks.push_back(B);
    C = Co;
  }
  const std::string last = std::to_string(c.upsample_rates.size() + 1);
  w_.final_snake = load_snake(get, P + "decoder." + last + ".", C);
  w_.out_conv = load_conv(get, P + "decoder." + std::to_string(c.upsample_rates.size() + 2) + ".conv.",
                          {1, C, kConvKernel}, 1);
}

int Code2Wav::lookahead_samples() const {
  // Each k=2s transposed conv withholds one input row; propagate through the later rates.
  int lost = 0;
  for (int r : cfg_.upsample_rates) lost = (lost + 1) * r;
  return lost;  // [8,5,4,3] -> ((1*8+1)*5+1)*4+1)*3 = 555
}

// ---------------------------------------------------------------------------------------------
// Decoder buffers. Time-major [rows, C]. A conv with K>1 reads a buffer whose first `hist` rows
// are the previous call's last inputs (zeros after reset) and whose next rows are this call's.

struct Code2WavDecoder::Buffers {
  struct Hist {  // input buffer of a causal conv: [hist + max_rows, C]
    Tensor buf;
    int hist = 0;
    Tensor fresh(int64_t rows) const { return buf.rows(hist, rows); }
    Tensor window(int64_t rows) const { return buf.rows(0, hist + rows); }
  };
  Tensor codes, positions, x, normed, branch;  // transformer
  std::vector<KVCache> caches;
  struct Up { Tensor tin, y, z; Hist dw; };  // tin: this stage's input; dw: tconv output + history
  std::vector<Up> up;
  Hist pre;  // decoder.0 input
  Tensor pre_out;
  struct Blk { Tensor in; bool has_prev = false; Tensor r, t1, t2; std::vector<Hist> act; };
  std::vector<Blk> blk;  // in: [1 + max_in, C_in] snaked input, row 0 = previous last row
  Hist fin;
  Tensor wav;
  Tensor shift;  // scratch for moving history rows
  std::vector<float> host;
};

Code2WavDecoder::Code2WavDecoder(const Code2Wav& model, int max_push_frames, int max_positions)
    : m_(model), be_(model.backend()), max_push_(max_push_frames), max_positions_(max_positions) {
  if (max_push_frames <= 0 || max_positions < max_push_frames)
    throw Error("code2wav decoder: need 0 < max_push_frames <= max_positions");
  const Code2WavConfig& c = m_.config();
  const int64_t H = c.hidden_size, n = max_push_frames;
  b_ = new Buffers;
  Buffers& B = *b_;
  B.codes = be_.alloc({n, c.num_quantizers}, DType::I32);
  B.positions = be_.alloc({n}, DType::I32);
  B.x = be_.alloc({n, H});
  B.normed = be_.alloc({n, H});
  B.branch = be_.alloc({n, H});
  B.caches.resize(size_t(c.num_layers));
  for (KVCache& kv : B.caches) {
    kv.k = be_.alloc({max_positions, c.num_kv_heads, H / c.num_heads});
    kv.v = be_.alloc({max_positions, c.num_kv_heads, H / c.num_heads});
  }
  int64_t rows = n;  // rows entering the current stage
  int64_t max_hist_elems = 0;
  auto hist = [&](int h, int64_t max_rows, int64_t C) {
    Buffers::Hist hb;
    hb.hist = h;
    hb.buf = be_.alloc({h + max_rows, C});
    max_hist_elems = std::max(max_hist_elems, int64_t(h) * C);
    return hb;
  };
  for (const auto& U : m_.weights().upsample) {
    Buffers::Up u;
    u.tin = be_.alloc({rows, H});
    rows *= U.rate;
    u.dw = hist(kConvKernel - 1, rows, H);
    u.y = be_.alloc({rows, H});
    u.z = be_.alloc({rows, 4 * H});
    B.up.push_back(u);
  }
  B.pre = hist(kConvKernel - 1, rows, H);
  B.pre_out = be_.alloc({rows, int64_t(c.decoder_dim)});
  int64_t C = c.decoder_dim;
  for (const auto& Bw : m_.weights().blocks) {
    Buffers::Blk b;
    b.in = be_.alloc({1 + rows, C});
    rows *= Bw.rate;  // at most (rows_in + 1 - 1) * rate
    C /= 2;
    b.r = be_.alloc({rows, C});
    b.t1 = be_.alloc({rows, C});
    b.t2 = be_.alloc({rows, C});
    for (const auto& U : Bw.units) b.act.push_back(hist((kConvKernel - 1) * U.dilation, rows, C));
    B.blk.push_back(b);
  }
  B.fin = hist(kConvKernel - 1, rows, C);
  B.wav = be_.alloc({rows, 1});
  B.shift = be_.alloc({std::max<int64_t>(max_hist_elems, 1)});
  B.host.resize(size_t(rows));
  reset();
}

Code2WavDecoder::~Code2WavDecoder() { delete b_; }

void Code2WavDecoder::reset() {
  Buffers& B = *b_;
  position_ = 0;
  std::vector<float> zeros;
  auto clear = [&](const Buffers::Hist& h) {
    const Tensor t = h.buf.rows(0, h.hist);
    zeros.assign(size_t(t.numel()), 0.f);
    be_.upload(t, zeros.data());  // activation dtype is f32 on CPU; see note in speech docs
  };
  for (auto& u : B.up) clear(u.dw);
  clear(B.pre);
  for (auto& b : B.blk) {
    b.has_prev = false;
    for (auto& a : b.act) clear(a);
  }
  clear(B.fin);
}

namespace {

// Moves the last `hist` rows of the window [0, hist + rows) to the front.
void keep_tail(Backend& be, const Tensor& buf, int hist, int64_t rows, const Tensor& scratch) {
  if (hist == 0 || rows == 0) return;
  const Tensor src = buf.rows(rows, hist), dst = buf.rows(0, hist);
  if (rows >= hist) {
    be.copy(src, dst);
  } else {  // overlapping: go through scratch
    Tensor tmp = scratch;
    tmp.ndim = 1;
    tmp.shape[0] = src.numel();
    tmp = tmp.reshaped({src.dim(0), src.dim(1)});
    be.copy(src, tmp);
    be.copy(tmp, dst);
  }
}

}  // namespace

void Code2WavDecoder::transformer(int n) {
  Buffers& B = *b_;
  const Code2WavConfig& c = m_.config();
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) pos[size_t(i)] = position_ + i;
  const Tensor positions = B.positions.rows(0, n), x = B.x.rows(0, n);
  const Tensor normed = B.normed.rows(0, n), branch = B.branch.rows(0, n);
  be_.upload(positions, pos.data());
  be_.embed_codebooks_mean(m_.weights().code_embedding, B.codes.rows(0, n), c.codebook_size, x);
  const float eps = float(c.rms_norm_eps);
  for (size_t l = 0; l < m_.weights().layers.size(); ++l) {
    const auto& L = m_.weights().layers[l];
    be_.rms_norm(x, L.input_norm, eps, normed);
    AttentionArgs args;
    args.positions = positions;
    args.cache = &B.caches[l];
    args.sliding_window = c.sliding_window;
    be_.attention(L.attn, normed, args, branch);
    be_.channel_scale(branch, L.attn_scale, branch);
    be_.add(x, branch, x);
    be_.rms_norm(x, L.post_norm, eps, normed);
    be_.mlp(L.mlp, normed, branch);
    be_.channel_scale(branch, L.mlp_scale, branch);
    be_.add(x, branch, x);
  }
  be_.rms_norm(x, m_.weights().final_norm, eps, x);
}

void Code2WavDecoder::push(const int32_t* codes, int n, std::vector<float>& out) {
  if (n <= 0) return;
  if (n > max_push_) throw Error("code2wav: " + std::to_string(n) + " frames exceed the push limit of " +
                                 std::to_string(max_push_));
  if (position_ + n > max_positions_)
    throw Error("code2wav: stream of " + std::to_string(position_ + n) + " frames exceeds the " +
                std::to_string(max_positions_) + " this decoder holds; reset between chunks");
  Buffers& B = *b_;
  const Code2WavWeights& W = m_.weights();
  be_.upload(B.codes.rows(0, n), codes);
  transformer(n);
  position_ += n;

  int64_t rows = n;
  Tensor cur = B.x.rows(0, n);  // current stage's input [rows, C]
  for (size_t j = 0; j < W.upsample.size(); ++j) {
    const auto& U = W.upsample[j];
    auto& S = B.up[j];
    const int64_t out_rows = rows * U.rate;
    const Tensor fresh = S.dw.fresh(out_rows);
    be_.conv_transpose1d(cur, U.tconv.w, U.tconv.b, U.rate, fresh);
    const Tensor y = S.y.rows(0, out_rows), z = S.z.rows(0, out_rows);
    be_.conv1d(S.dw.window(out_rows), U.dwconv.w, U.dwconv.b, 1, int(m_.config().hidden_size), y);
    be_.layer_norm(y, U.ln_w, U.ln_b, 1e-6f, y);
    be_.linear(y, U.pw1.w, U.pw1.b, z, Activation::GELU);
    be_.linear(z, U.pw2.w, U.pw2.b, y, Activation::None);
    be_.channel_scale(y, U.gamma, y);
    const Tensor next = j + 1 < W.upsample.size() ? B.up[j + 1].tin.rows(0, out_rows) : B.pre.fresh(out_rows);
    be_.add(fresh, y, next);
    keep_tail(be_, S.dw.buf, S.dw.hist, out_rows, B.shift);
    cur = next;
    rows = out_rows;
  }
  be_.conv1d(B.pre.window(rows), W.pre_conv.w, W.pre_conv.b, 1, 1, B.pre_out.rows(0, rows));
  keep_tail(be_, B.pre.buf, B.pre.hist, rows, B.shift);
  cur = B.pre_out.rows(0, rows);
  for (size_t bi = 0; bi < W.blocks.size(); ++bi) {
    const auto& Bw = W.blocks[bi];
    auto& S = B.blk[bi];
    if (rows == 0) return;
    be_.snake_beta(cur, Bw.snake.log_alpha, Bw.snake.log_beta, S.in.rows(1, rows));
    // Output block m needs inputs m and m+1: the first call emits rows-1 blocks, later calls
    // prepend the previous call's last input and emit one block per new input.
    const Tensor tin = S.has_prev ? S.in.rows(0, rows + 1) : S.in.rows(1, rows);
    const int64_t out_rows = (tin.dim(0) - 1) * Bw.rate;
    if (out_rows > 0) be_.conv_transpose1d(tin, Bw.tconv.w, Bw.tconv.b, Bw.rate, S.r.rows(0, out_rows));
    be_.copy(S.in.rows(rows, 1), S.in.rows(0, 1));  // the last input row, for the next call
    S.has_prev = true;
    const Tensor r = S.r.rows(0, out_rows);
    for (size_t u = 0; u < Bw.units.size() && out_rows > 0; ++u) {
      const auto& U = Bw.units[u];
      auto& A = S.act[u];
      be_.snake_beta(r, U.act1.log_alpha, U.act1.log_beta, A.fresh(out_rows));
      const Tensor t1 = S.t1.rows(0, out_rows), t2 = S.t2.rows(0, out_rows);
      be_.conv1d(A.window(out_rows), U.conv1.w, U.conv1.b, U.dilation, 1, t1);
      be_.snake_beta(t1, U.act2.log_alpha, U.act2.log_beta, t1);
      be_.conv1d(t1, U.conv2.w, U.conv2.b, 1, 1, t2);
      be_.add(r, t2, r);
      keep_tail(be_, A.buf, A.hist, out_rows, B.shift);
    }
    cur = r;
    rows = out_rows;
  }
  if (rows == 0) return;
  be_.snake_beta(cur, W.final_snake.log_alpha, W.final_snake.log_beta, B.fin.fresh(rows));
  const Tensor wav = B.wav.rows(0, rows);
  be_.conv1d(B.fin.window(rows), W.out_conv.w, W.out_conv.b, 1, 1, wav);
  keep_tail(be_, B.fin.buf, B.fin.hist, rows, B.shift);
  be_.download_f32(B.host.data(), wav);
  for (int64_t i = 0; i < rows; ++i) out.push_back(std::clamp(B.host[size_t(i)], -1.0f, 1.0f));
}

}  // namespace omni
