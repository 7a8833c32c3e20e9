#include "vision/vision_input.h"

#include <algorithm>

#include "omni/errors.h"

namespace omni {
namespace {

// The encoder's scratch: every patch row of one frame at once. 16384 patches (4096 tokens, e.g. 2048 x 2048
// pixels) keep the release tower's scratch near 0.6 GB; a turn cannot hold more tokens than the context anyway.
constexpr int64_t kMaxFramePatches = 16384;

}  // namespace

VisionInput::VisionInput(Backend& be, const Checkpoint& ck, const ModelConfig& cfg, const std::string& model_dir,
                         int max_tokens)
    : be_(be),
      cfg_(cfg.vision),
      image_pad_id_(cfg.ids.image_pad),
      video_pad_id_(cfg.ids.video_pad),
      max_tokens_(max_tokens),
      pre_(VisionPreprocessConfig::load(model_dir + "/preprocessor_config.json")),
      encoder_(be, cfg.vision, load_vision_encoder_weights(ck, be, cfg.vision),
               std::min<int64_t>(kMaxFramePatches, int64_t(max_tokens) * cfg.vision.spatial_merge_size *
                                                       cfg.vision.spatial_merge_size)) {
  const std::string file = model_dir + "/preprocessor_config.json";
  auto same = [&](const char* key, int pre, int tower, const char* tower_key) {
    if (pre != tower)
      throw ConfigError(file + ": " + key + " " + std::to_string(pre) + " does not match the vision tower's " +
                        tower_key + " " + std::to_string(tower) + " in config.json");
  };
  same("patch_size", pre_.patch_size, cfg.vision.patch_size, "patch_size");
  same("merge_size", pre_.merge_size, cfg.vision.spatial_merge_size, "spatial_merge_size");
  same("temporal_patch_size", pre_.temporal_patch_size, cfg.vision.temporal_patch_size, "temporal_patch_size");
  if (cfg.vision.out_hidden_size != cfg.thinker.hidden_size)
    throw ConfigError("config.json: thinker_config.vision_config.out_hidden_size " +
                      std::to_string(cfg.vision.out_hidden_size) + " is not the thinker's hidden_size " +
                      std::to_string(cfg.thinker.hidden_size));
  if (cfg.vision.deepstack_visual_indexes.size() > size_t(cfg.thinker.num_layers))
    throw ConfigError("config.json: " + std::to_string(cfg.vision.deepstack_visual_indexes.size()) +
                      " DeepStack taps for " + std::to_string(cfg.thinker.num_layers) + " thinker layers");
  if (max_tokens <= 0) throw Error("vision input: max_tokens must be positive");
  rows_ = be.alloc({int64_t(max_tokens), int64_t(cfg.vision.out_hidden_size)});
  for (size_t k = 0; k < cfg.vision.deepstack_visual_indexes.size(); ++k)
    deepstack_.push_back(be.alloc({int64_t(max_tokens), int64_t(cfg.vision.out_hidden_size)}));
}

int VisionInput::append(const VisualPatches& p) {
  const int64_t n = p.tokens(cfg_.spatial_merge_size);
  if (p.row_size != cfg_.patch_row_size() || int64_t(p.pixels.size()) != p.rows() * p.row_size)
    throw Error("vision input: patch rows of " + std::to_string(p.row_size) + " values, the tower reads " +
                std::to_string(cfg_.patch_row_size()));
  if (encoded_ + n > max_tokens_)
    throw Error("vision input: " + std::to_string(encoded_) + " visual tokens are held and this " +
                (p.video ? "video" : "image") + " adds " +
                std::to_string(n) + "; at most " + std::to_string(max_tokens_) + " fit");
  std::vector<Tensor> ds;
  for (const Tensor& d : deepstack_) ds.push_back(d.rows(encoded_, n));
  encoder_.encode(p.pixels.data(), p.grid_t, p.grid_h, p.grid_w, rows_.rows(encoded_, n), ds);
  encoded_ += int(n);
  VisualSpan s;
  s.t = p.grid_t;
  s.h = p.grid_h;
  s.w = p.grid_w;
  s.seconds_per_pair = p.video ? p.seconds_per_pair : 1.0;
  (p.video ? videos_ : images_).push_back(s);
  return int(n);
}

template <typename Fn>
void VisionInput::for_each_pad_run(const std::vector<int32_t>& ids, size_t begin, size_t count, Fn fn) const {
  if (begin + count > ids.size())
    throw Error("vision input: chunk [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                ") is outside the " + std::to_string(ids.size()) + " prompt ids");
  const auto pad = [this](int32_t id) { return id == image_pad_id_ || id == video_pad_id_; };
  const auto chunk_begin = ids.begin() + long(begin), chunk_end = chunk_begin + long(count);
  if (std::find_if(chunk_begin, chunk_end, pad) == chunk_end) return;  // no image or video in this chunk
  const int64_t pads = std::count_if(ids.begin(), ids.end(), pad);
  if (pads != encoded_)
    throw Error("vision input: the prompt has " + std::to_string(pads) + " <|image_pad|>/<|video_pad|> tokens but " +
                "the encoded images and videos have " + std::to_string(encoded_) + " tokens");
  int64_t rank = std::count_if(ids.begin(), chunk_begin, pad);
  for (size_t i = 0; i < count;) {
    if (!pad(ids[begin + i])) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < count && pad(ids[begin + j])) ++j;
    fn(int64_t(i), rank, int64_t(j - i));
    rank += int64_t(j - i);
    i = j;
  }
}

void VisionInput::fill_prefill_chunk(const std::vector<int32_t>& ids, size_t begin, const Tensor& x) const {
  for_each_pad_run(ids, begin, size_t(x.dim(0)), [&](int64_t row, int64_t rank, int64_t run) {
    be_.copy(rows_.rows(rank, run), x.rows(row, run));
  });
}

std::vector<DecoderExtras::RowAdd> VisionInput::deepstack_adds(const std::vector<int32_t>& ids, size_t begin,
                                                               size_t count) const {
  std::vector<DecoderExtras::RowAdd> adds;
  for_each_pad_run(ids, begin, count, [&](int64_t row, int64_t rank, int64_t run) {
    for (size_t k = 0; k < deepstack_.size(); ++k) adds.push_back({int(k), row, deepstack_[k].rows(rank, run)});
  });
  return adds;
}

}  // namespace omni
