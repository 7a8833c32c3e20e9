#include "daemon/config.h"

#include "omni/engine.h"
#include "ipc/protocol.h"

#include <yaml-cpp/yaml.h>

#include <grp.h>
#include <pwd.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>

namespace omnid {
namespace {

// Walks the YAML tree against the schema and collects every problem with its line, instead of
// stopping at the first: an operator fixing a file wants the whole list at once.
class SchemaReader {
 public:
  explicit SchemaReader(std::string source) : source_(std::move(source)) {}

  const std::vector<std::string>& errors() const { return errors_; }

  void error(const YAML::Mark& mark, const std::string& key, const std::string& what) {
    std::ostringstream os;
    os << source_;
    if (mark.line >= 0) os << ":" << mark.line + 1;
    os << ": " << (key.empty() ? "(top level)" : key) << ": " << what;
    errors_.push_back(os.str());
  }

  // True when `node` is a mapping whose keys all appear in `allowed`; reports the others.
  bool mapping(const YAML::Node& node, const std::string& key, std::initializer_list<const char*> allowed) {
    if (!node.IsMap()) {
      error(node.Mark(), key, "expected a mapping (key: value lines), got " + kind(node));
      return false;
    }
    for (const auto& entry : node) {
      const std::string name = entry.first.Scalar();
      bool known = false;
      for (const char* a : allowed) known = known || name == a;
      if (!known) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        error(entry.first.Mark(), join(key, name), "unknown key (known here: " + list + ")");
      }
    }
    return true;
  }

  // Calls `fn(child, dotted_key)` when `parent` has `name` and it is a mapping with known keys.
  template <typename Fn>
  void section(const YAML::Node& parent, const std::string& prefix, const char* name,
               std::initializer_list<const char*> allowed, Fn fn) {
    const YAML::Node child = parent[name];
    if (!child) return;
    const std::string key = join(prefix, name);
    if (mapping(child, key, allowed)) fn(child, key);
  }

  void text(const YAML::Node& parent, const std::string& prefix, const char* name, std::string& out,
            std::initializer_list<const char*> choices = {}) {
    const YAML::Node n = parent[name];
    if (!n) return;
    const std::string key = join(prefix, name);
    if (!n.IsScalar()) return error(n.Mark(), key, "expected a string, got " + kind(n));
    const std::string value = n.Scalar();
    if (choices.size() > 0) {
      std::string list;
      bool ok = false;
      for (const char* c : choices) {
        ok = ok || value == c;
        list += std::string(list.empty() ? "" : " | ") + (*c ? c : "\"\"");
      }
      if (!ok) return error(n.Mark(), key, "'" + value + "' is not one of " + list);
    }
    out = value;
  }

  template <typename Int>
  void integer(const YAML::Node& parent, const std::string& prefix, const char* name, Int& out, long long lo,
               long long hi) {
    const YAML::Node n = parent[name];
    if (!n) return;
    const std::string key = join(prefix, name);
    long long v = 0;
    if (!n.IsScalar() || !YAML::convert<long long>::decode(n, v))
      return error(n.Mark(), key, "expected an integer, got " + shown(n));
    if (v < lo || v > hi)
      return error(n.Mark(), key, std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                                      std::to_string(hi) + "]");
    out = static_cast<Int>(v);
  }

  void number(const YAML::Node& parent, const std::string& prefix, const char* name, double& out, double lo,
              double hi) {
    const YAML::Node n = parent[name];
    if (!n) return;
    const std::string key = join(prefix, name);
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v))
      return error(n.Mark(), key, "expected a number, got " + shown(n));
    if (v < lo || v > hi) {
      std::ostringstream os;
      os << v << " is out of range [" << lo << ", " << hi << "]";
      return error(n.Mark(), key, os.str());
    }
    out = v;
  }

  // A model.sampling value: a number checked by omni::ipc::sampling_problem (the rule `set` uses too), or null
  // for unset (the checkpoint's value).
  template <typename T>
  void sampling_value(const YAML::Node& parent, const std::string& prefix, const char* name, std::optional<T>& out) {
    const YAML::Node n = parent[name];
    if (!n) return;
    if (n.IsNull()) return out.reset();
    const std::string key = join(prefix, name);
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v))
      return error(n.Mark(), key, "expected a number or null, got " + shown(n));
    if (const std::string problem = omni::ipc::sampling_problem(name, v); !problem.empty())
      return error(n.Mark(), key, n.Scalar() + ": " + problem);
    out = static_cast<T>(v);
  }

  void boolean(const YAML::Node& parent, const std::string& prefix, const char* name, bool& out) {
    const YAML::Node n = parent[name];
    if (!n) return;
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
      return error(n.Mark(), join(prefix, name), "expected true or false, got " + shown(n));
    out = v;
  }

  static std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }

 private:
  static std::string kind(const YAML::Node& n) {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "nothing (null)";
    return "'" + n.Scalar() + "'";
  }
  static std::string shown(const YAML::Node& n) { return kind(n); }

  std::string source_;
  std::vector<std::string> errors_;
};

void read_model(SchemaReader& r, const YAML::Node& root, ModelConfig& m) {
  r.section(root, "", "model",
            {"path", "device", "dtype", "weights", "speaker", "system_prompt", "max_new_tokens", "context_tokens",
             "max_speech_frames", "sampling", "user_transcript"},
            [&](const YAML::Node& n, const std::string& k) {
              r.text(n, k, "path", m.path);
              if (n["path"] && m.path.empty()) r.error(n["path"].Mark(), k + ".path", "must not be empty");
              r.text(n, k, "device", m.device, {"cuda", "cpu"});
              r.text(n, k, "dtype", m.dtype, {"", "f32", "bf16"});
              r.text(n, k, "weights", m.weights);
              try {
                if (n["weights"]) omni::check_weights(m.weights);
              } catch (const std::exception& e) {
                r.error(n["weights"].Mark(), k + ".weights", e.what());
              }
              r.text(n, k, "speaker", m.speaker);
              r.text(n, k, "system_prompt", m.system_prompt);
              r.integer(n, k, "max_new_tokens", m.max_new_tokens, 1, 32768);
              r.integer(n, k, "context_tokens", m.context_tokens, 256, 1 << 20);
              r.integer(n, k, "max_speech_frames", m.max_speech_frames, 1, 1 << 16);
              r.boolean(n, k, "user_transcript", m.user_transcript);
              r.section(n, k, "sampling", {"temperature", "top_k", "top_p", "repetition_penalty", "seed"},
                        [&](const YAML::Node& s, const std::string& sk) {
                          r.sampling_value(s, sk, "temperature", m.sampling.temperature);
                          r.sampling_value(s, sk, "top_k", m.sampling.top_k);
                          r.sampling_value(s, sk, "top_p", m.sampling.top_p);
                          r.sampling_value(s, sk, "repetition_penalty", m.sampling.repetition_penalty);
                          r.sampling_value(s, sk, "seed", m.sampling.seed);
                        });
            });
}

void read_audio(SchemaReader& r, const YAML::Node& root, AudioConfig& a) {
  r.section(root, "", "audio", {"input", "output", "vad", "barge_in", "echo_cancel"}, [&](const YAML::Node& n, const std::string& k) {
    r.boolean(n, k, "barge_in", a.barge_in);
    r.section(n, k, "echo_cancel", {"enabled", "engine", "suppression", "noise_suppression", "delay_ms", "filter_ms"},
              [&](const YAML::Node& e, const std::string& ek) {
                omni::audio::EchoCancelParams& c = a.echo_cancel;
                r.boolean(e, ek, "enabled", c.enabled);
                r.text(e, ek, "engine", c.engine, {"webrtc", "speex"});
                r.text(e, ek, "suppression", c.suppression, {"low", "moderate", "high"});
                r.boolean(e, ek, "noise_suppression", c.noise_suppression);
                r.integer(e, ek, "delay_ms", c.delay_ms, 0, 500);
                r.integer(e, ek, "filter_ms", c.filter_ms, 20, 2000);
              });
    r.section(n, k, "input", {"source", "pipeline", "listen", "restart_on_end"}, [&](const YAML::Node& in, const std::string& ik) {
      r.text(in, ik, "source", a.input.source, {"gstreamer", "ipc"});
      r.text(in, ik, "pipeline", a.input.pipeline);
      if (in["pipeline"] && a.input.pipeline.empty())
        r.error(in["pipeline"].Mark(), ik + ".pipeline", "must not be empty (e.g. autoaudiosrc)");
      r.boolean(in, ik, "listen", a.input.listen);
      r.boolean(in, ik, "restart_on_end", a.input.restart_on_end);
    });
    r.section(n, k, "output", {"backend", "device", "path", "volume", "publish", "publish_format"},
              [&](const YAML::Node& out, const std::string& ok) {
      r.text(out, ok, "backend", a.output.backend, {"portaudio", "wav-file", "null"});
      r.text(out, ok, "device", a.output.device);
      r.text(out, ok, "path", a.output.path);
      r.number(out, ok, "volume", a.output.volume, 0.0, 1.0);
      r.boolean(out, ok, "publish", a.output.publish);
      r.text(out, ok, "publish_format", a.output.publish_format, {"s16le", "f32le"});
      if (a.output.backend == "wav-file" && a.output.path.empty())
        r.error(out.Mark(), ok + ".path", "backend wav-file needs a path");
      if (a.output.backend == "portaudio" && a.output.device.empty())
        r.error(out.Mark(), ok + ".device", "backend portaudio needs a device name (or 'default')");
    });
    r.section(n, k, "vad",
              {"aggressiveness", "threshold", "window_ms", "min_speech_ms", "end_silence_ms", "max_utterance_ms",
               "pre_roll_ms", "speculate_after_ms"},
              [&](const YAML::Node& v, const std::string& vk) {
                VadConfig& c = a.vad;
                r.integer(v, vk, "aggressiveness", c.aggressiveness, 0, 3);
                r.number(v, vk, "threshold", c.threshold, 0.01, 1.0);
                r.integer(v, vk, "window_ms", c.window_ms, 10, 1000);
                r.integer(v, vk, "min_speech_ms", c.min_speech_ms, 10, 10000);
                r.integer(v, vk, "end_silence_ms", c.end_silence_ms, 50, 10000);
                r.integer(v, vk, "max_utterance_ms", c.max_utterance_ms, 500, 600000);
                r.integer(v, vk, "pre_roll_ms", c.pre_roll_ms, 0, 2000);
                r.integer(v, vk, "speculate_after_ms", c.speculate_after_ms, 0, 10000);
                if (v["speculate_after_ms"]) {
                  if (c.speculate_after_ms != 0 &&
                      (c.speculate_after_ms < 200 || c.speculate_after_ms >= c.end_silence_ms))
                    r.error(v["speculate_after_ms"].Mark(), vk + ".speculate_after_ms",
                            "must be 0 (off) or in [200, end_silence_ms = " + std::to_string(c.end_silence_ms) +
                                "): the utterance keeps 200 ms after the last speech, and the endpoint commits");
                } else if (c.speculate_after_ms >= c.end_silence_ms) {
                  c.speculate_after_ms = 0;  // the default does not fit this endpointing: off
                }
                if (v["window_ms"] && c.window_ms % 10 != 0)
                  r.error(v["window_ms"].Mark(), vk + ".window_ms", "must be a multiple of 10 (the VAD frame)");
                if (c.min_speech_ms >= c.max_utterance_ms)
                  r.error(v.Mark(), vk + ".min_speech_ms", "must be below max_utterance_ms");
              });
  });
}

// A list of user or group names or numeric ids; `lookup` resolves a name (false: no such name).
template <typename Lookup>
void read_id_list(SchemaReader& r, const YAML::Node& n, const std::string& key, const char* what,
                  std::vector<unsigned>& out, Lookup lookup) {
  if (!n) return;
  if (!n.IsSequence()) return r.error(n.Mark(), key, std::string("expected a list of ") + what + " names or ids");
  for (const YAML::Node& item : n) {
    const std::string v = item.IsScalar() ? item.Scalar() : "";
    unsigned id = 0;
    const bool numeric = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) id = static_cast<unsigned>(std::stoul(v));
    if (v.empty() || (!numeric && !lookup(v, id)))
      return r.error(item.Mark(), key, "'" + v + "' is not a " + what + " name or numeric id on this system");
    out.push_back(id);
  }
}

void read_access(SchemaReader& r, const YAML::Node& n, const std::string& k, IpcConfig& c) {
  read_id_list(r, n["allow_uids"], k + ".allow_uids", "user", c.allow_uids, [](const std::string& name, unsigned& id) {
    const passwd* pw = ::getpwnam(name.c_str());
    if (pw) id = pw->pw_uid;
    return pw != nullptr;
  });
  read_id_list(r, n["allow_gids"], k + ".allow_gids", "group", c.allow_gids, [](const std::string& name, unsigned& id) {
    const group* gr = ::getgrnam(name.c_str());
    if (gr) id = gr->gr_gid;
    return gr != nullptr;
  });
  r.text(n, k, "curve_secret_key_file", c.curve_secret_key_file);
  if (!c.curve_secret_key_file.empty()) {
    std::ifstream in(c.curve_secret_key_file);
    std::getline(in, c.curve_secret_key);
    while (!c.curve_secret_key.empty() && std::isspace(static_cast<unsigned char>(c.curve_secret_key.back())))
      c.curve_secret_key.pop_back();
    if (!in && c.curve_secret_key.empty())
      r.error(n["curve_secret_key_file"].Mark(), k + ".curve_secret_key_file",
              "cannot read '" + c.curve_secret_key_file + "'");
    else if (c.curve_secret_key.size() != 40)
      r.error(n["curve_secret_key_file"].Mark(), k + ".curve_secret_key_file",
              "'" + c.curve_secret_key_file + "' must hold a Z85 secret key (40 characters) on its first line");
  }
  if (const YAML::Node keys = n["curve_client_keys"]) {
    if (!keys.IsSequence()) {
      r.error(keys.Mark(), k + ".curve_client_keys", "expected a list of Z85 public keys");
    } else {
      for (const YAML::Node& key : keys) {
        if (!key.IsScalar() || key.Scalar().size() != 40)
          r.error(key.Mark(), k + ".curve_client_keys", "each entry must be a Z85 public key (40 characters)");
        else c.curve_client_keys.push_back(key.Scalar());
      }
    }
  }
  for (const std::string* e : {&c.control, &c.events})
    if (e->rfind("tcp://", 0) == 0 && c.curve_secret_key.empty())
      r.error(n.Mark(), k + (e == &c.control ? ".control" : ".events"),
              "'" + *e + "' is a tcp:// endpoint: it needs ipc.curve_secret_key_file (anyone on the network "
              "could otherwise drive omnid)");
}

void read_ipc(SchemaReader& r, const YAML::Node& root, IpcConfig& c) {
  r.section(root, "", "ipc",
            {"control", "events", "max_message_bytes", "heartbeat_ms", "allow_uids", "allow_gids",
             "curve_secret_key_file", "curve_client_keys"},
            [&](const YAML::Node& n, const std::string& k) {
              for (auto [name, field] : {std::pair{"control", &c.control}, std::pair{"events", &c.events}}) {
                r.text(n, k, name, *field);
                const std::string& e = *field;
                if (n[name] && e.rfind("ipc://", 0) != 0 && e.rfind("tcp://", 0) != 0 && e.rfind("inproc://", 0) != 0)
                  r.error(n[name].Mark(), k + "." + name, "'" + e + "' is not a ZeroMQ endpoint (ipc://, tcp://)");
              }
              if (c.control == c.events) r.error(n.Mark(), k + ".events", "must differ from ipc.control");
              r.integer(n, k, "max_message_bytes", c.max_message_bytes, 1024, 1LL << 30);
              r.integer(n, k, "heartbeat_ms", c.heartbeat_ms, 100, 60000);
              read_access(r, n, k, c);
            });
}

void read_tools(SchemaReader& r, const YAML::Node& root, ToolsConfig& t) {
  r.section(root, "", "tools", {"call_timeout_ms", "max_rounds"}, [&](const YAML::Node& n, const std::string& k) {
    r.integer(n, k, "call_timeout_ms", t.call_timeout_ms, 100, 600000);
    r.integer(n, k, "max_rounds", t.max_rounds, 1, 16);
  });
}

void read_camera(SchemaReader& r, const YAML::Node& root, CameraConfig& c) {
  r.section(root, "", "camera", {"pipeline", "attach", "max_pixels", "clip"},
            [&](const YAML::Node& n, const std::string& k) {
              r.text(n, k, "pipeline", c.pipeline);
              r.text(n, k, "attach", c.attach, {"never", "voice", "always"});
              // From 56x56 (the processor's min_pixels) to 4096x4096.
              r.integer(n, k, "max_pixels", c.max_pixels, 3136, 4096LL * 4096);
              r.number(n, k, "clip", c.clip, 0, 10);
            });
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source_name + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
  }
  Config cfg;
  cfg.source = source_name;
  if (!root || root.IsNull()) return cfg;  // an empty file means all defaults
  SchemaReader r(source_name);
  if (r.mapping(root, "", {"model", "audio", "ipc", "tools", "camera"})) {
    read_model(r, root, cfg.model);
    read_audio(r, root, cfg.audio);
    read_ipc(r, root, cfg.ipc);
    read_tools(r, root, cfg.tools);
    read_camera(r, root, cfg.camera);
  }
  if (!r.errors().empty()) {
    std::string all;
    for (const auto& e : r.errors()) all += (all.empty() ? "" : "\n") + e;
    throw ConfigError(all);
  }
  return cfg;
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open the configuration file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": read error");
  return parse_config(text.str(), path);
}

omni::Sampling effective_sampling(const omni::Sampling& checkpoint, const SamplingConfig& c, uint64_t fresh_seed) {
  omni::Sampling s = checkpoint;
  if (c.temperature) {
    s.greedy = *c.temperature == 0;
    if (!s.greedy) s.temperature = static_cast<float>(*c.temperature);
  }
  if (c.top_k) s.top_k = *c.top_k;
  if (c.top_p) s.top_p = static_cast<float>(*c.top_p);
  if (c.repetition_penalty) s.repetition_penalty = static_cast<float>(*c.repetition_penalty);
  s.seed = c.seed ? *c.seed : fresh_seed;
  return s;
}

std::vector<std::string> restart_required_changes(const Config& a, const Config& b) {
  std::vector<std::string> keys;
  if (a.model.path != b.model.path) keys.push_back("model.path");
  if (a.model.device != b.model.device) keys.push_back("model.device");
  if (a.model.dtype != b.model.dtype) keys.push_back("model.dtype");
  if (a.model.weights != b.model.weights) keys.push_back("model.weights");
  if (a.model.context_tokens != b.model.context_tokens) keys.push_back("model.context_tokens");
  if (a.ipc.control != b.ipc.control) keys.push_back("ipc.control");
  if (a.ipc.events != b.ipc.events) keys.push_back("ipc.events");
  if (a.ipc.max_message_bytes != b.ipc.max_message_bytes) keys.push_back("ipc.max_message_bytes");
  if (a.ipc.allow_uids != b.ipc.allow_uids) keys.push_back("ipc.allow_uids");
  if (a.ipc.allow_gids != b.ipc.allow_gids) keys.push_back("ipc.allow_gids");
  if (a.ipc.curve_secret_key != b.ipc.curve_secret_key) keys.push_back("ipc.curve_secret_key_file");
  if (a.ipc.curve_client_keys != b.ipc.curve_client_keys) keys.push_back("ipc.curve_client_keys");
  return keys;
}

}  // namespace omnid
