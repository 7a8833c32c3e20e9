// The WAV frame of an `ask` request -> 16 kHz mono float, as the engine's UserTurn wants it.
#pragma once
#include <string>
#include <vector>

namespace omnid {

// Any rate, width and channel count that audio/io reads. false: `error` says what is wrong.
bool decode_request_wav(const std::string& bytes, std::vector<float>& audio_16k, std::string& error);

}  // namespace omnid
