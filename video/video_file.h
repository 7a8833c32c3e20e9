// Video files for the model (omni-run --video FILE, video items of --messages): decoded with GStreamer
// (decodebin: whatever codecs the installed plugins hold), converted to 8-bit RGB, and sampled as transformers'
// video processor samples them (docs/model.md §5.5 items 6-7).
#pragma once
#include <string>
#include <vector>

#include "omni/engine.h"

namespace omni::video {

struct SampledVideo {
  std::vector<ImageInput> frames;  // the sampled frames, format "rgb", in order
  int total_frames = 0;            // the file's frames (its duration times its frame rate)
  double video_fps = 0;            // the file's frame rate
  double fps = 0;                  // the sampled frames' rate: frames / total_frames * video_fps
};

// Decodes `path` and keeps the frames sample_frame_indices picks for `fps` over the file's frame count and rate
// (at least 4 frames, pairs, at most 768). Bounds before anything large is held: at most 100000 frames in the file,
// the kept frames at most limits::kMaxVideoDecodedBytes. Throws omni::ImageError naming the file: no such file,
// no video stream, an unknown frame rate, a decoder error (GStreamer's message), too many frames.
SampledVideo decode_video_file(const std::string& path, double fps);

}  // namespace omni::video
