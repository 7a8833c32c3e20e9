// omni-bench's speech-side stages on synthetic weights: the audio encoder on a question of a
// given length (mel on the host + the tower on the device) and code2wav streamed frame by frame
// as the session streams it (HF chunking: 300-frame chunks, 25 frames of left context).
#pragma once
#include "backend.h"
#include "io/model_config.h"

namespace omni {

struct EncoderTiming {
  int mel_frames = 0, tokens = 0;
  double mel_ms = 0, encode_ms = 0;  // medians of 3 after a warm-up
};
EncoderTiming bench_audio_encoder(Backend& be, const AudioEncoderConfig& cfg, double seconds);

struct Code2WavTiming {
  int push_frames = 0, frames = 0;
  double first_audio_ms = 0;  // from the first frame's arrival to its first samples on the host
  double rtf = 0;             // decode time / audio duration (80 ms per frame)
};
Code2WavTiming bench_code2wav(Backend& be, const Code2WavConfig& cfg, int push_frames, int frames);

}  // namespace omni
