// The robot's camera (docs/config.md "camera"): a GStreamer source, converted to 8-bit RGB, whose latest frame a
// turn can attach. Like the microphone it survives its device: when the pipeline fails, cannot start or ends, the
// camera reports the loss and rebuilds it with backoff (0.5 s doubling to 30 s; back to 0.5 s after a pipeline
// that ran 10 s), and reports it restored once a rebuilt pipeline delivers a frame. A camera that fails at start
// does not keep omnid from starting: it is lost from the first moment and rebuilt (RebuildBackoff).
//
// Threads: frames arrive on the camera's thread, which keeps the latest; everything else (start, apply, stop,
// tick, the listener) runs on the daemon's event loop; latest() may be called from any thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <omni/engine.h>

#include "daemon/event_loop.h"
#include "daemon/rebuild_backoff.h"

namespace omnid {

struct CameraFrame {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // height rows of width RGB pixels, no padding
  int64_t captured_ms = 0;        // monotonic_ms when it arrived
  uint64_t number = 0;            // frames delivered since omnid started (1, 2, ...)
  // As the engine takes it: raw RGB ("rgb"), resized to at most `max_pixels` (0: the checkpoint's limit).
  omni::ImageInput image(int64_t max_pixels = 0) const {
    omni::ImageInput in;
    in.bytes = rgb;
    in.format = "rgb";
    in.width = width;
    in.height = height;
    in.max_pixels = max_pixels;
    return in;
  }
};

class Camera {
 public:
  struct Listener {
    // Event loop. `first`: a new loss (not a failed rebuild); the next rebuild is in `retry_in_ms`.
    std::function<void(const std::string& reason, int retry_in_ms, bool first)> on_lost;
    // A rebuilt pipeline delivers frames again, `down_ms` after the loss, after `attempts` rebuilds.
    std::function<void(int64_t down_ms, int attempts)> on_restored;
  };

  Camera(EventLoop& loop, Listener listener);
  ~Camera();
  Camera(const Camera&) = delete;
  Camera& operator=(const Camera&) = delete;

  // Frames a second kept for clips (camera.clip): one frame per half second.
  static constexpr double kClipFps = 2.0;

  // Starts the camera on `pipeline` (empty: no camera). Throws std::runtime_error naming the problem only when
  // GStreamer cannot parse the description (a configuration error); a source that fails to start is reported
  // lost (Listener::on_lost) and rebuilt.
  void start(const std::string& pipeline);
  // A new description: rebuilt when it differs (throws as start does, keeping the running camera).
  void apply(const std::string& pipeline);
  void stop();
  // Every 100 ms from the loop: rebuilds a lost camera when its backoff has passed, reports a restored one.
  void tick();

  bool configured() const { return !pipeline_.empty(); }
  bool lost() const { return failed_; }
  // The latest frame (null: none yet, or none since the camera was lost). Any thread.
  std::shared_ptr<const CameraFrame> latest() const;
  // How many seconds of recent frames to keep for clips (0: none), at kClipFps. Event loop.
  void set_clip_seconds(double seconds);
  // The kept frames of the last `seconds`, oldest first, kClipFps apart (empty: none kept). Any thread.
  std::vector<std::shared_ptr<const CameraFrame>> recent(double seconds) const;
  // What `status` shows: pipeline, state (running | waiting | lost | off), frames, last frame's size and age.
  nlohmann::json status() const;
  // Why a turn cannot have a frame now (empty: it can): no camera, lost (with the reason), no frame yet.
  std::string unavailable_reason() const;

 private:
  struct Pipeline;
  void build();  // throws std::runtime_error when the description does not parse
  void on_lost(uint64_t generation, const std::string& reason);

  EventLoop& loop_;
  Listener listener_;
  std::string pipeline_;
  std::unique_ptr<Pipeline> running_;
  uint64_t generation_ = 0;  // reports of an older pipeline are ignored
  bool failed_ = false;
  std::string lost_reason_;
  RebuildBackoff backoff_;
  int64_t started_ms_ = 0;
  mutable std::mutex frame_mu_;
  std::shared_ptr<const CameraFrame> latest_;  // guarded by frame_mu_
  std::deque<std::shared_ptr<const CameraFrame>> clip_;  // guarded by frame_mu_: one frame per 1/kClipFps s
  size_t clip_frames_ = 0;                               // guarded by frame_mu_: how many clip_ keeps
  std::atomic<uint64_t> frames_{0};
  std::atomic<uint64_t> heard_generation_{0};  // the generation whose pipeline delivered its first frame
};

// The GStreamer description omnid runs for a camera `source`: the source, conversion to packed 8-bit RGB, and
// omnid's appsink (the newest frame only, at the source's frame rate).
std::string camera_pipeline_description(const std::string& source);

}  // namespace omnid
