#include "grammar/json_grammar.h"

namespace omni {
namespace {

constexpr const char* kCallHead = "\n{\"name\": ";
constexpr const char* kCallMid = ", \"arguments\": ";
constexpr const char* kCallTail = "}\n";
constexpr const char* kLiterals[3] = {"true", "false", "null"};

// Object phases.
enum : uint8_t { ObjOpen = 0, ObjKey = 1, ObjValue = 2, ObjAfter = 3, ObjComma = 4, ObjNextKey = 5 };
// Array phases.
enum : uint8_t { ArrOpen = 0, ArrAfter = 1, ArrComma = 2, ArrNext = 3 };
// Call phases.
enum : uint8_t { CallHead = 0, CallName = 1, CallMid = 2, CallArgs = 3, CallTail = 4, CallDone = 5 };

// String state in GrammarFrame::aux: escape (bits 0-2: 0 none, 1 after '\', 2..5 before hex
// digit 1..4), continuation bytes still due (bits 3-4), the range of the next one (bits 5-7),
// first hex digit was d/D (bit 8).
constexpr int kEscMask = 7, kRemShift = 3, kRangeShift = 5, kHexD = 1 << 8;

__int128 pow10(int n) {
  __int128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}

bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
bool is_hex(uint8_t b) { return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }

}  // namespace

JsonGrammar JsonGrammar::value(Schema schema) {
  JsonGrammar g;
  g.value_schema_ = std::move(schema);
  return g;
}

JsonGrammar JsonGrammar::calls(std::vector<Tool> tools, uint64_t allowed) {
  if (tools.empty()) throw Error("tool call grammar: no tools");
  if (tools.size() > 64) throw Error("tool call grammar: more than 64 tools");
  JsonGrammar g;
  g.is_calls_ = true;
  g.tools_ = std::move(tools);
  const uint64_t all = g.tools_.size() == 64 ? ~0ull : (1ull << g.tools_.size()) - 1;
  g.allowed_ = allowed ? (allowed & all) : all;
  if (!g.allowed_) throw Error("tool call grammar: the allowed set names no tool");
  for (const Tool& t : g.tools_) g.names_.push_back(json_quote_py(t.name));
  return g;
}

GrammarState JsonGrammar::start() const {
  GrammarState s;
  s.depth = 1;
  s.f[0] = GrammarFrame{};
  s.f[0].kind = is_calls_ ? Call : Root;
  return s;
}

void JsonGrammar::pop(GrammarState& s) const {
  --s.depth;
  GrammarFrame& p = s.f[s.depth - 1];
  switch (p.kind) {
    case Root: p.phase = 1; break;
    case Array: ++p.count; p.phase = ArrAfter; break;
    case Object: p.phase = ObjAfter; break;
    case Call: p.phase = CallTail; p.count = 0; break;
    default: break;
  }
}

int JsonGrammar::start_value(GrammarState& s, uint8_t schema_i, int node, uint8_t b) const {
  if (s.depth >= GrammarState::kMaxFrames) return 0;
  const SchemaNode& n = schema(schema_i).nodes[size_t(node)];
  GrammarFrame f;
  f.schema = schema_i;
  f.node = uint16_t(node);
  if (!n.enum_json.empty()) {
    f.kind = Enum;
    f.cand = n.enum_json.size() == 64 ? ~0ull : (1ull << n.enum_json.size()) - 1;
    s.f[s.depth++] = f;
    return 2;  // the byte is fed to the new frame
  }
  namespace st = schema_type;
  if (b == '"' && (n.types & st::String)) {
    f.kind = String;
    s.f[s.depth++] = f;
    return 1;
  }
  if ((b == '-' || is_digit(b)) && (n.types & (st::Number | st::Integer))) {
    f.kind = Number;
    s.f[s.depth++] = f;
    return 2;
  }
  if ((b == 't' || b == 'f') && (n.types & st::Boolean)) {
    f.kind = Literal;
    f.aux = b == 't' ? 0 : 1;
    s.f[s.depth++] = f;
    return 2;
  }
  if (b == 'n' && (n.types & st::Null)) {
    f.kind = Literal;
    f.aux = 2;
    s.f[s.depth++] = f;
    return 2;
  }
  if (b == '[' && (n.types & st::Array)) {
    f.kind = Array;
    s.f[s.depth++] = f;
    return 1;
  }
  if (b == '{' && (n.types & st::Object)) {
    f.kind = Object;
    s.f[s.depth++] = f;
    return 1;
  }
  return 0;
}

// Numbers are written as json.dumps writes them: no "-0" integer, no trailing zero in a fraction
// except the one of "1.0" (flags bit 2: the last fraction digit is a zero).
bool JsonGrammar::number_feasible(const SchemaNode& n, const GrammarFrame& f) const {
  const bool neg = f.flags & 1, dot = f.flags & 2, zero_tail = (f.flags & 4) && f.aux >= 2;
  if (f.count == 0) return neg && n.lo < 0;
  if (neg && !dot && f.num == 0 && n.frac == 0) return false;
  const __int128 S = pow10(n.frac);
  auto hits = [&](__int128 lo_m, __int128 hi_m) {
    const __int128 a = neg ? -hi_m : lo_m, b = neg ? -lo_m : hi_m;
    return !(b < n.lo || a > n.hi);
  };
  if (dot) {
    const __int128 unit = pow10(n.frac - f.aux);
    const __int128 lo_m = f.num * unit;
    if (zero_tail) return unit > 1 && hits(lo_m + 1, lo_m + unit - 1);  // a non-zero digit must still come
    return hits(lo_m, lo_m + unit - 1);
  }
  const int more = f.num == 0 ? 0 : n.int_digits - f.count;
  __int128 p = 1;
  for (int k = 0; k <= more; ++k, p *= 10)
    if (hits(f.num * p * S, (f.num + 1) * p * S - 1)) return true;
  return false;
}

bool JsonGrammar::number_complete(const SchemaNode& n, const GrammarFrame& f) const {
  const bool neg = f.flags & 1, dot = f.flags & 2;
  if (f.count == 0 || (dot && f.aux == 0) || ((f.flags & 4) && f.aux >= 2) || (neg && !dot && f.num == 0))
    return false;
  __int128 v = f.num * pow10(n.frac - f.aux);
  if (neg) v = -v;
  return v >= n.lo && v <= n.hi;
}

int JsonGrammar::feed_number(GrammarFrame& f, uint8_t b) const {
  const SchemaNode& n = node_of(f);
  GrammarFrame t = f;
  if (b == '-' && t.count == 0 && !(t.flags & 1)) {
    t.flags |= 1;
  } else if (is_digit(b) && !(t.flags & 2) && (t.count == 0 || (t.num != 0 && t.count < n.int_digits))) {
    t.num = t.num * 10 + (b - '0');
    ++t.count;
  } else if (is_digit(b) && (t.flags & 2) && t.aux < n.frac) {
    t.num = t.num * 10 + (b - '0');
    ++t.aux;
    t.flags = uint8_t(b == '0' ? (t.flags | 4) : (t.flags & ~4));
  } else if (b == '.' && !(t.flags & 2) && t.count > 0 && n.frac > 0) {
    t.flags |= 2;
  } else {
    return number_complete(n, f) ? 2 : 0;
  }
  if (!number_feasible(n, t)) return 0;
  f = t;
  return 1;
}

bool JsonGrammar::feed(GrammarState& s, uint8_t b) const {
  for (;;) {
    if (s.depth == 0) return false;
    GrammarFrame& f = s.f[s.depth - 1];
    int r = 0;
    switch (f.kind) {
      case Root:
        if (f.phase != 0) return false;
        r = start_value(s, 0, value_schema_.root, b);
        if (r) f.phase = 1;
        if (r == 1) return true;
        if (r == 0) return false;
        continue;
      case Call: {
        switch (f.phase) {
          case CallHead:
          case CallMid:
          case CallTail: {
            const char* lit = f.phase == CallHead ? kCallHead : f.phase == CallMid ? kCallMid : kCallTail;
            if (uint8_t(lit[f.count]) != b) return false;
            ++f.count;
            if (lit[f.count] == 0) {
              f.count = 0;
              if (f.phase == CallHead) {
                f.phase = CallName;
                f.cand = allowed_;
              } else {
                f.phase = f.phase == CallMid ? CallArgs : CallDone;
              }
            }
            return true;
          }
          case CallName: {
            uint64_t keep = 0;
            for (uint64_t c = f.cand; c; c &= c - 1) {
              const int i = __builtin_ctzll(c);
              const std::string& nm = names_[size_t(i)];
              if (size_t(f.count) < nm.size() && uint8_t(nm[size_t(f.count)]) == b) keep |= 1ull << i;
            }
            if (!keep) return false;
            f.cand = keep;
            ++f.count;
            for (uint64_t c = keep; c; c &= c - 1) {
              const int i = __builtin_ctzll(c);
              if (names_[size_t(i)].size() == size_t(f.count)) {  // a quoted name ends only at its quote
                f.aux = i;
                f.phase = CallMid;
                f.count = 0;
                break;
              }
            }
            return true;
          }
          case CallArgs: {
            const uint8_t tool = uint8_t(f.aux);
            r = start_value(s, tool, tools_[tool].parameters.root, b);
            if (r == 1) return true;
            if (r == 0) return false;
            continue;
          }
          default: return false;
        }
      }
      case Object: {
        const SchemaNode& n = node_of(f);
        const int np = int(n.props.size());
        auto no_required_left = [&] {
          for (int i = f.count; i < np; ++i)
            if (n.props[size_t(i)].required) return false;
          return true;
        };
        switch (f.phase) {
          case ObjOpen:
          case ObjNextKey:
            if (b == '}' && f.phase == ObjOpen && no_required_left()) {
              pop(s);
              return true;
            }
            if (b != '"' || f.count >= np) return false;
            f.cand = 0;
            for (int i = f.count; i < np; ++i) {
              f.cand |= 1ull << i;
              if (n.props[size_t(i)].required) break;
            }
            f.aux = 1;
            f.phase = ObjKey;
            return true;
          case ObjKey: {
            uint64_t keep = 0;
            for (uint64_t c = f.cand; c; c &= c - 1) {
              const int i = __builtin_ctzll(c);
              const std::string& p = n.props[size_t(i)].prefix;
              if (size_t(f.aux) < p.size() && uint8_t(p[size_t(f.aux)]) == b) keep |= 1ull << i;
            }
            if (!keep) return false;
            f.cand = keep;
            ++f.aux;
            for (uint64_t c = keep; c; c &= c - 1) {
              const int i = __builtin_ctzll(c);
              if (n.props[size_t(i)].prefix.size() == size_t(f.aux)) {
                f.count = i + 1;
                f.phase = ObjValue;
                break;
              }
            }
            return true;
          }
          case ObjValue: {
            r = start_value(s, f.schema, n.props[size_t(f.count - 1)].node, b);
            if (r == 1) return true;
            if (r == 0) return false;
            continue;
          }
          case ObjAfter:
            if (b == ',' && f.count < np) {
              f.phase = ObjComma;
              return true;
            }
            if (b == '}' && no_required_left()) {
              pop(s);
              return true;
            }
            return false;
          case ObjComma:
            if (b != ' ') return false;
            f.phase = ObjNextKey;
            return true;
          default: return false;
        }
      }
      case Array: {
        const SchemaNode& n = node_of(f);
        switch (f.phase) {
          case ArrOpen:
          case ArrNext:
            if (b == ']' && f.phase == ArrOpen && n.min_items == 0) {
              pop(s);
              return true;
            }
            if (f.count >= n.max_items) return false;
            r = start_value(s, f.schema, n.items, b);
            if (r == 1) return true;
            if (r == 0) return false;
            continue;
          case ArrAfter:
            if (b == ',' && f.count < n.max_items) {
              f.phase = ArrComma;
              return true;
            }
            if (b == ']' && f.count >= n.min_items) {
              pop(s);
              return true;
            }
            return false;
          case ArrComma:
            if (b != ' ') return false;
            f.phase = ArrNext;
            return true;
          default: return false;
        }
      }
      case String: {
        const SchemaNode& n = node_of(f);
        const int esc = f.aux & kEscMask;
        const int rem = (f.aux >> kRemShift) & 3;
        if (rem > 0) {
          const int range = (f.aux >> kRangeShift) & 7;
          static const uint8_t lo[5] = {0x80, 0xA0, 0x80, 0x90, 0x80}, hi[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
          if (b < lo[range] || b > hi[range]) return false;
          f.aux = (f.aux & ~(3 << kRemShift) & ~(7 << kRangeShift)) | ((rem - 1) << kRemShift);
          return true;
        }
        if (esc == 1) {
          if (b == 'u') {
            f.aux = (f.aux & ~kEscMask) | 2;
            return true;
          }
          if (b == '"' || b == '\\' || b == '/' || b == 'b' || b == 'f' || b == 'n' || b == 'r' || b == 't') {
            f.aux &= ~kEscMask;
            return true;
          }
          return false;
        }
        if (esc >= 2) {
          if (!is_hex(b)) return false;
          if (esc == 2 && (b == 'd' || b == 'D')) f.aux |= kHexD;
          if (esc == 3 && (f.aux & kHexD) && !(b >= '0' && b <= '7')) return false;  // no surrogate halves
          f.aux = esc == 5 ? (f.aux & ~kEscMask & ~kHexD) : ((f.aux & ~kEscMask) | (esc + 1));
          return true;
        }
        if (b == '"') {
          if (f.count < n.min_len) return false;
          pop(s);
          return true;
        }
        if (f.count >= n.max_len || b < 0x20) return false;
        if (b == '\\') {
          ++f.count;
          f.aux = (f.aux & ~kEscMask) | 1;
          return true;
        }
        if (b < 0x80) {
          ++f.count;
          return true;
        }
        int need = 0, range = 0;
        if (b >= 0xC2 && b <= 0xDF) {
          need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
          need = 2;
          range = b == 0xE0 ? 1 : b == 0xED ? 2 : 0;
        } else if (b >= 0xF0 && b <= 0xF4) {
          need = 3;
          range = b == 0xF0 ? 3 : b == 0xF4 ? 4 : 0;
        } else {
          return false;
        }
        ++f.count;
        f.aux = (f.aux & ~(3 << kRemShift) & ~(7 << kRangeShift)) | (need << kRemShift) | (range << kRangeShift);
        return true;
      }
      case Number:
        r = feed_number(f, b);
        if (r == 1) return true;
        if (r == 0) return false;
        pop(s);
        continue;
      case Enum: {
        const SchemaNode& n = node_of(f);
        uint64_t keep = 0;
        bool complete = false;
        for (uint64_t c = f.cand; c; c &= c - 1) {
          const int i = __builtin_ctzll(c);
          const std::string& e = n.enum_json[size_t(i)];
          if (size_t(f.count) < e.size() && uint8_t(e[size_t(f.count)]) == b) keep |= 1ull << i;
          if (size_t(f.count) == e.size()) complete = true;
        }
        if (keep) {
          f.cand = keep;
          ++f.count;
          return true;
        }
        if (!complete) return false;
        pop(s);
        continue;
      }
      case Literal: {
        const char* lit = kLiterals[f.aux];
        if (uint8_t(lit[f.count]) != b) return false;
        ++f.count;
        if (lit[f.count] == 0) pop(s);
        return true;
      }
      default: return false;
    }
  }
}

bool JsonGrammar::finished(const GrammarState& s) const {
  if (s.depth != 1) return false;
  const GrammarFrame& f = s.f[0];
  return f.kind == Call ? f.phase == CallDone : f.phase == 1;
}

bool JsonGrammar::can_end(const GrammarState& s) const {
  if (finished(s)) return true;
  // A number or an enum value that is complete ends where its parent ends.
  if (s.depth != 2 || is_calls_) return false;
  const GrammarFrame& f = s.f[1];
  if (f.kind == Number) return number_complete(node_of(f), f);
  if (f.kind == Enum) {
    const SchemaNode& n = node_of(f);
    for (uint64_t c = f.cand; c; c &= c - 1)
      if (n.enum_json[size_t(__builtin_ctzll(c))].size() == size_t(f.count)) return true;
  }
  return false;
}

int JsonGrammar::string_room(const GrammarState& s) const {
  if (s.depth == 0) return -1;
  const GrammarFrame& f = s.f[s.depth - 1];
  if (f.kind != String || (f.aux & kEscMask) || ((f.aux >> kRemShift) & 3)) return -1;
  return node_of(f).max_len - f.count;
}

}  // namespace omni
