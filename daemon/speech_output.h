// Speech output: the playback device (or WAV file), its volume, the turn allowed to write to it, and its
// reopening after a failure (device error, full disk) before the next turn.
//
// Threads: write() runs on the engine worker (audio goes straight to the device, for latency); everything
// else runs on the daemon's event loop. One mutex guards the device and the turn between them.
// `on_drained(turn_id)` runs on a backend thread (or inside finish()) once a turn's audio has played.
//
// Far-end tap for echo cancellation: exactly what the output plays, after volume, with the time it is heard
// (AudioOutput::TapFn: PortAudio's reported latency, or the file/null outputs' real-time clock), resampled to
// 16 kHz as one continuous stream per run of playback and pushed into the echo canceller given to
// set_echo_reference(). The tap runs on the thread that plays (PortAudio's callback) or writes.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "audio/device/echo_canceller.h"
#include "audio/device/playback.h"
#include "audio/io/resample.h"
#include "daemon/config.h"

namespace omnid {

class SpeechOutput {
 public:
  using DrainedFn = std::function<void(uint64_t turn_id)>;
  SpeechOutput(double volume, DrainedFn on_drained) : volume_(volume), on_drained_(std::move(on_drained)) {}

  // Opens (or replaces) the device. Throws std::runtime_error naming the backend or device; the previous
  // device stays then.
  void open(const OutputConfig& config);
  void close();
  // Reopens a lost output with the settings of the last open(). true: usable now (it was not lost, or it
  // reopened); false: still lost, `error` says why.
  bool reopen_if_lost(std::string& error);
  // Marks the output lost after a failure; true when it was not lost before (a new loss to report).
  bool mark_lost();
  bool lost() const { return lost_; }

  // The canceller that hears what is played from now on; null: none (echo cancellation off). Any thread.
  void set_echo_reference(std::shared_ptr<omni::audio::EchoCanceller> canceller);

  // Speech published as it is written (audio.output.publish): called under the output's lock for every chunk the
  // output accepted (so never for a cancelled turn's, and never after abort() returns), with the turn's public id,
  // the rate, the chunk's first sample's offset since the start of the turn's utterance, and the samples as the
  // model made them (before volume). Null: not published. Any thread.
  using PublishFn = std::function<void(uint64_t turn_id, int sample_rate, uint64_t offset, const float* samples,
                                       size_t count)>;
  void set_publisher(PublishFn publish);

  void set_volume(double volume);
  double volume() const { return volume_; }

  // Engine job `job` (ActiveTurn::job) may write from now on, its utterance labelled with the public turn id
  // `turn_id` (on_drained gets it back); any other job's audio is dropped.
  void allow(uint64_t job, uint64_t turn_id);
  // A speculative job's audio is held here instead of played (daemon/speculation.cpp): write() keeps it until
  // commit_held() plays it as turn `turn_id`'s, or drop_held() forgets it.
  void hold(uint64_t job);
  void drop_held(uint64_t job);
  // No turn may write any more; what is queued still plays.
  void release();
  // No turn may write any more and what is queued is dropped (cancel, barge-in, shutdown).
  void abort();

  struct WriteResult {
    bool first = false;  // this chunk began the turn's utterance
    double play_ms = -1;  // first: when its first sample is heard (AudioOutput::write)
    bool dropped = false;  // the turn may not write (cancelled): nothing was written
    bool held = false;     // a speculative job's audio, kept for commit_held()
    std::string error;   // the device failed; the turn may not write any more
  };
  // Engine worker thread.
  WriteResult write(uint64_t job, int sample_rate, const float* samples, size_t count);
  // Event loop: the held job becomes the allowed one (allow(job, turn_id)) and its held audio is written in one
  // piece, under the same lock as the engine's writes, so no chunk of the engine's can come between.
  // `held_samples` is how much was held.
  WriteResult commit_held(uint64_t job, uint64_t turn_id, int sample_rate, size_t& held_samples);
  // The turn's audio is complete: on_drained follows once it has played. "" or the device's error.
  std::string finish(uint64_t job);
  // Where the latest utterance went: a device name or a file path.
  std::string destination();

 private:
  std::mutex mu_;
  std::unique_ptr<omni::audio::AudioOutput> output_;
  OutputConfig config_;
  WriteResult write_locked(uint64_t job, int sample_rate, const float* samples, size_t count);
  void on_played(const float* samples, size_t count, int sample_rate, double play_time_ms);  // the tap

  // The far end (echo_mu_): the stream being resampled started at echo_start_ms_; so far echo_in_ samples
  // went in at its rate and echo_out_ came out at 16 kHz.
  std::mutex echo_mu_;
  std::shared_ptr<omni::audio::EchoCanceller> echo_;
  std::unique_ptr<omni::audio::StreamResampler> echo_resampler_;
  int echo_rate_ = 0;
  double echo_start_ms_ = 0;
  uint64_t echo_in_ = 0, echo_out_ = 0;
  omni::audio::StreamClock echo_clock_;  // whether a played chunk continues the stream (drift followed)

  uint64_t turn_ = 0;         // the job allowed to write audio; 0: none
  uint64_t label_ = 0;        // its public turn id
  uint64_t begun_turn_ = 0;   // the job whose utterance is open on the output
  uint64_t held_job_ = 0;     // the speculative job whose audio is held; 0: none
  std::vector<float> held_;
  uint64_t begun_samples_ = 0;  // samples written to the open utterance (the next chunk's offset)
  PublishFn publish_;
  bool lost_ = false;
  double volume_ = 1.0;
  DrainedFn on_drained_;
};

}  // namespace omnid
