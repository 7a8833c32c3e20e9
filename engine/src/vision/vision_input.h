// VisionInput: everything the Session needs to put images into the thinker's prompt (docs/model.md §3.4, §3.5,
// §5.5), the vision counterpart of AudioInput:
//   1. prepare(image): the preprocessor's patch rows and grid; tokens() says how many <|image_pad|> it gets;
//   2. append(patches): the vision tower, once per image, after the images already held: the merger rows and
//      the DeepStack rows go into buffers sized at construction;
//   3. after each thinker embed() of a prefill chunk: fill_prefill_chunk(ids, begin, x) overwrites that chunk's
//      <|image_pad|> rows with the merger rows (the n-th pad of `ids` gets row n, as transformers'
//      masked_scatter does), and deepstack_adds(ids, begin, count) gives the DeepStack rows to add to the same
//      positions after thinker layers 0, 1, 2 (DecoderExtras).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backend.h"
#include "io/checkpoint.h"
#include "io/model_config.h"
#include "model/decoder.h"
#include "model/mrope_positions.h"
#include "model/vision_encoder.h"
#include "vision/preprocess.h"

namespace omni {

class VisionInput {
 public:
  // Reads <model_dir>/preprocessor_config.json (its patch, merge and temporal sizes must be the tower's) and the
  // thinker.visual.* weights; holds up to `max_tokens` image tokens of one turn.
  VisionInput(Backend& be, const Checkpoint& ck, const ModelConfig& cfg, const std::string& model_dir,
              int max_tokens);

  const VisionPreprocessConfig& preprocess_config() const { return pre_; }
  int max_tokens() const { return max_tokens_; }
  int merge_size() const { return cfg_.spatial_merge_size; }
  // The tower's input for one still image (resize, normalise, patch rows); `max_pixels` > 0 lowers the
  // preprocessor's max_pixels for it (not below its min_pixels).
  VisualPatches prepare(const RgbImage& image, int64_t max_pixels = 0) const {
    if (max_pixels <= 0 || max_pixels >= pre_.max_pixels) return preprocess_image(pre_, image);
    VisionPreprocessConfig c = pre_;
    c.max_pixels = std::max(max_pixels, c.min_pixels);
    return preprocess_image(c, image);
  }

  void clear() {
    encoded_ = 0;
    images_.clear();
    videos_.clear();
  }
  // Encodes one image or video after those held (held in prompt order); returns its token count. Throws
  // omni::Error when it does not fit.
  int append(const VisualPatches& patches);
  int encoded_tokens() const { return encoded_; }
  // The grids of the images and of the videos held, each in order (for the 3-row positions).
  const std::vector<VisualSpan>& image_spans() const { return images_; }
  const std::vector<VisualSpan>& video_spans() const { return videos_; }

  // `x` ([count, hidden]) holds the embeddings of ids[begin, begin + count). Every <|image_pad|> and
  // <|video_pad|> row among them is overwritten with the encoded row of the same rank among all such pads of
  // `ids` (transformers scatters image rows into image pads and video rows into video pads; held in prompt order,
  // the joint rank gives the same rows). A chunk without pads is left alone; one with pads throws unless `ids`
  // holds exactly encoded_tokens() pads.
  void fill_prefill_chunk(const std::vector<int32_t>& ids, size_t begin, const Tensor& x) const;
  // The DeepStack additions for the same chunk: for tap k (k < the number of taps), the rows of merger k at
  // the chunk's pads, added after thinker layer k. Rows are chunk-relative.
  std::vector<DecoderExtras::RowAdd> deepstack_adds(const std::vector<int32_t>& ids, size_t begin,
                                                    size_t count) const;

 private:
  // Calls fn(chunk_row, rank, run) for each run of consecutive pads in ids[begin, begin + count).
  template <typename Fn>
  void for_each_pad_run(const std::vector<int32_t>& ids, size_t begin, size_t count, Fn fn) const;

  Backend& be_;
  VisionConfig cfg_;
  int32_t image_pad_id_;
  int32_t video_pad_id_;
  int max_tokens_;
  VisionPreprocessConfig pre_;
  VisionEncoder encoder_;
  Tensor rows_;                    // [max_tokens, out_hidden]
  std::vector<Tensor> deepstack_;  // one [max_tokens, out_hidden] per tap
  int encoded_ = 0;
  std::vector<VisualSpan> images_, videos_;
};

}  // namespace omni
