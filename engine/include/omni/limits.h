// Named bounds on everything read from outside (model files, requests): a size, count, id or shape read
// from a file or a client is checked against these before it sizes an allocation, so a damaged or hostile
// input is refused at once, with a message naming the file (or request field), the key and the value,
// instead of allocating gigabytes or running for minutes. New inputs (images, video, --messages, tool
// schemas, pushed audio) take their bounds from here too.
//
// The values are far above what the real Qwen3-Omni release needs (noted on each) and far below what would
// hurt a 64 GB Thor: a bound is a sanity check, not a tuning knob.
#pragma once
#include <cstdint>
#include <string>

#include "omni/errors.h"

namespace omni::limits {

// --- model files ---------------------------------------------------------------------------------------
// tokenizer.json: Qwen's is 11 MB.
inline constexpr int64_t kMaxTokenizerJsonBytes = int64_t(256) << 20;
// Token ids (vocabulary width). When the tokenizer is loaded with its checkpoint, the checkpoint's
// thinker vocab_size bounds the ids (152,064 in the release); loaded alone, this does. The largest
// vocabularies in use are ~262k.
inline constexpr int64_t kMaxVocab = int64_t(1) << 20;
// config.json, generation_config.json, preprocessor_config.json, model.safetensors.index.json: the
// release's are 10-200 KB.
inline constexpr int64_t kMaxConfigJsonBytes = int64_t(16) << 20;
inline constexpr int64_t kMaxIndexJsonBytes = int64_t(64) << 20;
// A safetensors header (JSON). The safetensors format itself refuses headers over 100 MB.
inline constexpr int64_t kMaxSafetensorsHeaderBytes = int64_t(100) << 20;
// Widths and counts in config.json (release: hidden 2048, 48 layers, 128 experts, head_dim 128).
inline constexpr int64_t kMaxModelWidth = int64_t(1) << 17;   // hidden, intermediate, ffn sizes
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxHeads = 1024;
inline constexpr int64_t kMaxExperts = 4096;

// --- audio ---------------------------------------------------------------------------------------------
// The longest spoken question accepted (a WAV sent with `ask`, omni-run --audio): 5 minutes, ~3,900 audio
// tokens, half of the daemon's default context. Checked on the duration the WAV header declares (frames /
// declared rate) before anything is decoded or resampled.
inline constexpr double kMaxQuestionSeconds = 300.0;
// Sample rates accepted for model input (converted to 16 kHz). Below 4 kHz there is no speech to hear;
// 768 kHz is the highest rate audio interfaces offer.
inline constexpr int kMinInputSampleRate = 4000;
inline constexpr int kMaxInputSampleRate = 768000;
inline constexpr int kMaxInputChannels = 64;

// --- conversations (omni-run --messages) ----------------------------------------------------------------
// The file is text and paths (media are files of their own); its messages and items are bounded far above
// what a context of 32k tokens could hold.
inline constexpr int64_t kMaxMessagesJsonBytes = int64_t(16) << 20;
inline constexpr int64_t kMaxMessages = 4096;
inline constexpr int64_t kMaxMessageItems = 1024;  // content items or tool calls of one message

// --- video -----------------------------------------------------------------------------------------------
// A video's frames (the processor's max_frames) and their decoded bytes together (768 frames of 640x480 RGB are
// 708 MB; the bound is checked on the first frame's size times the count, before the frames are decoded).
inline constexpr int64_t kMaxVideoFrames = 768;
inline constexpr int64_t kMaxVideoDecodedBytes = int64_t(1) << 30;
inline constexpr double kMaxVideoFps = 60.0;

// Throws omni::Error "<where>: <key> is <value>, more than <max> (<why>)" when value > max.
// `where` names the file or request field, `key` the key inside it.
inline void check_at_most(const std::string& where, const std::string& key, int64_t value, int64_t max,
                          const char* why) {
  if (value > max)
    throw Error(where + ": " + key + " is " + std::to_string(value) + ", more than " + std::to_string(max) + " (" +
                why + ")");
}

}  // namespace omni::limits
