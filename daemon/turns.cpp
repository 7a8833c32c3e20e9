// The dialog: turns from voice and requests, engine results, speech playback, barge-in, state.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "daemon/daemon.h"
#include "daemon/log.h"

namespace omnid {

using omni::audio::monotonic_ms;
using omni::audio::monotonic_ms_precise;

// The user turn that asks for the transcript (with the utterance's audio before it).
constexpr const char* kUserTranscriptPrompt =
    "Transcribe the audio exactly, in the language spoken. Reply with the transcription only.";

omni::GenerateOptions Daemon::generate_options(bool speak) {
  omni::GenerateOptions o;
  o.max_new_tokens = config_.model.max_new_tokens;
  o.speak = speak && model_ && model_->has_talker();
  o.speaker = speaker_;
  o.max_speech_frames = config_.model.max_speech_frames;
  o.sampling = effective_sampling(model_ ? model_->default_sampling() : omni::Sampling{}, sampling_, seed_source_());
  return o;
}

std::optional<omni::ipc::Error> Daemon::start_turn(const std::string& source, TurnJob job, uint64_t& turn_id) {
  using omni::ipc::ErrorCode;
  if (!ready_ || !worker_) return omni::ipc::Error{ErrorCode::unavailable, "the model is still loading"};
  if (stopping_) return omni::ipc::Error{ErrorCode::unavailable, "omnid is stopping"};
  if (turn_)
    return omni::ipc::Error{ErrorCode::busy, "turn " + std::to_string(turn_->id) + " is running; cancel it" +
                                                 (job.say ? " or wait for its end" : ", wait for its end, or ask with queue: true")};
  if (job.say && !(model_ && model_->has_talker()))
    return omni::ipc::Error{ErrorCode::unavailable, "the model has no talker; it cannot speak"};
  if (!job.say)
    if (auto err = check_turn_fits(job.input)) return err;
  // A request goes before an answer the user has not finished asking for.
  if (spec_) drop_speculation("a request started a turn");
  ActiveTurn t;
  t.id = job.turn_id ? job.turn_id : next_turn_id_++;  // a queued ask got its id when it was queued
  t.job = t.id;
  t.source = source;
  t.say = job.say;
  t.speak = job.options.speak;
  t.started_ms = monotonic_ms();
  job.turn_id = t.id;
  reopen_output_if_lost();
  turn_ = t;
  speech_.allow(t.job, t.id);
  nlohmann::json fields = {{"turn_id", t.id}, {"source", source}};
  if (!job.input.text.empty()) fields["text"] = job.input.text;
  if (!job.input.images.empty()) fields["images"] = job.input.images.size();
  if (!job.input.videos.empty()) fields["videos"] = job.input.videos.size();
  if (job.audio_ms >= 0) fields["audio_ms"] = job.audio_ms;
  else if (!job.input.audio_16k.empty()) fields["audio_ms"] = static_cast<int64_t>(job.input.audio_16k.size() / 16);
  else if (!job.input.videos.empty() && !job.input.videos[0].audio_16k.empty())  // the utterance in a camera clip
    fields["audio_ms"] = static_cast<int64_t>(job.input.videos[0].audio_16k.size() / 16);
  publish("turn.start", fields);
  worker_->submit(std::move(job));
  update_state();
  turn_id = t.id;
  return std::nullopt;
}

void Daemon::cancel_turn(const std::string& reason, omni::StopReason stop) {
  if (!turn_) return;
  const uint64_t id = turn_->id;
  worker_->cancel(turn_->job);
  speech_.abort();
  cancel_tool_calls(reason);
  log_info("turn %llu cancelled (%s)", static_cast<unsigned long long>(id), reason.c_str());
  // An answer that had not finished ends as documented: response.done with what was said so far, then
  // turn.cancelled. (A finished answer already had its response.done; `say` has none.)
  if (!turn_->say && !turn_->engine_done)
    publish("response.done", {{"turn_id", id},
                              {"text", turn_->text},
                              {"tokens", worker_->tokens_of(turn_->job)},
                              {"stop", std::string(omni::to_string(stop))}});
  turn_.reset();
  publish("turn.cancelled", {{"turn_id", id}, {"reason", reason}});
  update_state();
  start_queued_soon();
}

void Daemon::start_queued_soon() {
  if (!queued_asks_.empty()) loop_.post([this] { start_queued(); });
}

void Daemon::start_queued() {
  while (!turn_ && !queued_asks_.empty() && !stopping_) {
    QueuedAsk next = std::move(queued_asks_.front());
    queued_asks_.pop_front();
    uint64_t id = 0;
    if (auto err = start_turn("ask", std::move(next.job), id)) {
      publish_error(std::string(omni::ipc::to_string(err->code)), err->message, next.turn_id);
      publish("turn.cancelled", {{"turn_id", next.turn_id}, {"reason", "error"}});
    }
  }
}

bool Daemon::cancel_queued(uint64_t turn_id, const std::string& reason) {
  for (auto it = queued_asks_.begin(); it != queued_asks_.end(); ++it) {
    if (it->turn_id != turn_id) continue;
    queued_asks_.erase(it);
    publish("turn.cancelled", {{"turn_id", turn_id}, {"reason", reason}});
    return true;
  }
  return false;
}

// Worker thread: audio goes straight to the output (latency); the loop only hears about the first chunk.
// `turn_id` is the engine job's id (ActiveTurn::job). A running speculation's audio is held back.
void Daemon::engine_audio(uint64_t turn_id, const float* samples, size_t count) {
  const double before = monotonic_ms_precise();  // when a turn's first chunk was handed over (its latency)
  const auto r = speech_.write(turn_id, model_->speech_sample_rate(), samples, count);
  if (r.dropped || r.held) return;
  if (!r.error.empty()) {
    loop_.post([this, turn_id, error = r.error] { on_output_failed(turn_id, error); });
    return;
  }
  if (r.first) loop_.post([this, turn_id, before, at = r.play_ms] { on_engine_first_audio(turn_id, before, at); });
  const size_t n = count;
  loop_.post([this, turn_id, n] {
    if (turn_ && turn_->job == turn_id) turn_->speech_samples += n;
  });
}

// The engine's callbacks name the job (ActiveTurn::job); events name the turn.
void Daemon::on_engine_text(uint64_t job, std::string text) {
  if (spec_ && spec_->job == job) return spec_->text.push_back(std::move(text));
  if (!turn_ || turn_->job != job || turn_->say) return;
  turn_->text += text;
  publish("response.delta", {{"turn_id", turn_->id}, {"text", text}});
}

void Daemon::on_engine_first_audio(uint64_t job, double handed_ms, double play_ms) {
  const int64_t at_ms = static_cast<int64_t>(handed_ms);
  if (!turn_ || turn_->job != job) return;
  const uint64_t turn_id = turn_->id;
  turn_->speech_started = true;
  // at_mono_ms: when the first sample is heard, to the microsecond, as the output put it on its timeline
  // (AudioOutput::write), for apps that follow the speech and the room test that echoes it.
  const double heard_ms = play_ms >= 0 ? play_ms : handed_ms;
  publish("speech.start", {{"turn_id", turn_id}, {"at_mono_ms", std::round(heard_ms * 1000.0) / 1000.0}});
  nlohmann::json fields = {{"turn_id", turn_id}, {"latency_ms", at_ms - turn_->started_ms}};
  if (turn_->speech_end_ms >= 0) {
    // Voice turns: from the last voiced frame of the utterance to the first sample handed to the output.
    const int64_t since = at_ms - turn_->speech_end_ms;
    fields["since_speech_end_ms"] = since;
    fields["speculative"] = turn_->speculated;
    record_first_audio_latency(static_cast<double>(since));
  }
  publish("speech.first_audio", fields);
  update_state();
}

void Daemon::on_engine_done(uint64_t job, omni::TurnResult result) {
  if (spec_ && spec_->job == job) {
    spec_->result = std::move(result);
    return;
  }
  if (!turn_ || turn_->job != job) return;  // cancelled earlier; already reported
  if (!turn_->say && on_tool_calls(result)) return;  // waits for tool results (tool_turns.cpp)
  const uint64_t turn_id = turn_->id;
  turn_->engine_done = true;
  if (!turn_->say) {
    publish("response.done", {{"turn_id", turn_id},
                              {"text", turn_->tools.text + result.text},
                              {"tokens", turn_->tools.tokens + result.tokens.size()},
                              {"stop", std::string(omni::to_string(result.stop))},
                              {"prefill_ms", result.timings.prefill_ms},
                              {"decode_tok_s", result.timings.decode_tok_s}});
  }
  // finish() reports on_playback_drained once the device has played everything queued.
  const std::string output_error = speech_.finish(job);
  if (!output_error.empty()) return on_output_failed(job, output_error);  // ends the turn
  finish_turn_if_complete();
}

void Daemon::on_engine_failed(uint64_t job, const std::string& error, bool device_lost) {
  const bool speculative = spec_ && spec_->job == job;
  const uint64_t turn_id = turn_ && turn_->job == job ? turn_->id : speculative ? 0 : job;
  if (speculative) {
    log_info("speculative turn failed: %s (the endpoint runs the turn as usual)", error.c_str());
  } else {
    log_error("turn %llu failed: %s", static_cast<unsigned long long>(turn_id), error.c_str());
  }
  if (device_lost) {
    // The GPU context may be unusable: exit non-zero so that systemd restarts omnid with a fresh one.
    publish_error("internal", "the engine lost its device: " + error + "; omnid restarts", turn_id);
    return fail("engine device error: " + error);
  }
  if (speculative) {
    spec_->error = error;
    return;
  }
  if (!turn_ || turn_->job != job) return;
  publish_error("internal", "the engine failed: " + error, turn_id);
  cancel_turn("error");
}

void Daemon::on_engine_context_full(uint64_t job, const std::string& error) {
  if (spec_ && spec_->job == job) return on_engine_failed(job, error, false);
  if (!turn_ || turn_->job != job) return;
  log_info("turn %llu does not fit in the context: %s", static_cast<unsigned long long>(turn_->id), error.c_str());
  publish_error("context_full", "the turn does not fit in the context: " + error, turn_->id);
  cancel_turn("error", omni::StopReason::ContextFull);
}

void Daemon::on_playback_drained(uint64_t turn_id) {
  if (!turn_ || turn_->id != turn_id || !turn_->speech_started) return;
  speech_.release();
  const std::string where = speech_.destination();
  const int rate = model_ ? model_->speech_sample_rate() : 24000;
  publish("speech.end", {{"turn_id", turn_id},
                         {"duration_ms", static_cast<int64_t>(turn_->speech_samples * 1000 / rate)},
                         {"output", where}});
  turn_->speech_started = false;
  turn_->speak = false;  // nothing more to wait for
  finish_turn_if_complete();
}

void Daemon::finish_turn_if_complete() {
  if (!turn_ || !turn_->engine_done) return;
  // A turn with audio ends when playback has drained (speech.end); one without audio ends now.
  if (turn_->speech_started) return;
  speech_.release();
  turn_.reset();
  update_state();
  start_queued_soon();
}

Daemon::StreamTime Daemon::stream_time(double stream_ms) const {
  const int64_t behind = endpointer_ ? static_cast<int64_t>(endpointer_->stream_ms() - stream_ms) : 0;
  const int64_t unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  return {monotonic_ms() - behind, unix_ms - behind};
}

void Daemon::on_vad_start(double stream_ms, StreamTime at) {
  publish("vad.start",
          {{"stream_ms", static_cast<int64_t>(stream_ms)}, {"at_mono_ms", at.mono_ms}, {"at_ts_ms", at.ts_ms}});
  if (turn_ && config_.audio.barge_in) cancel_turn("barge_in");
}

void Daemon::transcribe_user(uint64_t turn_id, const std::vector<float>& audio_16k) {
  if (!config_.model.user_transcript || !worker_ || audio_16k.empty()) return;
  auto input = std::make_shared<omni::UserTurn>();
  input->audio_16k = audio_16k;
  input->text = kUserTranscriptPrompt;
  omni::GenerateOptions o;
  o.speak = false;
  o.sampling = omni::Sampling{};  // greedy: a transcript is not a creative answer
  o.drop_oldest_turns = false;    // a transcript that does not fit fails; it never drops the user's turns
  // Speech runs at about 3 words (4 to 5 tokens) a second; twice that and a margin bounds a runaway transcript.
  const int64_t audio_ms = static_cast<int64_t>(audio_16k.size() / 16);
  o.max_new_tokens = static_cast<int>(std::min<int64_t>(config_.model.max_new_tokens, 16 + audio_ms * 10 / 1000));
  struct Outcome {
    std::string text;
    std::string context_full;  // the engine's message when the transcript did not fit
  };
  auto out = std::make_shared<Outcome>();
  worker_->submit_control(
      [input, o, out](omni::Session& s) {
        const omni::SessionMark mark = s.mark();
        omni::TurnResult r;
        try {
          r = s.respond(*input, o, omni::Callbacks{});
        } catch (const omni::ContextFullError& e) {
          out->context_full = e.what();
        } catch (...) {
          try {
            s.rollback(mark);
          } catch (const std::exception&) {
          }
          throw;
        }
        s.rollback(mark);
        out->text = r.text;
      },
      [this, turn_id](const std::string& error) {
        loop_.post([this, turn_id, error] {
          log_error("turn %llu: the user's transcript failed: %s", static_cast<unsigned long long>(turn_id),
                    error.c_str());
          publish_error("internal", "the user's transcript failed: " + error, turn_id);
        });
      },
      [this, turn_id, out] {
        loop_.post([this, turn_id, out] {
          if (!out->context_full.empty())
            return publish_error("context_full", "the user's transcript does not fit: " + out->context_full, turn_id);
          const std::string* text = &out->text;
          const auto b = text->find_first_not_of(" \t\n");
          const auto e = text->find_last_not_of(" \t\n");
          publish("user.transcript",
                  {{"turn_id", turn_id}, {"text", b == std::string::npos ? "" : text->substr(b, e - b + 1)}});
        });
      });
}

void Daemon::on_utterance(omni::audio::Utterance u, int64_t speech_end_ms, double stream_ms, StreamTime at) {
  const auto duration_ms = static_cast<int64_t>(u.samples.size() * 1000 / omni::audio::kVadSampleRate);
  publish("vad.end", {{"duration_ms", duration_ms},
                      {"truncated", u.truncated},
                      {"stream_ms", static_cast<int64_t>(stream_ms)},
                      {"at_mono_ms", at.mono_ms},
                      {"at_ts_ms", at.ts_ms}});
  if (turn_) {
    if (!config_.audio.barge_in) return drop_speculation("the microphone is not ours during a turn");
    cancel_turn("barge_in");
  }
  if (commit_speculation(u, speech_end_ms)) return;
  TurnJob job;
  job.input.audio_16k = u.samples;
  attach_camera_by_config("voice", job.input);
  job.options = generate_options(true);
  uint64_t id = 0;
  if (auto err = start_turn("voice", std::move(job), id)) {
    publish_error(std::string(omni::ipc::to_string(err->code)), err->message);
  } else {
    if (turn_ && turn_->id == id) turn_->speech_end_ms = speech_end_ms;
    transcribe_user(id, u.samples);
  }
}

omni::audio::VadParams Daemon::vad_params() const {
  const VadConfig& v = config_.audio.vad;
  return {v.aggressiveness, v.threshold,      v.window_ms,  v.min_speech_ms, v.end_silence_ms, v.max_utterance_ms,
          v.pre_roll_ms,    v.speculate_after_ms};
}

// The monotonic time of an utterance's last voiced frame, from the capture thread at the moment the
// endpointer handed it out: the stream has advanced (detected_ms - end_ms) since that frame.
static int64_t speech_end_monotonic(const omni::audio::Utterance& u) {
  return monotonic_ms() - static_cast<int64_t>(u.detected_ms - u.end_ms);
}

void Daemon::rebuild_endpointer() {
  if (spec_) drop_speculation("the endpointer was rebuilt");
  auto detector = std::make_unique<omni::audio::VoiceDetector>(config_.audio.vad.aggressiveness);
  auto* d = detector.get();
  omni::audio::Endpointer::Callbacks cb;
  // Both run inside Endpointer::push on the capture thread, endpointer_mu_ held.
  cb.on_start = [this](double ms) { loop_.post([this, ms, at = stream_time(ms)] { on_vad_start(ms, at); }); };
  cb.on_end = [this](omni::audio::Utterance&& u) {
    const int64_t speech_end = speech_end_monotonic(u);
    auto holder = std::make_shared<omni::audio::Utterance>(std::move(u));
    const double end_ms = endpointer_ ? endpointer_->stream_ms() : 0;
    loop_.post([this, holder, speech_end, end_ms, at = stream_time(end_ms)] {
      on_utterance(std::move(*holder), speech_end, end_ms, at);
    });
  };
  cb.on_pause = [this](omni::audio::Utterance&& u) {
    auto holder = std::make_shared<omni::audio::Utterance>(std::move(u));
    loop_.post([this, holder] { on_vad_pause(std::move(*holder)); });
  };
  cb.on_resume = [this] {
    loop_.post([this] {
      if (spec_) drop_speculation("speech resumed");
    });
  };
  auto endpointer = std::make_unique<omni::audio::Endpointer>(
      vad_params(), [this, d](const float* frame) { return d->is_voiced(frame) && !mic_frame_is_echo_; },
      std::move(cb));
  std::lock_guard lock(endpointer_mu_);
  endpointer_ = std::move(endpointer);
  detector_ = std::move(detector);
}

DaemonState Daemon::current_state() const {
  if (!ready_) return DaemonState::loading;
  if (turn_) return turn_->speech_started ? DaemonState::speaking : DaemonState::thinking;
  return listening_ && capture_.open() ? DaemonState::listening : DaemonState::idle;
}

void Daemon::update_state() {
  // The microphone feeds the VAD when listening, except during a turn without barge-in.
  const bool open = ready_ && listening_ && (!turn_ || config_.audio.barge_in);
  if (!open && mic_open_) {
    std::lock_guard lock(endpointer_mu_);
    if (endpointer_) endpointer_->reset();
  }
  if (!open && spec_) drop_speculation("the microphone closed");
  mic_open_ = open;
  const DaemonState next = current_state();
  if (next == state_) return;
  const DaemonState previous = state_;
  state_ = next;
  publish("state", {{"state", to_string(next)}, {"previous", to_string(previous)}});
  if (ready_ && !stopping_) notifier_.status(std::string(to_string(next)));
}

void Daemon::publish(std::string_view name, nlohmann::json fields) {
  if (server_) server_->events().publish(name, fields);
}

void Daemon::publish_error(const std::string& code, const std::string& message, uint64_t turn_id) {
  nlohmann::json fields = {{"code", code}, {"message", message}};
  if (turn_id) fields["turn_id"] = turn_id;
  publish("error", fields);
}

}  // namespace omnid
