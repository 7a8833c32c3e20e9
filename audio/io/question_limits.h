// The bounds a spoken question is held to, from omni/limits.h, in audio/io's terms: for the programs that
// link the engine and hand clips to it (omnid's `ask` WAV frames, omni-run --audio). Header-only, so that
// audio/io itself stays free of the engine.
#pragma once
#include <omni/limits.h>

#include "audio/io/wav.h"

namespace omni::audio {

inline ClipLimits question_clip_limits() {
  ClipLimits l;
  l.max_seconds = omni::limits::kMaxQuestionSeconds;
  l.min_rate = omni::limits::kMinInputSampleRate;
  l.max_rate = omni::limits::kMaxInputSampleRate;
  l.max_channels = omni::limits::kMaxInputChannels;
  return l;
}

}  // namespace omni::audio
