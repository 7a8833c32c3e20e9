// Computes a DecodeConstraint's next token mask on its own thread, so that the mask is ready when
// the step's logits are: start() right after the token is accepted, before the step is launched;
// wait() before sampling. The constraint must not change between the two.
#pragma once
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "grammar/tool_calls.h"

namespace omni {

class MaskWorker {
 public:
  MaskWorker() : thread_([this] { run(); }) {}
  ~MaskWorker() {
    {
      std::lock_guard<std::mutex> l(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  MaskWorker(const MaskWorker&) = delete;
  MaskWorker& operator=(const MaskWorker&) = delete;

  void start(const DecodeConstraint& c) {
    {
      std::lock_guard<std::mutex> l(mu_);
      job_ = &c;
      busy_ = true;
    }
    cv_.notify_all();
  }
  // The mask of the last start(); rethrows what computing it threw.
  const TokenBits& wait() {
    std::unique_lock<std::mutex> l(mu_);
    done_.wait(l, [&] { return !busy_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return bits_;
  }
  double total_ms() const { return total_ms_; }
  int count() const { return count_; }

 private:
  void run() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return quit_ || job_; });
      if (quit_) return;
      const DecodeConstraint* c = std::exchange(job_, nullptr);
      l.unlock();
      const auto t0 = std::chrono::steady_clock::now();
      std::exception_ptr err;
      try {
        c->mask(bits_, scratch_);
      } catch (...) {
        err = std::current_exception();
      }
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      l.lock();
      total_ms_ += ms;
      ++count_;
      error_ = err;
      busy_ = false;
      done_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, done_;
  const DecodeConstraint* job_ = nullptr;
  bool busy_ = false, quit_ = false;
  std::exception_ptr error_;
  TokenBits bits_;
  TokenTable::Scratch scratch_;
  double total_ms_ = 0;
  int count_ = 0;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace omni
