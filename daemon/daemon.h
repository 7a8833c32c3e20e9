// omnid's orchestration: one event loop owns the dialog state; the model loads on a loader thread,
// turns run on the engine worker, audio arrives on the capture thread and leaves through the
// playback backend. Those threads post to the loop; only the loop publishes events and replies.
//
// Dialog rules (docs/operations.md):
//  - one turn at a time: ask/say while a turn runs get `busy`;
//  - an utterance ended by the VAD becomes a turn (source "voice");
//  - with audio.barge_in, speech detected during a turn cancels it (reason "barge_in") and the
//    new utterance becomes the next turn; without it the microphone is ignored during a turn;
//  - with audio.vad.speculate_after_ms, a pause in the user's speech starts the answer early on the
//    engine (speculation.cpp); nothing of it is published or played until the endpoint commits it, and
//    speech resuming takes it back (KV rollback) as if it never ran;
//  - state: DaemonState (daemon_state.h).
// Capture supervision lives in CaptureSupervisor, speech output in SpeechOutput; this class owns the
// dialog and the requests.
#pragma once
#include <omni/engine.h>

#include <atomic>
#include <deque>
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
#include "daemon/camera.h"
#include "daemon/capture_supervisor.h"
#include "daemon/daemon_state.h"
#include "daemon/engine_worker.h"
#include "daemon/image_check.h"
#include "daemon/event_loop.h"
#include "daemon/notify.h"
#include "daemon/speech_output.h"
#include "daemon/tools.h"

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
    uint64_t job = 0;    // the engine worker's id for its job: `id`, or the speculation's it was committed from
    std::string source;  // voice | ask | say
    bool say = false;
    bool speak = true;
    int64_t started_ms = 0;
    bool speech_started = false;
    bool engine_done = false;
    size_t speech_samples = 0;
    int64_t speech_end_ms = -1;  // voice turns: monotonic ms of the utterance's last voiced frame
    bool speculated = false;     // committed from a speculation
    std::string text;            // the answer so far (response.delta pieces)
    TurnTools tools;             // tool-call rounds (tool_turns.cpp)
  };
  // A turn started on a pause in the user's speech (speculation.cpp). It runs on the engine under a
  // job id of its own (kSpeculationJobBase + n, never a turn id); its text, audio and result are held
  // here until the endpoint commits it as the next turn, or dropped when speech resumes.
  struct Speculation {
    uint64_t job = 0;
    std::vector<float> samples;       // the utterance it answers
    int64_t started_ms = 0;
    std::vector<std::string> text;    // response.delta pieces held back
    std::optional<omni::TurnResult> result;  // the engine finished
    std::optional<std::string> error;        // the engine failed (e.g. the context is full)
    size_t images = 0, videos = 0;           // the camera's frame or clip it carries (turn.start)
  };
  static constexpr uint64_t kSpeculationJobBase = uint64_t(1) << 62;

  // start-up (daemon.cpp)
  void start_loading();
  void on_model_loaded(std::unique_ptr<omni::Model> model);
  void fail(const std::string& message);
  CaptureSupervisor::Listener capture_listener();
  CaptureSupervisor::Settings capture_settings() const;
  // A failed or ended input is rebuilt by the supervisor (device.lost / device.restored events here).
  void on_capture_lost(const std::string& reason, int retry_in_ms, bool first);
  void on_capture_restored(int64_t down_ms, int attempts);
  // The camera (camera.pipeline): made once the model is ready; device.lost/restored with "device": "camera".
  Camera::Listener camera_listener();
  // Adds the camera's latest frame to `input` (after its images), as config_.camera sizes it. false: no frame.
  bool attach_camera_frame(omni::UserTurn& input) const;
  // A turn from `source` ("voice" or "ask") gets the frame by itself (camera.attach), when there is one.
  void attach_camera_by_config(const std::string& source, omni::UserTurn& input) const;
  // A failed speech output (device error, full disk) is reopened before the next turn.
  void on_output_failed(uint64_t job, const std::string& error);  // job: ActiveTurn::job
  void reopen_output_if_lost();
  // Points the speech output's publisher at the event socket (audio.output.publish) or removes it.
  void install_speech_publisher();
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
  static void update_sampling(const omni::ipc::SamplingUpdate& update, SamplingConfig& sampling);
  // The voice of the model named `name` (case-insensitive); nullopt when it has none such.
  std::optional<std::string> find_speaker(const std::string& name) const;
  std::string unknown_speaker_message(const std::string& name) const;  // not_found's message, with the voices
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
  // An ask, its input ready: starts it, queues it (queue) or cancels the running turn first (preempt), and
  // answers `h` (commands.cpp).
  void take_ask(const omni::ipc::ReplyHandle& h, TurnJob job, bool queue, bool preempt);
  // An ask with images: they are decoded and counted on image_checker_ (check_turn_images), then the ask is
  // taken as any other, or `h` gets the check's error (commands.cpp).
  void check_images_then_take_ask(const omni::ipc::ReplyHandle& h, TurnJob job, bool queue, bool preempt);

  // turns and audio (turns.cpp)
  std::optional<omni::ipc::Error> start_turn(const std::string& source, TurnJob job, uint64_t& turn_id);
  // `stop`: the stop of the response.done sent for an unfinished answer.
  void cancel_turn(const std::string& reason, omni::StopReason stop = omni::StopReason::Cancelled);
  // The queue of asks (turns.cpp): the oldest starts once no turn runs. Posted to the loop after a turn ends, so
  // that what ended it (a barge-in's utterance) starts first.
  void start_queued_soon();
  void start_queued();
  bool cancel_queued(uint64_t turn_id, const std::string& reason);  // false: no such queued ask
  void on_engine_text(uint64_t turn_id, std::string text);
  // `handed_ms`: when the engine handed the first chunk over (latencies count to it); `play_ms`: when the
  // output will play it (speech.start's at_mono_ms), -1 if it did not say.
  void on_engine_first_audio(uint64_t turn_id, double handed_ms, double play_ms);
  void on_engine_done(uint64_t turn_id, omni::TurnResult result);
  void on_engine_failed(uint64_t turn_id, const std::string& error, bool device_lost);
  // The turn did not fit in the context (the engine's ContextFullError): error `context_full`, response.done
  // with stop context_full, turn.cancelled (reason error). A speculation's is a failure like any other.
  void on_engine_context_full(uint64_t job, const std::string& error);
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
  // `speech_end_ms`: monotonic ms of the utterance's last voiced frame; `stream_ms`/`at`: where the stream was
  // when the endpointer ended the utterance.
  void on_utterance(omni::audio::Utterance utterance, int64_t speech_end_ms, double stream_ms, StreamTime at);
  void engine_audio(uint64_t turn_id, const float* samples, size_t count);  // worker thread
  omni::GenerateOptions generate_options(bool speak);  // draws the turn's seed
  omni::audio::VadParams vad_params() const;
  // user.transcript: the model's transcription of a voice turn's utterance (turns.cpp). Queued on the engine
  // behind the turn, so it runs once the answer is generated and never delays it; the session is marked before
  // it and rolled back after (the conversation does not keep it). Off with model.user_transcript false.
  void transcribe_user(uint64_t turn_id, const std::vector<float>& audio_16k);
  // speculation.cpp
  void on_vad_pause(omni::audio::Utterance utterance);
  void drop_speculation(const std::string& why);
  // The endpoint came with the same utterance: the speculation becomes the turn. false: there was none
  // to commit (or it failed); the caller starts the turn as usual.
  bool commit_speculation(const omni::audio::Utterance& utterance, int64_t speech_end_ms);
  // Records a voice turn's end-of-speech -> first audio for status's percentiles.
  void record_first_audio_latency(double ms);
  nlohmann::json latency_status() const;
  void rebuild_endpointer();

  // tools (tool_turns.cpp)
  void register_tools(const omni::ipc::ReplyHandle& h, const omni::ipc::RegisterToolsRequest& r);
  void unregister_tools(const omni::ipc::ReplyHandle& h);
  void apply_tools(const omni::ipc::ReplyHandle& h, ToolRegistry next, nlohmann::json reply);
  void tool_result(const omni::ipc::ReplyHandle& h, const omni::ipc::ToolResultRequest& r);
  // ask's tool_choice and response_format into the turn's options; an error names the field.
  std::optional<omni::ipc::Error> ask_tool_options(const omni::ipc::AskRequest& r, omni::GenerateOptions& o) const;
  // The engine's answer ended with calls: publishes them and waits for their results (true), or there
  // were none (false: the turn finishes as usual).
  bool on_tool_calls(omni::TurnResult& result);
  void continue_after_tools();  // every call of the round has its result: the model goes on
  void tools_tick();            // times out calls (tools.call_timeout_ms)
  void cancel_tool_calls(const std::string& reason);

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
  // Why this model takes no images ("": it does): it has no vision tower, or loading the tower failed (the vision
  // tower loads with the model, so that no ask pays for it and it never loads beside a turn).
  std::string vision_refusal_;
  // Checks asks' images off the loop (image_check.h); made at the first ask with images. Declared after model_:
  // it is destroyed, its thread joined, before the model its checks use.
  std::unique_ptr<ImageChecker> image_checker_;
  bool ready_ = false;

  // audio
  CaptureSupervisor capture_;
  std::unique_ptr<Camera> camera_;
  std::mutex endpointer_mu_;  // the capture thread feeds it, the loop rebuilds/resets it
  std::unique_ptr<omni::audio::VoiceDetector> detector_;
  std::unique_ptr<omni::audio::Endpointer> endpointer_;
  std::atomic<bool> mic_open_{false};
  bool mic_frame_is_echo_ = false;  // endpointer_mu_: the frame being pushed may hold omnid's own voice
  bool listening_ = true;

  SpeechOutput speech_;
  std::string speaker_;
  std::string system_prompt_;
  SamplingConfig sampling_;        // model.sampling, changed by `set`
  ToolRegistry tools_;             // register_tools
  std::mt19937_64 seed_source_{std::random_device{}()};  // a turn's seed when none is configured

  // dialog
  std::optional<ActiveTurn> turn_;
  // asks with "queue": true that wait for the running turn, oldest first; their turn ids are given when queued.
  static constexpr size_t kMaxQueuedAsks = 8;
  struct QueuedAsk {
    uint64_t turn_id = 0;
    TurnJob job;
  };
  std::deque<QueuedAsk> queued_asks_;
  uint64_t next_turn_id_ = 1;  // from the start's Unix time in ms: turn ids stay unique across restarts
  std::string instance_;       // this process's id, in every reply and daemon.* event
  std::optional<Speculation> spec_;
  uint64_t next_speculation_job_ = kSpeculationJobBase;
  std::deque<double> first_audio_latencies_;  // recent voice turns' since_speech_end_ms
  DaemonState state_ = DaemonState::loading;
  int64_t started_ms_ = 0;
  int exit_code_ = 0;
  bool stopping_ = false;
};

}  // namespace omnid
