// Speculative turns: the answer starts during the silence that ends an utterance.
//
// The endpointer reports a pause (audio.vad.speculate_after_ms of silence) with the utterance as it will
// be handed out if the silence lasts to end_silence_ms. The turn starts on the engine at once, under a
// job id of its own, with the session marked before it. Until the endpoint, nothing of it leaves omnid:
// its text and result are held in spec_, its audio is held by SpeechOutput (hold/commit_held). At the endpoint the utterance is
// compared with the speculated one; if equal, the speculation becomes the turn: turn.start, the held
// deltas, the held audio handed to the output at once (speech.start, speech.first_audio) and, if the
// engine already finished, response.done, in the usual order; the rest streams as in any turn. If speech
// resumes first (or a request, a reload or a closed microphone intervenes), the job is cancelled and the
// session rolled back to the mark (Session::rollback, no recomputation); nothing was published or played.
//
// It never changes the answer: the committed turn ran on exactly the audio the endpoint hands out, on
// the same conversation state, with the same options. It never delays a committed turn: a speculation
// that failed (e.g. it would have had to drop the oldest turns) or answers different audio is dropped
// and the turn runs as usual.
#include <algorithm>
#include <cmath>

#include "daemon/daemon.h"
#include "daemon/log.h"

namespace omnid {

using omni::audio::monotonic_ms;
using omni::audio::monotonic_ms_precise;

void Daemon::on_vad_pause(omni::audio::Utterance u) {
  if (config_.audio.vad.speculate_after_ms <= 0 || !ready_ || !worker_ || stopping_ || turn_ || spec_ ||
      !mic_open_)
    return;
  Speculation sp;
  sp.job = next_speculation_job_++;
  sp.samples = u.samples;
  sp.started_ms = monotonic_ms();
  TurnJob job;
  job.turn_id = sp.job;
  job.speculative = true;
  job.input.audio_16k = std::move(u.samples);
  attach_camera_by_config("voice", job.input);
  sp.images = job.input.images.size();
  sp.videos = job.input.videos.size();
  job.options = generate_options(true);
  speech_.hold(sp.job);
  spec_ = std::move(sp);
  worker_->submit(std::move(job));
}

void Daemon::drop_speculation(const std::string& why) {
  if (!spec_) return;
  const uint64_t job = spec_->job;
  speech_.drop_held(job);
  spec_.reset();
  worker_->drop_speculation(job, [this](const std::string& error) {
    loop_.post([this, error] {
      // The conversation keeps a turn the user never heard; say so rather than hide it.
      log_error("a speculative turn could not be taken back: %s", error.c_str());
      publish_error("internal", "a speculative turn could not be taken back: " + error);
    });
  });
  log_info("speculative turn dropped (%s)", why.c_str());
}

bool Daemon::commit_speculation(const omni::audio::Utterance& u, int64_t speech_end_ms) {
  if (!spec_) return false;
  if (spec_->error) {
    drop_speculation("it failed: " + *spec_->error);
    return false;
  }
  if (spec_->samples != u.samples) {
    drop_speculation("the utterance differs from the one it answered");
    return false;
  }
  if (stopping_ || !ready_) {
    drop_speculation("omnid is stopping");
    return false;
  }
  Speculation sp = std::move(*spec_);
  spec_.reset();
  ActiveTurn t;
  t.id = next_turn_id_++;
  t.job = sp.job;
  t.source = "voice";
  t.speak = generate_options(true).speak;
  t.started_ms = monotonic_ms();
  t.speech_end_ms = speech_end_ms;
  t.speculated = true;
  reopen_output_if_lost();
  turn_ = t;
  nlohmann::json fields = {{"turn_id", t.id}, {"source", "voice"}, {"audio_ms", static_cast<int64_t>(u.samples.size() / 16)}};
  if (sp.images) fields["images"] = sp.images;
  if (sp.videos) fields["videos"] = sp.videos;
  publish("turn.start", fields);
  for (std::string& piece : sp.text) {
    turn_->text += piece;
    publish("response.delta", {{"turn_id", t.id}, {"text", std::move(piece)}});
  }
  transcribe_user(t.id, u.samples);  // queued on the engine behind the committed job
  // The audio made so far goes to the output in one piece, then the engine writes to it directly
  // (SpeechOutput::commit_held: no chunk of the engine's can come between).
  size_t held = 0;
  const double handed = monotonic_ms_precise();
  const SpeechOutput::WriteResult w = speech_.commit_held(t.job, t.id, model_->speech_sample_rate(), held);
  const bool first = w.first;
  const std::string& error = w.error;
  log_info("turn %llu committed from a speculation started %lld ms before the endpoint (%zu samples ready)",
           static_cast<unsigned long long>(t.id), static_cast<long long>(t.started_ms - sp.started_ms), held);
  if (!error.empty()) {
    on_output_failed(t.job, error);
    return true;
  }
  turn_->speech_samples += held;
  if (first) on_engine_first_audio(t.job, handed, w.play_ms);
  if (sp.result) {
    on_engine_done(t.job, std::move(*sp.result));
  } else {
    update_state();
  }
  return true;
}

void Daemon::record_first_audio_latency(double ms) {
  constexpr size_t kKept = 256;
  first_audio_latencies_.push_back(ms);
  while (first_audio_latencies_.size() > kKept) first_audio_latencies_.pop_front();
}

nlohmann::json Daemon::latency_status() const {
  // Nearest-rank percentiles over the recent voice turns (status: first_audio.since_speech_end_ms).
  std::vector<double> v(first_audio_latencies_.begin(), first_audio_latencies_.end());
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) -> nlohmann::json {
    if (v.empty()) return nullptr;
    const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::max<size_t>(rank, 1) - 1];
  };
  return {{"count", v.size()}, {"p50", pct(50)}, {"p90", pct(90)}, {"p99", pct(99)}, {"max", pct(100)}};
}

}  // namespace omnid
