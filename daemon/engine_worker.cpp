#include "daemon/engine_worker.h"

#include <omni/errors.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "audio/device/capture.h"  // monotonic_ms

namespace omnid {

using omni::audio::monotonic_ms;

EngineWorker::EngineWorker(std::unique_ptr<omni::Session> session, EngineListener listener)
    : session_(std::move(session)), listener_(std::move(listener)) {
  if (const char* fault = std::getenv(kFaultDeviceErrorEnv)) fault_device_error_at_turn_ = std::atol(fault);
  touch();
  thread_ = std::thread([this] { thread_main(); });
}

EngineWorker::~EngineWorker() { shutdown(std::chrono::milliseconds(10000)); }

void EngineWorker::touch() { last_progress_ms_ = monotonic_ms(); }

void EngineWorker::submit(TurnJob job) {
  std::lock_guard lock(mu_);
  const uint64_t id = job.turn_id;
  queue_.push_back({[this, job = std::move(job)] { run_turn(job); }, id});
  cv_.notify_one();
}

void EngineWorker::submit_control(std::function<void(omni::Session&)> fn,
                                  std::function<void(const std::string&)> on_error,
                                  std::function<void()> on_applied) {
  std::lock_guard lock(mu_);
  queue_.push_back({[this, fn = std::move(fn), on_error = std::move(on_error), on_applied = std::move(on_applied)] {
                      try {
                        fn(*session_);
                        context_used_ = session_->context_used();
                        if (on_applied) on_applied();
                      } catch (const omni::DeviceError& e) {
                        if (listener_.on_failed) listener_.on_failed(0, e.what(), true);
                        if (on_error) on_error(e.what());
                      } catch (const std::exception& e) {
                        if (on_error) on_error(e.what());
                      }
                    },
                    0});
  cv_.notify_one();
}

void EngineWorker::cancel(uint64_t turn_id) {
  std::lock_guard lock(mu_);
  if (tool_wait_turn_ == turn_id) {
    tool_wait_turn_ = 0;
    cv_.notify_one();
  }
  // Only a queued or running turn is remembered (a finished one has nothing to cancel).
  const bool queued = std::any_of(queue_.begin(), queue_.end(), [&](const Job& j) { return j.turn_id == turn_id; });
  if (!queued && running_turn_ != turn_id) return;
  cancelled_.insert(turn_id);
  if (running_turn_ == turn_id) session_->cancel();
}

void EngineWorker::drop_speculation(uint64_t turn_id, std::function<void(const std::string&)> on_error) {
  cancel(turn_id);
  // Queued behind the turn, so it runs once the turn has returned (or was skipped while queued).
  submit_control(
      [this, turn_id](omni::Session& s) {
        if (speculation_turn_ != turn_id) return;  // never started: nothing to take back
        speculation_turn_ = 0;
        s.rollback(std::exchange(speculation_mark_, {}));
      },
      std::move(on_error));
}

bool EngineWorker::is_cancelled(uint64_t turn_id) {
  std::lock_guard lock(mu_);
  return cancelled_.count(turn_id) > 0;
}

bool EngineWorker::shutdown(std::chrono::milliseconds timeout) {
  if (!thread_.joinable()) return true;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (const Job& j : queue_)
      if (j.turn_id) cancelled_.insert(j.turn_id);
    queue_.clear();
    if (running_turn_) session_->cancel();
    cv_.notify_all();
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!finished_ && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (!finished_) return false;  // a stuck engine: the caller decides (the thread stays joinable)
  thread_.join();
  return true;
}

void EngineWorker::thread_main() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      // The next job: the first in the queue, or while a turn waits for tool results, its continuation.
      auto next = [&] {
        if (!tool_wait_turn_) return queue_.begin();
        return std::find_if(queue_.begin(), queue_.end(), [&](const Job& j) { return j.turn_id == tool_wait_turn_; });
      };
      while (next() == queue_.end() && !stopping_) {
        // Idle counts as progress; wake up now and then so the watchdog sees the thread alive.
        cv_.wait_for(lock, std::chrono::milliseconds(500));
        touch();
      }
      if (stopping_) break;
      const auto it = next();
      job = std::move(*it);
      queue_.erase(it);
      if (job.turn_id && cancelled_.erase(job.turn_id)) continue;  // cancelled while queued
      running_turn_ = job.turn_id;
      busy_ = true;
    }
    touch();
    job.run();
    {
      std::lock_guard lock(mu_);
      cancelled_.erase(running_turn_);
      running_turn_ = 0;
      busy_ = false;
    }
    touch();
  }
  finished_ = true;
}

void EngineWorker::run_turn(const TurnJob& job) {
  const uint64_t id = job.turn_id;
  const bool inject_device_error = fault_device_error_at_turn_ > 0 && ++turns_run_ == fault_device_error_at_turn_;
  tokens_ = 0;
  counted_turn_ = id;
  if (listener_.on_begin) listener_.on_begin(id);
  omni::Callbacks cb;
  cb.on_text = [&](std::string_view text) {
    touch();
    if (listener_.on_text) listener_.on_text(id, text);
  };
  cb.on_token = [&](int32_t) {
    touch();
    ++tokens_;
    if (inject_device_error)
      throw omni::DeviceError(std::string("CUDA error: an illegal memory access was encountered (injected by ") +
                              kFaultDeviceErrorEnv + ")");
    // A cancel() that raced with the start of respond() may have been reset by it; repeat it.
    if (is_cancelled(id)) session_->cancel();
  };
  cb.on_audio = [&](const float* samples, size_t count) {
    touch();
    if (listener_.on_audio) listener_.on_audio(id, samples, count);
  };
  omni::GenerateOptions options = job.options;
  if (job.speculative) {
    speculation_mark_ = session_->mark();
    speculation_turn_ = id;
    options.drop_oldest_turns = false;
  }
  try {
    const omni::UserTurn* input = &job.input;
    omni::UserTurn prepared;
    if (job.prepare) {
      prepared = job.input;
      job.prepare(prepared);
      input = &prepared;
    }
    omni::TurnResult result = job.say            ? session_->say(input->text, options, cb)
                              : job.tool_results ? session_->respond_tool_results(*job.tool_results, options, cb)
                                                 : session_->respond(*input, options, cb);
    context_used_ = session_->context_used();
    {
      // An answer that ends with calls continues once the daemon has the results (or cancels the turn).
      std::lock_guard lock(mu_);
      const bool calls = !job.say && !result.tool_calls.empty() && result.stop == omni::StopReason::EndOfTurn;
      tool_wait_turn_ = calls && !cancelled_.count(id) ? id : 0;
    }
    if (listener_.on_done) listener_.on_done(id, std::move(result));
  } catch (const omni::DeviceError& e) {
    end_tool_wait(id);
    if (listener_.on_failed) listener_.on_failed(id, e.what(), true);
  } catch (const omni::ContextFullError& e) {
    context_used_ = session_->context_used();
    if (listener_.on_context_full) listener_.on_context_full(id, e.what());
  } catch (const std::exception& e) {
    end_tool_wait(id);
    context_used_ = session_->context_used();
    if (listener_.on_failed) listener_.on_failed(id, e.what(), false);
  }
}

void EngineWorker::end_tool_wait(uint64_t turn_id) {
  std::lock_guard lock(mu_);
  if (tool_wait_turn_ == turn_id) tool_wait_turn_ = 0;
}

}  // namespace omnid
