// One-shot and HF-chunked decoding on top of the streaming decoder, and Code2WavStream, which
// reproduces HF's chunked_decode (chunks of 300 frames, 25 frames of left context, positions
// restarting per chunk) while delivering samples as frames arrive.
#include <algorithm>

#include "model/code2wav.h"
#include "omni/errors.h"

namespace omni {
namespace {

// Pushes frames [begin, end) of codebook-major codes [Q][T] in pieces the decoder accepts.
void push_range(Code2WavDecoder& dec, const std::vector<int32_t>& codes_qt, int T, int Q, int begin, int end,
                std::vector<float>& out) {
  std::vector<int32_t> frame_major;
  for (int f = begin; f < end;) {
    const int n = std::min(dec.max_push_frames(), end - f);
    frame_major.resize(size_t(n) * size_t(Q));
    for (int i = 0; i < n; ++i)
      for (int q = 0; q < Q; ++q) frame_major[size_t(i * Q + q)] = codes_qt[size_t(q) * size_t(T) + size_t(f + i)];
    dec.push(frame_major.data(), n, out);
    f += n;
  }
}

int quantizers(const std::vector<int32_t>& codes_qt, int T) {
  if (T <= 0 || codes_qt.size() % size_t(T) != 0)
    throw Error("code2wav: codes of " + std::to_string(codes_qt.size()) + " entries are not [Q, " +
                std::to_string(T) + "]");
  return int(codes_qt.size() / size_t(T));
}

}  // namespace

std::vector<float> code2wav_decode(Code2WavDecoder& dec, const std::vector<int32_t>& codes_qt, int T) {
  const int Q = quantizers(codes_qt, T);
  std::vector<float> out;
  dec.reset();
  push_range(dec, codes_qt, T, Q, 0, T, out);
  return out;
}

std::vector<float> code2wav_chunked_decode(Code2WavDecoder& dec, const std::vector<int32_t>& codes_qt, int T,
                                           int chunk_size, int left_context) {
  const int Q = quantizers(codes_qt, T);
  std::vector<float> out, part;
  for (int start = 0; start < T;) {
    const int end = std::min(start + chunk_size, T);
    const int context = start - left_context > 0 ? left_context : start;  // HF's condition, verbatim
    part.clear();
    dec.reset();
    push_range(dec, codes_qt, T, Q, start - context, end, part);
    const size_t drop = size_t(context) * size_t(dec.samples_per_frame());
    if (part.size() > drop) out.insert(out.end(), part.begin() + long(drop), part.end());
    start = end;
  }
  return out;
}

Code2WavStream::Code2WavStream(Code2WavDecoder& dec, int chunk_size, int left_context, int push_frames)
    : dec_(dec), chunk_(chunk_size), context_(left_context), push_frames_(push_frames), Q_(dec.quantizers()) {
  if (chunk_size <= 0 || left_context < 0 || push_frames <= 0 || push_frames > dec.max_push_frames() ||
      chunk_size + left_context > dec.max_positions())
    throw Error("code2wav stream: chunk " + std::to_string(chunk_size) + " + context " +
                std::to_string(left_context) + " (push " + std::to_string(push_frames) +
                ") does not fit the decoder");
  reset();
}

void Code2WavStream::reset() {
  history_.clear();
  decoded_ = 0;
  discard_ = 0;
  dec_.reset();
}

void Code2WavStream::add_frame(const int32_t* codes, std::vector<float>& out) {
  // A new HF chunk starts at every multiple of chunk_: finish the old one, then restart the
  // decoder on the left context (whose samples HF drops).
  const int f = int(history_.size());
  if (f > 0 && f % chunk_ == 0) {
    decode_pending(out);
    dec_.reset();
    const int context = f - context_ > 0 ? context_ : f;
    decoded_ = f - context;
    discard_ = size_t(context) * size_t(dec_.samples_per_frame());
  }
  history_.emplace_back(codes, codes + Q_);
  if (int(history_.size()) - decoded_ >= push_frames_) decode_pending(out);
}

void Code2WavStream::flush(std::vector<float>& out) { decode_pending(out); }

void Code2WavStream::decode_pending(std::vector<float>& out) {
  std::vector<int32_t> frame_major;
  std::vector<float> part;
  while (decoded_ < int(history_.size())) {
    const int n = std::min(dec_.max_push_frames(), int(history_.size()) - decoded_);
    frame_major.clear();
    for (int i = 0; i < n; ++i)
      frame_major.insert(frame_major.end(), history_[size_t(decoded_ + i)].begin(), history_[size_t(decoded_ + i)].end());
    part.clear();
    dec_.push(frame_major.data(), n, part);
    decoded_ += n;
    const size_t skip = std::min(discard_, part.size());
    discard_ -= skip;
    out.insert(out.end(), part.begin() + long(skip), part.end());
  }
}

}  // namespace omni
