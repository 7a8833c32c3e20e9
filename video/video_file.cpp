#include "video/video_file.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "omni/errors.h"
#include "omni/limits.h"
#include "vision/preprocess.h"

namespace omni::video {
namespace {

constexpr int64_t kMaxFileFrames = 100000;

struct Pipeline {
  GstElement* pipeline = nullptr;
  GstAppSink* sink = nullptr;
  GstBus* bus = nullptr;
  ~Pipeline() {
    if (pipeline) gst_element_set_state(pipeline, GST_STATE_NULL);
    if (bus) gst_object_unref(bus);
    if (sink) gst_object_unref(sink);
    if (pipeline) gst_object_unref(pipeline);
  }
};

std::string bus_error(GstBus* bus) {
  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  if (!msg) return {};
  GError* err = nullptr;
  gchar* debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  std::string text = err ? err->message : "error";
  if (err) g_error_free(err);
  g_free(debug);
  gst_message_unref(msg);
  return text;
}

// A GStreamer string literal for `path` (quoted, with " and \ escaped).
std::string quoted(const std::string& path) {
  std::string q = "\"";
  for (char c : path) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q + "\"";
}

}  // namespace

SampledVideo decode_video_file(const std::string& path, double fps) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw ImageError(path + ": no such video file");
  if (!(fps > 0) || fps > limits::kMaxVideoFps)
    throw ImageError(path + ": fps " + std::to_string(fps) + " is not in (0, " +
                     std::to_string(int(limits::kMaxVideoFps)) + "]");
  GError* err = nullptr;
  if (!gst_init_check(nullptr, nullptr, &err)) {
    std::string msg = err ? err->message : "unknown reason";
    if (err) g_error_free(err);
    throw ImageError(path + ": GStreamer cannot initialise: " + msg);
  }
  Pipeline p;
  const std::string description = "filesrc location=" + quoted(path) +
                                  " ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=omni_video "
                                  "sync=false max-buffers=4 drop=false";
  p.pipeline = gst_parse_launch(description.c_str(), &err);
  if (err) {
    std::string msg = err->message;
    g_error_free(err);
    throw ImageError(path + ": " + msg);
  }
  p.sink = GST_APP_SINK(gst_bin_get_by_name(GST_BIN(p.pipeline), "omni_video"));
  p.bus = gst_element_get_bus(p.pipeline);
  // Preroll (PAUSED): the first frame's caps give the size and rate, the query the duration.
  GstStateChangeReturn rc = gst_element_set_state(p.pipeline, GST_STATE_PAUSED);
  if (rc == GST_STATE_CHANGE_ASYNC) rc = gst_element_get_state(p.pipeline, nullptr, nullptr, 30 * GST_SECOND);
  if (rc == GST_STATE_CHANGE_FAILURE || rc == GST_STATE_CHANGE_ASYNC) {
    const std::string why = bus_error(p.bus);
    throw ImageError(path + ": not a video GStreamer can decode" + (why.empty() ? "" : " (" + why + ")"));
  }
  GstSample* preroll = gst_app_sink_try_pull_preroll(p.sink, 5 * GST_SECOND);
  GstVideoInfo info;
  const bool have_info = preroll && gst_video_info_from_caps(&info, gst_sample_get_caps(preroll));
  if (preroll) gst_sample_unref(preroll);
  if (!have_info) throw ImageError(path + ": no video stream");
  if (info.fps_n <= 0 || info.fps_d <= 0) throw ImageError(path + ": the video has no fixed frame rate");
  const double video_fps = double(info.fps_n) / double(info.fps_d);
  gint64 duration_ns = -1;
  if (!gst_element_query_duration(p.pipeline, GST_FORMAT_TIME, &duration_ns) || duration_ns <= 0)
    throw ImageError(path + ": the video's duration is unknown");
  const double total_d = std::round(double(duration_ns) / 1e9 * video_fps);
  if (total_d < 1 || total_d > double(kMaxFileFrames))
    throw ImageError(path + ": " + std::to_string(int64_t(total_d)) + " frames (" + std::to_string(video_fps) +
                     " fps); at most " + std::to_string(kMaxFileFrames) + " are read");
  const int total = int(total_d);
  const std::vector<int> keep = sample_frame_indices(total, video_fps, fps, 2, 4, int(limits::kMaxVideoFrames));
  const int64_t frame_bytes = int64_t(info.width) * info.height * 3;
  if (frame_bytes * int64_t(keep.size()) > limits::kMaxVideoDecodedBytes)
    throw ImageError(path + ": " + std::to_string(keep.size()) + " sampled frames of " + std::to_string(info.width) +
                     "x" + std::to_string(info.height) + " exceed " +
                     std::to_string(limits::kMaxVideoDecodedBytes >> 20) + " MB");
  SampledVideo out;
  out.total_frames = total;
  out.video_fps = video_fps;
  out.fps = double(keep.size()) / double(total) * video_fps;
  gst_element_set_state(p.pipeline, GST_STATE_PLAYING);
  size_t next = 0;  // the next index of `keep`
  int index = 0;
  while (next < keep.size()) {
    GstSample* sample = gst_app_sink_try_pull_sample(p.sink, 10 * GST_SECOND);
    if (!sample) {
      const std::string why = bus_error(p.bus);
      if (!why.empty()) throw ImageError(path + ": " + why);
      break;  // the stream ended early: fewer frames than its duration said
    }
    if (index == keep[next]) {
      GstBuffer* buffer = gst_sample_get_buffer(sample);
      GstVideoInfo fi;
      GstMapInfo map;
      if (buffer && gst_video_info_from_caps(&fi, gst_sample_get_caps(sample)) &&
          gst_buffer_map(buffer, &map, GST_MAP_READ)) {
        ImageInput frame;
        frame.format = "rgb";
        frame.width = GST_VIDEO_INFO_WIDTH(&fi);
        frame.height = GST_VIDEO_INFO_HEIGHT(&fi);
        const size_t row = size_t(frame.width) * 3, stride = size_t(GST_VIDEO_INFO_PLANE_STRIDE(&fi, 0));
        const size_t offset = size_t(GST_VIDEO_INFO_PLANE_OFFSET(&fi, 0));
        const bool fits = frame.width == info.width && frame.height == info.height && stride >= row &&
                          offset + stride * size_t(frame.height - 1) + row <= map.size;
        if (fits) {
          frame.bytes.resize(row * size_t(frame.height));
          for (int y = 0; y < frame.height; ++y)
            std::copy_n(map.data + offset + stride * size_t(y), row, frame.bytes.data() + row * size_t(y));
        }
        gst_buffer_unmap(buffer, &map);
        if (!fits) {
          gst_sample_unref(sample);
          throw ImageError(path + ": frame " + std::to_string(index) + " changes the video's size");
        }
        out.frames.push_back(std::move(frame));
      }
      // The same index may be picked twice when fewer frames than asked exist; repeat it then.
      while (next < keep.size() && keep[next] == index) {
        if (out.frames.size() < next + 1) out.frames.push_back(out.frames.back());
        ++next;
      }
    }
    gst_sample_unref(sample);
    ++index;
  }
  if (out.frames.size() < 2) throw ImageError(path + ": the video has " + std::to_string(out.frames.size()) + " frame(s) to sample");
  return out;
}

}  // namespace omni::video
