#include "vision/video_frames.h"

#include <algorithm>
#include <filesystem>

#include "omni/errors.h"
#include "omni/limits.h"

namespace omni {

std::vector<RgbImage> load_video_frames(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw ImageError(dir + ": no such video (a video file or a folder of frames)");
  if (!fs::is_directory(dir, ec))
    throw ImageError(dir + ": not a folder of frames (the engine takes a folder of PNG or JPEG frames, or frames "
                     "decoded by the caller: omni-run decodes video files)");
  std::vector<std::string> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if ((ext == ".png" || ext == ".jpg" || ext == ".jpeg") && it->is_regular_file(ec)) {
      files.push_back(it->path().string());
      if (int64_t(files.size()) > limits::kMaxVideoFrames)
        throw ImageError(dir + ": more than " + std::to_string(limits::kMaxVideoFrames) +
                         " frames (the video processor's max_frames)");
    }
  }
  if (ec) throw ImageError(dir + ": cannot list the folder: " + ec.message());
  if (files.empty()) throw ImageError(dir + ": no PNG or JPEG frame in the folder");
  std::sort(files.begin(), files.end());
  std::vector<RgbImage> frames;
  frames.reserve(files.size());
  for (const std::string& f : files) {
    frames.push_back(load_image_file(f));
    const RgbImage& first = frames.front();
    if (frames.size() == 1) {
      const int64_t bytes = int64_t(first.width) * first.height * 3 * int64_t(files.size());
      if (bytes > limits::kMaxVideoDecodedBytes)
        throw ImageError(dir + ": " + std::to_string(files.size()) + " frames of " + std::to_string(first.width) +
                         "x" + std::to_string(first.height) + " are " + std::to_string(bytes >> 20) +
                         " MB decoded, more than " + std::to_string(limits::kMaxVideoDecodedBytes >> 20) + " MB");
    } else if (frames.back().width != first.width || frames.back().height != first.height) {
      throw ImageError(f + ": " + std::to_string(frames.back().width) + "x" + std::to_string(frames.back().height) +
                       ", but the video's first frame is " + std::to_string(first.width) + "x" +
                       std::to_string(first.height) + " (all frames of a video have one size)");
    }
  }
  return frames;
}

}  // namespace omni
