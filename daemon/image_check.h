// An ask's images, checked before the ask is taken (docs/protocol.md "ask"), off the event loop: decoding and
// resizing a picture takes milliseconds to a second, and the loop answers every client.
//
// check_turn_images runs the model's own decoding and preprocessing (Model::render_prompt: the same code the
// turn runs) and counts the turn's prompt, so that a bad image or a turn too large for the context is answered
// in the ask's reply, naming the image, and never becomes a turn. ImageChecker is the thread it runs on: one
// check at a time, in order, a few waiting at most; the daemon posts each outcome back to its loop.
#pragma once
#include <omni/engine.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "ipc/protocol.h"

namespace omnid {

// nullopt: `turn` can run. Else bad_request "images[i]: <what is wrong>" (not a PNG or JPEG image, missing
// file, not a regular file, empty, aspect ratio over 200, ...; a path image's message also names the file), or
// context_full when the images alone need more tokens than the context holds or the whole prompt with
// `system_prompt` leaves no token of `context_tokens` for the answer. Thread-safe as render_prompt is.
std::optional<omni::ipc::Error> check_turn_images(const omni::Model& model, const std::string& system_prompt,
                                                  const omni::UserTurn& turn, int context_tokens);

class ImageChecker {
 public:
  // Checks waiting or running at once; one more is refused (the daemon answers `busy`).
  static constexpr size_t kMaxPending = 4;

  ImageChecker();
  ~ImageChecker();  // stop()
  ImageChecker(const ImageChecker&) = delete;
  ImageChecker& operator=(const ImageChecker&) = delete;

  // Runs `job` on the checker's thread after those before it. false: kMaxPending are already there.
  bool submit(std::function<void()> job);
  // Drops the jobs that wait and waits for the running one to return.
  void stop();

 private:
  void thread_main();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool running_job_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace omnid
