#include "daemon/image_check.h"

#include <omni/errors.h>

namespace omnid {
namespace {

using omni::ipc::ErrorCode;

// The engine names a byte image "images[i]" and a file by its path; the reply names every image by its index.
std::string name_image(const omni::UserTurn& turn, const std::string& message) {
  if (message.rfind("images[", 0) == 0) return message;
  for (size_t i = 0; i < turn.images.size(); ++i) {
    const omni::ImageInput& image = turn.images[i];
    if (image.bytes.empty() && !image.path.empty() && message.rfind(image.path + ":", 0) == 0)
      return "images[" + std::to_string(i) + "]: " + message;
  }
  return "images: " + message;
}

}  // namespace

std::optional<omni::ipc::Error> check_turn_images(const omni::Model& model, const std::string& system_prompt,
                                                  const omni::UserTurn& turn, int context_tokens) {
  size_t tokens = 0;
  try {
    tokens = model.render_prompt(system_prompt, turn).size();
  } catch (const omni::ContextFullError& e) {
    return omni::ipc::Error{ErrorCode::context_full, name_image(turn, e.what())};
  } catch (const omni::ImageError& e) {
    return omni::ipc::Error{ErrorCode::bad_request, name_image(turn, e.what())};
  } catch (const omni::DeviceError& e) {
    return omni::ipc::Error{ErrorCode::internal, std::string("images: the engine failed: ") + e.what()};
  } catch (const omni::Error& e) {  // e.g. a checkpoint whose vision preprocessor does not fit its tower
    return omni::ipc::Error{ErrorCode::bad_request, std::string("images: ") + e.what()};
  } catch (const std::exception& e) {  // not expected (std::bad_alloc): the ask fails, the daemon goes on
    return omni::ipc::Error{ErrorCode::internal, std::string("images: checking them failed: ") + e.what()};
  }
  const size_t context = static_cast<size_t>(context_tokens);
  if (tokens < context) return std::nullopt;  // at least one token of answer
  return omni::ipc::Error{ErrorCode::context_full,
                          "this turn's prompt with its " + std::to_string(turn.images.size()) + " image(s) is " +
                              std::to_string(tokens) + " tokens with the system prompt; model.context_tokens is " +
                              std::to_string(context) +
                              " (older turns are dropped to make room, but this one alone does not fit)"};
}

ImageChecker::ImageChecker() { thread_ = std::thread([this] { thread_main(); }); }

ImageChecker::~ImageChecker() { stop(); }

bool ImageChecker::submit(std::function<void()> job) {
  std::lock_guard lock(mu_);
  if (stopping_ || queue_.size() + (running_job_ ? 1 : 0) >= kMaxPending) return false;
  queue_.push_back(std::move(job));
  cv_.notify_one();
  return true;
}

void ImageChecker::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void ImageChecker::thread_main() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      running_job_ = true;
    }
    job();
    std::lock_guard lock(mu_);
    running_job_ = false;
  }
}

}  // namespace omnid
