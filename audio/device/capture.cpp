#include "audio/device/capture.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>

#include <chrono>
#include <stdexcept>

namespace omni::audio {

int64_t monotonic_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double monotonic_ms_precise() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct AudioCapture::Gst {
  GstElement* pipeline = nullptr;
  GstAppSink* sink = nullptr;
  GstBus* bus = nullptr;
  ~Gst() {
    if (pipeline) gst_element_set_state(pipeline, GST_STATE_NULL);
    if (bus) gst_object_unref(bus);
    if (sink) gst_object_unref(sink);
    if (pipeline) gst_object_unref(pipeline);
  }
};

AudioCapture::AudioCapture(const std::string& source_description, Callbacks callbacks)
    : gst_(std::make_unique<Gst>()), callbacks_(std::move(callbacks)) {
  GError* err = nullptr;
  if (!gst_init_check(nullptr, nullptr, &err)) {
    std::string msg = err ? err->message : "unknown reason";
    if (err) g_error_free(err);
    throw std::runtime_error("GStreamer cannot initialise: " + msg);
  }
  // sync=true: buffers are handed over at their clock time, so a file source behaves like a live one.
  description_ = source_description +
                 " ! audioconvert ! audioresample ! appsink name=omnid_capture sync=true max-buffers=200 drop=false "
                 "caps=audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";
  gst_->pipeline = gst_parse_launch(description_.c_str(), &err);
  if (err) {
    std::string msg = err->message;
    g_error_free(err);
    throw std::runtime_error("audio.input.pipeline '" + source_description + "': " + msg);
  }
  if (!gst_->pipeline) throw std::runtime_error("audio.input.pipeline '" + source_description + "' is empty");
  gst_->sink = GST_APP_SINK(gst_bin_get_by_name(GST_BIN(gst_->pipeline), "omnid_capture"));
  gst_->bus = gst_element_get_bus(gst_->pipeline);
}

AudioCapture::~AudioCapture() { stop(); }

std::string AudioCapture::take_bus_error(int timeout_ms) {
  GstMessage* msg = gst_bus_timed_pop_filtered(gst_->bus, static_cast<GstClockTime>(timeout_ms) * GST_MSECOND,
                                               GstMessageType(GST_MESSAGE_ERROR));
  if (!msg) return {};
  GError* err = nullptr;
  gchar* debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  std::string text = std::string(GST_OBJECT_NAME(msg->src)) + ": " + (err ? err->message : "error");
  if (debug) text += std::string(" (") + debug + ")";
  if (err) g_error_free(err);
  g_free(debug);
  gst_message_unref(msg);
  return text;
}

void AudioCapture::start(bool playing) {
  const GstStateChangeReturn rc = gst_element_set_state(gst_->pipeline, GST_STATE_PAUSED);
  GstStateChangeReturn settled = rc;
  if (rc == GST_STATE_CHANGE_ASYNC)
    settled = gst_element_get_state(gst_->pipeline, nullptr, nullptr, 10 * GST_SECOND);
  if (settled == GST_STATE_CHANGE_FAILURE || settled == GST_STATE_CHANGE_ASYNC) {
    std::string why = take_bus_error(100);
    gst_element_set_state(gst_->pipeline, GST_STATE_NULL);
    throw std::runtime_error("audio input cannot start: " +
                             (why.empty() ? std::string("the pipeline did not reach PAUSED") : why));
  }
  if (playing) set_playing(true);
  stop_requested_ = false;
  last_alive_ms_ = monotonic_ms();
  thread_running_ = true;
  thread_ = std::thread([this] { run(); });
}

void AudioCapture::set_playing(bool playing) {
  gst_element_set_state(gst_->pipeline, playing ? GST_STATE_PLAYING : GST_STATE_PAUSED);
}

void AudioCapture::stop() {
  stop_requested_ = true;
  if (thread_.joinable()) thread_.join();
  if (gst_ && gst_->pipeline) gst_element_set_state(gst_->pipeline, GST_STATE_NULL);
}

// The buffer's first sample was captured at running time PTS, i.e. at base_time + PTS on the pipeline clock;
// that clock's distance from now, taken on both clocks, puts it on the monotonic clock. A buffer without a
// timestamp (or a pipeline without a clock yet) was captured just before it arrived: now less its duration.
double AudioCapture::capture_time_ms(GstBuffer* buffer, size_t count) {
  const double now = monotonic_ms_precise();
  const double fallback = now - static_cast<double>(count) * 1000.0 / 16000.0;
  if (!GST_BUFFER_PTS_IS_VALID(buffer)) return fallback;
  GstClock* clock = gst_element_get_clock(gst_->pipeline);
  if (!clock) return fallback;
  const GstClockTime clock_now = gst_clock_get_time(clock);
  gst_object_unref(clock);
  const GstClockTime base = gst_element_get_base_time(gst_->pipeline);
  const double captured_ns = static_cast<double>(base) + static_cast<double>(GST_BUFFER_PTS(buffer));
  return now - (static_cast<double>(clock_now) - captured_ns) / 1e6;
}

void AudioCapture::run() {
  bool eos_reported = false;
  while (!stop_requested_) {
    last_alive_ms_ = monotonic_ms();
    std::string error = take_bus_error(0);
    if (!error.empty()) {
      // A failed source (device unplugged, unreadable file) ends the thread: the daemon reports
      // it, and the watchdog stops so that systemd restarts the service.
      if (callbacks_.on_error) callbacks_.on_error(error);
      break;
    }
    GstSample* sample = gst_app_sink_try_pull_sample(gst_->sink, 50 * GST_MSECOND);
    if (!sample) {
      if (gst_app_sink_is_eos(gst_->sink) && !eos_reported) {
        eos_reported = true;
        eos_ = true;
        if (callbacks_.on_end_of_stream) callbacks_.on_end_of_stream();
      }
      if (eos_reported) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    GstBuffer* buffer = gst_sample_get_buffer(sample);
    GstMapInfo map;
    if (buffer && gst_buffer_map(buffer, &map, GST_MAP_READ)) {
      if (callbacks_.on_samples) {
        const size_t count = map.size / sizeof(float);
        callbacks_.on_samples(reinterpret_cast<const float*>(map.data), count, capture_time_ms(buffer, count));
      }
      gst_buffer_unmap(buffer, &map);
    }
    gst_sample_unref(sample);
  }
  thread_running_ = false;
}

}  // namespace omni::audio
