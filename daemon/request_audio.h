// The WAV frame of an `ask` request -> 16 kHz mono float, as the engine's UserTurn wants it.
//
// Two steps, so that no request's conversion stalls the event loop for other clients:
// check_request_wav runs on the loop and reads only the header (format, declared rate, frame count), refusing
// at once a clip whose duration (frames / declared rate), rate or channel count is out of bounds
// (omni/limits.h, audio/io/question_limits.h); convert_request_wav decodes and resamples, and runs on the engine worker's thread
// (TurnJob::prepare) just before the turn.
#pragma once
#include <string>
#include <vector>

#include "audio/io/wav.h"

namespace omnid {

// Header only, no sample is decoded. false: `error` names the WAV frame, the field and its value.
bool check_request_wav(const std::string& bytes, omni::audio::WavInfo& info, std::string& error);

// Decode + downmix + resample to 16 kHz. Throws omni::audio::AudioError (also for a clip check_request_wav
// would refuse: the limits are checked again on the header before anything is decoded).
std::vector<float> convert_request_wav(const std::string& bytes);

// Both steps at once (tests, callers that are not on the event loop).
bool decode_request_wav(const std::string& bytes, std::vector<float>& audio_16k, std::string& error);

}  // namespace omnid
