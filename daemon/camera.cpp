#include "daemon/camera.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "audio/device/capture.h"
#include "daemon/log.h"

namespace omnid {

using omni::audio::monotonic_ms;

namespace {

// The first ERROR or EOS waiting on `bus` ("" when none): "element: message (debug)" or "the camera ended".
std::string take_bus_problem(GstBus* bus, GstClockTime timeout) {
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, timeout, GstMessageType(GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
  if (!msg) return {};
  std::string text = "the camera's stream ended";
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* err = nullptr;
    gchar* debug = nullptr;
    gst_message_parse_error(msg, &err, &debug);
    text = std::string(GST_OBJECT_NAME(msg->src)) + ": " + (err ? err->message : "error");
    if (debug) text += std::string(" (") + debug + ")";
    if (err) g_error_free(err);
    g_free(debug);
  }
  gst_message_unref(msg);
  return text;
}

}  // namespace

std::string camera_pipeline_description(const std::string& source) {
  // sync=true paces a source that is not live (a file, imagefreeze) to its frame rate instead of a busy loop.
  return source +
         " ! videoconvert ! video/x-raw,format=RGB ! appsink name=omnid_camera sync=true max-buffers=1 drop=true";
}

// One running GStreamer pipeline and the thread that pulls its frames.
struct Camera::Pipeline {
  GstElement* pipeline = nullptr;
  GstAppSink* sink = nullptr;
  GstBus* bus = nullptr;
  std::thread thread;
  std::atomic<bool> stop{false};
  ~Pipeline() {
    stop = true;
    if (thread.joinable()) thread.join();
    if (pipeline) gst_element_set_state(pipeline, GST_STATE_NULL);
    if (bus) gst_object_unref(bus);
    if (sink) gst_object_unref(sink);
    if (pipeline) gst_object_unref(pipeline);
  }
};

Camera::Camera(EventLoop& loop, Listener listener) : loop_(loop), listener_(std::move(listener)) {}

Camera::~Camera() { stop(); }

void Camera::start(const std::string& pipeline) {
  stop();
  pipeline_ = pipeline;
  if (pipeline_.empty()) return;
  build();
}

void Camera::apply(const std::string& pipeline) {
  if (pipeline == pipeline_) return;
  if (!pipeline.empty()) {  // refuse a description GStreamer cannot parse before the running camera goes
    GError* err = nullptr;
    GstElement* probe = gst_parse_launch(camera_pipeline_description(pipeline).c_str(), &err);
    std::string msg = err ? err->message : "";
    if (err) g_error_free(err);
    if (probe) gst_object_unref(probe);
    if (!msg.empty() || !probe) throw std::runtime_error("camera.pipeline '" + pipeline + "': " + msg);
  }
  start(pipeline);
}

void Camera::stop() {
  ++generation_;
  running_.reset();
  failed_ = false;
  backoff_.clear();
  lost_reason_.clear();
  std::lock_guard lock(frame_mu_);
  latest_.reset();
  clip_.clear();
}

void Camera::build() {
  GError* err = nullptr;
  if (!gst_init_check(nullptr, nullptr, &err)) {
    std::string msg = err ? err->message : "unknown reason";
    if (err) g_error_free(err);
    throw std::runtime_error("GStreamer cannot initialise: " + msg);
  }
  const uint64_t generation = ++generation_;
  auto p = std::make_unique<Pipeline>();
  p->pipeline = gst_parse_launch(camera_pipeline_description(pipeline_).c_str(), &err);
  if (err) {
    std::string msg = err->message;
    g_error_free(err);
    if (p->pipeline) gst_object_unref(p->pipeline);
    p->pipeline = nullptr;
    throw std::runtime_error("camera.pipeline '" + pipeline_ + "': " + msg);
  }
  if (!p->pipeline) throw std::runtime_error("camera.pipeline '" + pipeline_ + "' is empty");
  p->sink = GST_APP_SINK(gst_bin_get_by_name(GST_BIN(p->pipeline), "omnid_camera"));
  p->bus = gst_element_get_bus(p->pipeline);
  started_ms_ = monotonic_ms();
  failed_ = false;
  if (gst_element_set_state(p->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    std::string why = take_bus_problem(p->bus, 0);
    running_ = std::move(p);
    loop_.post([this, generation, why] {
      on_lost(generation, "camera cannot start: " + (why.empty() ? std::string("the pipeline did not start") : why));
    });
    return;
  }
  Pipeline* raw = p.get();
  raw->thread = std::thread([this, raw, generation] {
    while (!raw->stop) {
      const std::string problem = take_bus_problem(raw->bus, 0);
      if (!problem.empty()) {
        loop_.post([this, generation, problem] { on_lost(generation, "camera failed: " + problem); });
        return;
      }
      GstSample* sample = gst_app_sink_try_pull_sample(raw->sink, 100 * GST_MSECOND);
      if (!sample) continue;
      GstVideoInfo info;
      GstBuffer* buffer = gst_sample_get_buffer(sample);
      GstMapInfo map;
      if (buffer && gst_video_info_from_caps(&info, gst_sample_get_caps(sample)) &&
          gst_buffer_map(buffer, &map, GST_MAP_READ)) {
        auto frame = std::make_shared<CameraFrame>();
        frame->width = GST_VIDEO_INFO_WIDTH(&info);
        frame->height = GST_VIDEO_INFO_HEIGHT(&info);
        const size_t row = size_t(frame->width) * 3;
        const size_t stride = size_t(GST_VIDEO_INFO_PLANE_STRIDE(&info, 0));
        const size_t offset = size_t(GST_VIDEO_INFO_PLANE_OFFSET(&info, 0));
        if (frame->width > 0 && frame->height > 0 && stride >= row &&
            offset + stride * size_t(frame->height - 1) + row <= map.size) {
          frame->rgb.resize(row * size_t(frame->height));
          for (int y = 0; y < frame->height; ++y)
            std::copy_n(map.data + offset + stride * size_t(y), row, frame->rgb.data() + row * size_t(y));
          frame->captured_ms = monotonic_ms();
          frame->number = ++frames_;
          {
            std::lock_guard lock(frame_mu_);
            const int64_t gap = int64_t(1000.0 / kClipFps);
            if (clip_frames_ > 0 && (clip_.empty() || frame->captured_ms - clip_.back()->captured_ms >= gap)) {
              clip_.push_back(frame);
              while (clip_.size() > clip_frames_) clip_.pop_front();
            }
            latest_ = std::move(frame);
          }
          heard_generation_ = generation;
        }
        gst_buffer_unmap(buffer, &map);
      }
      gst_sample_unref(sample);
    }
  });
  running_ = std::move(p);
  log_info("camera: %s", camera_pipeline_description(pipeline_).c_str());
}

void Camera::on_lost(uint64_t generation, const std::string& reason) {
  if (generation != generation_ || failed_) return;  // stale or already handled
  const bool first = backoff_.lost(monotonic_ms(), started_ms_);
  failed_ = true;
  lost_reason_ = reason;
  {
    std::lock_guard lock(frame_mu_);
    latest_.reset();  // a lost camera's last frames are no picture of now
    clip_.clear();
  }
  log_error("%s; rebuilding the camera pipeline in %d ms", reason.c_str(), backoff_.backoff_ms());
  if (listener_.on_lost) listener_.on_lost(reason, backoff_.backoff_ms(), first);
}

void Camera::tick() {
  if (!configured()) return;
  const int64_t now = monotonic_ms();
  if (backoff_.restoring() && !failed_ && heard_generation_ == generation_) {
    const int64_t down_ms = backoff_.restored(now);
    log_info("camera restored after %lld ms (%d attempts)", static_cast<long long>(down_ms), backoff_.attempts());
    if (listener_.on_restored) listener_.on_restored(down_ms, backoff_.attempts());
    return;
  }
  if (!failed_ || !backoff_.due(now)) return;
  backoff_.attempt();
  running_.reset();
  try {
    build();
  } catch (const std::exception& e) {
    failed_ = false;  // let on_lost schedule the next attempt with a longer backoff
    on_lost(generation_, std::string("camera cannot be rebuilt: ") + e.what());
  }
}

std::shared_ptr<const CameraFrame> Camera::latest() const {
  std::lock_guard lock(frame_mu_);
  return latest_;
}

void Camera::set_clip_seconds(double seconds) {
  std::lock_guard lock(frame_mu_);
  clip_frames_ = seconds > 0 ? size_t(std::ceil(seconds * kClipFps)) : 0;
  while (clip_.size() > clip_frames_) clip_.pop_front();
}

std::vector<std::shared_ptr<const CameraFrame>> Camera::recent(double seconds) const {
  std::lock_guard lock(frame_mu_);
  const size_t n = std::min(clip_.size(), size_t(std::ceil(seconds * kClipFps)));
  return std::vector<std::shared_ptr<const CameraFrame>>(clip_.end() - long(n), clip_.end());
}

nlohmann::json Camera::status() const {
  if (!configured()) return {{"state", "off"}};
  const auto frame = latest();
  nlohmann::json j = {{"pipeline", pipeline_},
                      {"state", failed_ ? "lost" : frame ? "running" : "waiting"},
                      {"frames", frames_.load()}};
  if (failed_) j["reason"] = lost_reason_;
  if (frame) {
    j["width"] = frame->width;
    j["height"] = frame->height;
    j["frame_age_ms"] = monotonic_ms() - frame->captured_ms;
  }
  return j;
}

std::string Camera::unavailable_reason() const {
  if (!configured()) return "no camera is configured (camera.pipeline in the configuration)";
  if (failed_) return "the camera is lost (" + lost_reason_ + "); omnid is rebuilding it";
  if (!latest()) return "the camera has not delivered a frame yet";
  return {};
}

}  // namespace omnid
