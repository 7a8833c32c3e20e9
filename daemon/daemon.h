// omnid's orchestration: one event loop owns the dialog state; the model loads on a loader thread,
// turns run on the engine worker, audio arrives on the capture thread and leaves through the
// playback backend. Those threads post to the loop; only the loop publishes events and replies.
//
// Dialog rules (docs/operations.md):
//  - one turn at a time: ask/say while a turn runs get `busy`;
//  - an utterance ended by the VAD becomes a turn (source "voice");
//  - with audio.barge_in, speech detected during a turn cancels it (reason "barge_in") and the
//    new utterance becomes the next turn; without it the microphone is ignored during a turn;
//  - state: DaemonState (daemon_state.h).
// Capture supervision lives in CaptureSupervisor, speech output in SpeechOutput; this class owns the
// dialog and the requests.
#pragma once
#include <omni/engine.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "daemon/config.h"
#include "ipc/control_server.h"
#include "audio/device/vad.h"
#include "daemon/capture_supervisor.h"
#include "daemon/daemon_state.h"
#include "daemon/engine_worker.h"
#include "daemon/event_loop.h"
#include "daemon/notify.h"
#include "daemon/speech_output.h"

namespace omnid {

using ModelLoader = std::function<std::unique_ptr<omni::Model>(const omni::LoadOptions&)>;

class Daemon {
 public:
  Daemon(Config config, std::string config_path, ModelLoader loader);
  ~Daemon();
  // Runs until SIGTERM/SIGINT; returns the process exit code.
  int run();

 private:
  struct ActiveTurn {
    uint64_t id = 0;
    std::string source;  // voice | ask | say
    bool say = false;
    bool speak = true;
    int64_t started_ms = 0;
    bool speech_started = false;
    bool engine_done = false;
    size_t speech_samples = 0;
    std::string text;  // the answer so far (response.delta pieces)
  };

  // start-up (daemon.cpp)
  void start_loading();
  void on_model_loaded(std::unique_ptr<omni::Model> model);
  void fail(const std::string& message);
  CaptureSupervisor::Listener capture_listener();
  CaptureSupervisor::Settings capture_settings() const;
  // A failed or ended input is rebuilt by the supervisor (device.lost / device.restored events here).
  void on_capture_lost(const std::string& reason, int retry_in_ms, bool first);
  void on_capture_restored(int64_t down_ms, int attempts);
  // A failed speech output (device error, full disk) is reopened before the next turn.
  void on_output_failed(uint64_t turn_id, const std::string& error);
  void reopen_output_if_lost();
  void watchdog_tick();
  void on_signal(int signo);
  void shutdown(int exit_code);

  // requests (commands.cpp)
  void drain_requests();
  void handle(const omni::ipc::IncomingRequest& in);
  nlohmann::json status_fields() const;
  // The sampling in effect for the next turn (the checkpoint's defaults under model.sampling and `set`);
  // seed null: a fresh one each turn.
  nlohmann::json sampling_fields() const;
  void apply_sampling(const omni::ipc::SamplingUpdate& update);
  // Re-reads the config file. false: kept the running configuration, `error` says why.
  bool reload(std::string& error, nlohmann::json& details,
              omni::ipc::ErrorCode* code = nullptr);  // `code`: what to answer a reload request
  void apply_live_settings(const Config& next);
  // Runs `job` on the engine thread and answers `h` once it has run: {} , or `internal` "<what> failed: …"
  // with an error event.
  void apply_then_reply(const omni::ipc::ReplyHandle& h, std::function<void(omni::Session&)> job,
                        const std::string& what);
  void change_system_prompt(const std::string& prompt);
  // Limits said up front. A system prompt must leave room for a turn: its prompt tokens plus max_new_tokens
  // within context_tokens (else bad_request with the count); a turn's prompt must fit with the system prompt
  // (else context_full). nullopt: fits (or no model to count with yet).
  std::optional<omni::ipc::Error> check_system_prompt(const std::string& prompt, int max_new_tokens) const;
  std::optional<omni::ipc::Error> check_turn_fits(const omni::UserTurn& input) const;

  // turns and audio (turns.cpp)
  std::optional<omni::ipc::Error> start_turn(const std::string& source, TurnJob job, uint64_t& turn_id);
  void cancel_turn(const std::string& reason);
  void on_engine_text(uint64_t turn_id, std::string text);
  void on_engine_first_audio(uint64_t turn_id, int64_t at_ms);
  void on_engine_done(uint64_t turn_id, omni::TurnResult result);
  void on_engine_failed(uint64_t turn_id, const std::string& error, bool device_lost);
  void on_playback_drained(uint64_t turn_id);
  void finish_turn_if_complete();
  // Stream positions on both clocks: `at` is when the capture stream was at that position (monotonic and
  // Unix ms), from the moment the VAD decided, when the endpointer had seen the stream up to its stream_ms().
  struct StreamTime {
    int64_t mono_ms = 0;
    int64_t ts_ms = 0;
  };
  StreamTime stream_time(double stream_ms) const;  // capture thread, endpointer_mu_ held
  void on_vad_start(double stream_ms, StreamTime at);
  void on_utterance(omni::audio::Utterance utterance, double stream_ms, StreamTime at);
  void engine_audio(uint64_t turn_id, const float* samples, size_t count);  // worker thread
  omni::GenerateOptions generate_options(bool speak);  // draws the turn's seed
  omni::audio::VadParams vad_params() const;
  void rebuild_endpointer();

  // state
  DaemonState current_state() const;
  void update_state();
  void publish(std::string_view name, nlohmann::json fields = nlohmann::json::object());
  void publish_error(const std::string& code, const std::string& message, uint64_t turn_id = 0);

  Config config_;
  std::string config_path_;
  ModelLoader loader_;
  EventLoop loop_;
  ServiceNotifier notifier_;
  std::unique_ptr<omni::ipc::ControlServer> server_;

  // model and engine
  std::thread loader_thread_;
  std::atomic<double> load_fraction_{0};
  std::atomic<int64_t> load_progress_ms_{0};
  std::string load_what_;
  std::unique_ptr<omni::Model> model_;
  std::unique_ptr<EngineWorker> worker_;
  bool ready_ = false;

  // audio
  CaptureSupervisor capture_;
  std::mutex endpointer_mu_;  // the capture thread feeds it, the loop rebuilds/resets it
  std::unique_ptr<omni::audio::VoiceDetector> detector_;
  std::unique_ptr<omni::audio::Endpointer> endpointer_;
  std::atomic<bool> mic_open_{false};
  bool listening_ = true;

  SpeechOutput speech_;
  std::string speaker_;
  std::string system_prompt_;
  SamplingConfig sampling_;        // model.sampling, changed by `set`
  std::mt19937_64 seed_source_{std::random_device{}()};  // a turn's seed when none is configured

  // dialog
  std::optional<ActiveTurn> turn_;
  uint64_t next_turn_id_ = 1;  // from the start's Unix time in ms: turn ids stay unique across restarts
  std::string instance_;       // this process's id, in every reply and daemon.* event
  DaemonState state_ = DaemonState::loading;
  int64_t started_ms_ = 0;
  int exit_code_ = 0;
  bool stopping_ = false;
};

}  // namespace omnid
