// Runs the engine's Session on its own thread, one job at a time, in submission order.
//
// The Session is not thread-safe, so everything that touches it (turns, reset, system prompt)
// goes through this queue; only cancel() crosses threads, as the engine allows. The listener's
// callbacks run on the worker thread: the daemon forwards them to its event loop.
#pragma once
#include <omni/engine.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

namespace omnid {

struct TurnJob {
  uint64_t turn_id = 0;
  bool say = false;             // speak `input.text` verbatim instead of answering it
  // A speculative turn: the session is marked before it runs (drop_speculation() rolls it back) and it
  // never drops the oldest turns (a turn that would need to fails instead, changing nothing).
  bool speculative = false;
  omni::UserTurn input;
  omni::GenerateOptions options;
  // Work on the input too slow for the event loop (decoding and resampling a request's WAV; later images
  // and pushed audio): run on the worker thread just before the turn. What it throws fails the turn
  // (on_failed), as an engine error does. The loop has already checked the input's bounds.
  std::function<void(omni::UserTurn&)> prepare;
  int64_t audio_ms = -1;  // the input's audio duration when `prepare` makes the audio (turn.start's audio_ms)
  // Set: the job continues the turn after tool calls (Session::respond_tool_results); `input` is unused.
  std::optional<std::vector<omni::ToolResult>> tool_results;
};

struct EngineListener {
  std::function<void(uint64_t turn_id)> on_begin;
  std::function<void(uint64_t turn_id, std::string_view text)> on_text;
  std::function<void(uint64_t turn_id, const float* samples, size_t count)> on_audio;
  std::function<void(uint64_t turn_id, omni::TurnResult&& result)> on_done;
  // `device_lost`: an omni::DeviceError; the engine's context may be unusable.
  std::function<void(uint64_t turn_id, const std::string& error, bool device_lost)> on_failed;
  // The turn did not fit in the context (omni::ContextFullError); the session is usable.
  std::function<void(uint64_t turn_id, const std::string& error)> on_context_full;
};

// Test-only fault injection, compiled in and inert unless the environment variable is set (docs/reliability.md):
// OMNID_FAULT_DEVICE_ERROR_AT_TURN=N makes the N-th turn this worker runs (1-based) throw omni::DeviceError
// from its first generated token, as the CUDA backend does when a kernel fails. A GPU-less CI cannot
// produce a real poisoned context; this exercises the same path from the engine's exception outwards.
constexpr const char* kFaultDeviceErrorEnv = "OMNID_FAULT_DEVICE_ERROR_AT_TURN";

class EngineWorker {
 public:
  EngineWorker(std::unique_ptr<omni::Session> session, EngineListener listener);
  ~EngineWorker();  // cancels what runs and joins
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  void submit(TurnJob job);
  // A job on the session between turns (reset, set_system_prompt). On the worker thread, after it ran:
  // `on_applied` when it succeeded (context_used() already tells its effect), else `on_error` with the
  // exception's message (a DeviceError also goes to the listener's on_failed).
  void submit_control(std::function<void(omni::Session&)> fn,
                      std::function<void(const std::string&)> on_error = nullptr,
                      std::function<void()> on_applied = nullptr);
  // Cancels the turn if it is queued or running, or if it waits for tool results; harmless when it already
  // finished.
  void cancel(uint64_t turn_id);
  // Takes a speculative turn back without a trace: cancels it and, once it has stopped, rolls the
  // session back to the mark made before it ran (Session::rollback: nothing is recomputed).
  // `on_error` (worker thread): the rollback was refused, the conversation keeps the turn.
  void drop_speculation(uint64_t turn_id, std::function<void(const std::string&)> on_error);
  // Cancels everything queued and running; waits up to `timeout` for the thread to end.
  bool shutdown(std::chrono::milliseconds timeout);

  bool busy() const { return busy_.load(); }
  // Monotonic ms of the last sign of life: a token, an audio chunk, a finished job, or idling.
  int64_t last_progress_ms() const { return last_progress_ms_.load(); }
  int context_used() const { return context_used_.load(); }
  // Tokens generated so far by `turn_id` when it is the turn running (or the last one run); else 0.
  size_t tokens_of(uint64_t turn_id) const {
    return counted_turn_.load() == turn_id ? tokens_.load() : 0;
  }

 private:
  struct Job {
    std::function<void()> run;
    uint64_t turn_id = 0;  // 0: a control job
  };
  void thread_main();
  void run_turn(const TurnJob& job);
  bool is_cancelled(uint64_t turn_id);
  void end_tool_wait(uint64_t turn_id);  // the turn failed: nothing continues it
  void touch();

  std::unique_ptr<omni::Session> session_;
  EngineListener listener_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::set<uint64_t> cancelled_;
  uint64_t running_turn_ = 0;
  // A turn whose answer ended with tool calls: until its continuation (a job with the same id) has run
  // without calls, or it is cancelled, only that job runs; control jobs (reset, a new system prompt) wait,
  // so that they apply once the whole answer has finished, as they do for a turn without calls.
  uint64_t tool_wait_turn_ = 0;
  bool stopping_ = false;
  std::atomic<bool> busy_{false};
  std::atomic<int64_t> last_progress_ms_{0};
  std::atomic<int> context_used_{0};
  std::atomic<uint64_t> counted_turn_{0};  // tokens_ counts this turn's tokens
  std::atomic<size_t> tokens_{0};
  std::atomic<bool> finished_{false};
  long fault_device_error_at_turn_ = 0;  // kFaultDeviceErrorEnv; 0: off
  long turns_run_ = 0;
  // Worker thread only: the mark made before the last speculative turn, and that turn's id.
  omni::SessionMark speculation_mark_;
  uint64_t speculation_turn_ = 0;
  std::thread thread_;
};

}  // namespace omnid
