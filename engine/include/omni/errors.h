// Errors raised by the engine. Every message names what was wrong (file, tensor, key)
// so that one line in a log tells an operator what to fix.
#pragma once
#include <stdexcept>
#include <string>

namespace omni {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file or checkpoint that cannot be used: missing shard, truncated data, wrong tensor shape.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

// config.json of the wrong model type or with missing/invalid fields.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A turn that does not fit in the session's context (LoadOptions::context_tokens) even with every older turn
// dropped: the system prompt and the turn's prompt leave no room. The session stays usable.
class ContextFullError : public Error {
 public:
  using Error::Error;
};

// A device failure (CUDA error). The context may be unusable; callers should restart.
class DeviceError : public Error {
 public:
  using Error::Error;
};

}  // namespace omni
