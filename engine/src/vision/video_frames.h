// A video given as a folder of frame images (VideoInput, omni-run --messages): the frames, checked before they
// are decoded.
#pragma once
#include <string>
#include <vector>

#include "vision/image.h"

namespace omni {

// The PNG and JPEG files of `dir` (by extension, case-insensitive), in file-name order, decoded. Throws ImageError
// naming the folder or the frame when the folder cannot be listed, holds no frame or more than
// limits::kMaxVideoFrames, when the first frame's size times the count exceeds limits::kMaxVideoDecodedBytes
// (checked before the other frames are decoded), or when a frame is undecodable or of another size than the first.
std::vector<RgbImage> load_video_frames(const std::string& dir);

}  // namespace omni
