#include "model_impl.h"

#include <sys/stat.h>

#include "omni/errors.h"
#include "omni/limits.h"
#include "quant.h"
#include "vision/video_frames.h"

namespace omni {
namespace {

// HF's talker_max_new_tokens (4096) less the EOS step: 327 s of speech per answer at most.
constexpr int kMaxSpeechFrames = 4095;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<Backend> make_backend(const LoadOptions& opt) {
  if (opt.device == "cpu") {
    if (!opt.dtype.empty() && opt.dtype != "f32")
      throw Error("device cpu computes in f32; --dtype " + opt.dtype + " is not available there");
    return make_cpu_backend();
  }
  if (opt.device == "cuda") {
    // Weights are bf16 either way; the dtype is that of the activations the GPU stores (KV cache)
    // and feeds to the tensor cores (make_cuda_backend).
    if (!opt.dtype.empty() && opt.dtype != "bf16" && opt.dtype != "f32")
      throw Error("device cuda computes with f32 or bf16 activations; --dtype " + opt.dtype + " is not one of them");
    return make_cuda_backend(0, opt.dtype != "bf16");
  }
  throw Error("unknown device '" + opt.device + "' (expected cpu or cuda)");
}

}  // namespace

std::unique_ptr<Model> Model::load(const LoadOptions& opt) { return std::make_unique<ModelImpl>(opt); }

ModelImpl::ModelImpl(const LoadOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](double f, const std::string& what) {
    if (opt.on_progress) opt.on_progress(f, what);
  };
  if (opt.model_dir.empty()) throw Error("no model directory given");
  struct stat st {};
  if (::stat(opt.model_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw CheckpointError(opt.model_dir + ": model directory does not exist");
  if (opt.context_tokens < 16) throw Error("context_tokens must be at least 16");
  const WeightPlan plan = parse_weight_plan(opt.weights);
  context_tokens_ = opt.context_tokens;
  model_dir_ = opt.model_dir;
  progress(0.0, "reading config");
  cfg_ = ModelConfig::load(opt.model_dir + "/config.json");
  const std::string tok_path = opt.model_dir + "/tokenizer.json";
  if (::stat(tok_path.c_str(), &st) != 0) throw CheckpointError(tok_path + ": missing (the model's tokenizer)");
  // Every token id must have a row in the thinker's embedding.
  tokenizer_ = Tokenizer::load(tok_path, cfg_.thinker.vocab_size,
                               "thinker_config.text_config.vocab_size in " + opt.model_dir + "/config.json");
  cfg_.ids.newline = tokenizer_->token_id("\n");
  if (cfg_.ids.newline < 0)
    throw CheckpointError(tok_path + ": no token for \"\\n\" (the chat template needs it after each role name)");
  default_sampling_ = load_generation_config(opt.model_dir + "/generation_config.json");
  progress(0.05, "mapping checkpoint");
  checkpoint_ = std::make_unique<Checkpoint>(opt.model_dir);
  backend_ = make_backend(opt);
  progress(0.1, "loading thinker");
  const int max_rows = 256;
  thinker_ = std::make_unique<Thinker>(*checkpoint_, *backend_, cfg_, max_rows, plan);
  progress(0.6, "loading audio encoder");
  audio_ = std::make_unique<AudioInput>(*backend_, *checkpoint_, cfg_, opt.model_dir, context_tokens_);
  if (opt.load_talker && cfg_.has_talker) {
    progress(0.8, "loading talker and code2wav");
    speech_ = std::make_unique<SpeechModel>(*checkpoint_, *backend_, cfg_, context_tokens_, kMaxSpeechFrames, 1,
                                            plan.talker);
  }
  backend_->weights_loaded();
  backend_->synchronize();
  progress(1.0, "loaded");
  load_ms_ = ms_since(t0);
  load_bytes_ = checkpoint_->bytes_handed_out();
}

std::unique_ptr<Session> ModelImpl::new_session(const SessionOptions& opt) {
  return std::make_unique<SessionImpl>(*this, opt);
}

std::shared_ptr<const TokenTable> ModelImpl::token_table() {
  std::lock_guard<std::mutex> l(token_table_mu_);
  if (!token_table_) token_table_ = TokenTable::build(*tokenizer_, size_t(cfg_.thinker.vocab_size));
  return token_table_;
}

std::vector<int32_t> ModelImpl::render_prompt(const std::string& system, const UserTurn& turn) const {
  auto& self = const_cast<ModelImpl&>(*this);  // the vision input loads on first use
  std::vector<int32_t> ids = omni::render_system(*tokenizer_, cfg_.ids, system);
  const PreparedTurn t = self.prepare_turn(turn);
  ids.insert(ids.end(), t.ids.begin(), t.ids.end());
  return ids;
}

ModelImpl::PreparedTurn ModelImpl::prepare_turn(const UserTurn& turn) {
  PreparedTurn out;
  ChatMessage user{"user", {}, {}};
  if (!turn.audio_16k.empty()) {
    user.content.push_back({ChatPart::Kind::Audio, {}, audio_tokens_for(turn.audio_16k.size())});
    out.clips.push_back(turn.audio_16k);
  }
  if (!turn.images.empty() || !turn.videos.empty()) {
    for (const auto& p : prepare_images(turn.images)) {
      user.content.push_back(visual_part(*p));
      out.visuals.push_back(p);
    }
    for (size_t i = 0; i < turn.videos.size(); ++i) {
      auto p = prepare_video(turn.videos[i]);
      ChatPart part = visual_part(*p);
      part.audio_tokens = soundtrack(turn.videos[i], "videos[" + std::to_string(i) + "] audio", out.clips);
      user.content.push_back(part);
      out.visuals.push_back(std::move(p));
    }
  }
  if (!turn.text.empty()) user.content.push_back({ChatPart::Kind::Text, turn.text, 0});
  out.ids = render_conversation(*tokenizer_, cfg_.ids, {user}, {}, true);
  return out;
}

VisionInput& ModelImpl::vision() {
  std::lock_guard<std::mutex> l(vision_mu_);
  if (!vision_) {
    if (!cfg_.has_vision) throw Error(model_dir_ + ": this model has no vision tower: it cannot take images");
    vision_ = std::make_unique<VisionInput>(*backend_, *checkpoint_, cfg_, model_dir_, context_tokens_);
  }
  return *vision_;
}

namespace {

// An image given as raw RGB (ImageInput format "rgb"), its size checked against the bytes.
RgbImage raw_rgb(const ImageInput& im, const std::string& what) {
  const ImageLimits limits;
  if (im.width <= 0 || im.height <= 0 || im.width > limits.max_side || im.height > limits.max_side)
    throw ImageError(what + ": raw RGB of " + std::to_string(im.width) + "x" + std::to_string(im.height) +
                     " (each side 1.." + std::to_string(limits.max_side) + ")");
  if (im.bytes.size() != size_t(im.width) * size_t(im.height) * 3)
    throw ImageError(what + ": raw RGB of " + std::to_string(im.width) + "x" + std::to_string(im.height) + " needs " +
                     std::to_string(size_t(im.width) * size_t(im.height) * 3) + " bytes, not " +
                     std::to_string(im.bytes.size()));
  RgbImage rgb;
  rgb.width = im.width;
  rgb.height = im.height;
  rgb.rgb = im.bytes;
  return rgb;
}

}  // namespace

std::vector<std::shared_ptr<const VisualPatches>> ModelImpl::prepare_images(const std::vector<ImageInput>& images) {
  VisionInput& v = vision();
  std::vector<std::shared_ptr<const VisualPatches>> out;
  for (size_t i = 0; i < images.size(); ++i) {
    const ImageInput& im = images[i];
    const std::string what = im.bytes.empty() ? im.path : "images[" + std::to_string(i) + "]";
    if (im.bytes.empty() && im.path.empty()) throw ImageError(what + ": neither a path nor bytes given");
    try {
      RgbImage rgb;
      if (im.format == "rgb") {
        rgb = raw_rgb(im, what);
      } else if (!im.bytes.empty()) {
        rgb = im.format.empty() ? decode_image(im.bytes.data(), im.bytes.size(), what)
                                : decode_image_as(parse_image_format(im.format), im.bytes.data(), im.bytes.size(),
                                                  what);
      } else {
        rgb = load_image_file(im.path);
      }
      auto p = std::make_shared<VisualPatches>(v.prepare(rgb, im.max_pixels));
      if (p->tokens(v.merge_size()) > v.max_tokens())
        throw ContextFullError(what + ": " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) + " needs " +
                         std::to_string(p->tokens(v.merge_size())) + " image tokens; the context holds " +
                         std::to_string(v.max_tokens()));
      out.push_back(std::move(p));
    } catch (const ImageError& e) {
      const std::string msg = e.what();
      if (msg.rfind(what + ":", 0) == 0) throw;
      throw ImageError(what + ": " + msg);  // preprocessing errors (size, aspect ratio) do not know the name
    }
  }
  return out;
}

std::shared_ptr<const VisualPatches> ModelImpl::prepare_video(const VideoInput& video) {
  VisionInput& v = vision();
  if (!(video.fps > 0)) throw ImageError((video.path.empty() ? std::string("video") : video.path) + ": fps must be positive");
  std::vector<RgbImage> frames;
  if (video.frames.empty()) {
    frames = load_video_frames(video.path);
  } else {
    const std::string what = video.path.empty() ? std::string("video") : video.path;
    if (int64_t(video.frames.size()) > limits::kMaxVideoFrames)
      throw ImageError(what + ": " + std::to_string(video.frames.size()) + " frames; at most " +
                       std::to_string(limits::kMaxVideoFrames));
    for (size_t i = 0; i < video.frames.size(); ++i) {
      if (video.frames[i].format != "rgb") throw ImageError(what + ": frame " + std::to_string(i) + " is not raw RGB");
      frames.push_back(raw_rgb(video.frames[i], what + " frame " + std::to_string(i)));
      if (frames.back().width != frames[0].width || frames.back().height != frames[0].height)
        throw ImageError(what + ": frame " + std::to_string(i) + " is not of the first frame's size");
    }
  }
  auto p = std::make_shared<VisualPatches>();
  try {
    *p = preprocess_video(v.preprocess_config(), frames);
  } catch (const ImageError& e) {
    throw ImageError(video.path + ": " + e.what());
  }
  p->video = true;
  p->seconds_per_pair = double(v.preprocess_config().temporal_patch_size) / video.fps;
  if (p->tokens(v.merge_size()) > v.max_tokens())
    throw ContextFullError(video.path + ": " + std::to_string(frames.size()) + " frames of " +
                           std::to_string(frames[0].width) + "x" + std::to_string(frames[0].height) + " need " +
                           std::to_string(p->tokens(v.merge_size())) + " video tokens; the context holds " +
                           std::to_string(v.max_tokens()));
  return p;
}

ChatPart ModelImpl::visual_part(const VisualPatches& p) {
  ChatPart part{p.video ? ChatPart::Kind::Video : ChatPart::Kind::Image, {}, int(p.tokens(vision().merge_size()))};
  part.pairs = p.grid_t;
  part.seconds_per_pair = p.seconds_per_pair;
  return part;
}

int ModelImpl::soundtrack(const VideoInput& video, const std::string& where, std::vector<std::vector<float>>& clips) {
  if (video.audio_16k.empty()) return -1;
  int tokens = 0;
  try {
    tokens = audio_tokens_for(video.audio_16k.size());
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  clips.push_back(video.audio_16k);
  return tokens;
}

void ModelImpl::check_visual_tokens(const std::vector<std::shared_ptr<const VisualPatches>>& visuals,
                                    const std::string& what) {
  if (visuals.empty()) return;
  int64_t tokens = 0;
  for (const auto& p : visuals) tokens += p->tokens(vision().merge_size());
  if (tokens > vision().max_tokens())
    throw ContextFullError(what + " " + std::to_string(visuals.size()) + " images and videos need " +
                           std::to_string(tokens) + " tokens; the context holds " +
                           std::to_string(vision().max_tokens()));
}

std::vector<std::string> ModelImpl::speakers() const {
  std::vector<std::string> out;
  for (auto& kv : cfg_.talker.speaker_ids) out.push_back(kv.first);
  return out;
}

}  // namespace omni
