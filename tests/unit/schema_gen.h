// Seeded random JSON Schemas in the supported subset (grammar/json_schema.h), for the property tests
// of constrained decoding: every kind of node, nesting, enums of mixed values, tight and fractional
// number ranges, property names that need escaping. Small bounds keep random walks short.
#pragma once
#include <random>
#include <string>

#include "grammar/json_text.h"

namespace omni::testing_schemas {

inline std::string random_name(std::mt19937_64& rng) {
  static const char* pieces[] = {"x", "speed", "target", "a b", "Grüße", "名前", "q\"uote", "back\\slash", "n\nl",
                                 "_", "k1", "é", "😀", "tab\t"};
  std::string s = pieces[rng() % (sizeof pieces / sizeof *pieces)];
  if (rng() % 2) s += std::to_string(rng() % 100);
  return s;
}

inline ojson random_schema(std::mt19937_64& rng, int depth) {
  const int pick = int(rng() % (depth < 3 ? 9 : 6));
  ojson s;
  switch (pick) {
    case 0: {
      s["type"] = "string";
      if (rng() % 3 == 0) s["minLength"] = int(rng() % 3);
      s["maxLength"] = int(s.value("minLength", 0) + int(rng() % 12));
      break;
    }
    case 1: {
      s["type"] = "string";
      ojson e = ojson::array();
      const int n = 1 + int(rng() % 4);
      for (int i = 0; i < n; ++i) e.push_back(random_name(rng));
      s["enum"] = e;
      break;
    }
    case 2: {
      s["type"] = "integer";
      if (rng() % 2) {
        const int lo = int(rng() % 200) - 100;
        s["minimum"] = lo;
        s["maximum"] = lo + int(rng() % (rng() % 2 ? 3 : 5000));
      }
      break;
    }
    case 3: {
      s["type"] = "number";
      if (rng() % 2) {
        const double lo = double(int(rng() % 400) - 200) / 8.0;
        s[rng() % 4 ? "minimum" : "exclusiveMinimum"] = lo;
        s["maximum"] = lo + double(1 + rng() % 100) / 16.0;
      }
      break;
    }
    case 4: s["type"] = rng() % 2 ? ojson("boolean") : ojson::array({"boolean", "null"}); break;
    case 5: {
      ojson e = ojson::array({1, 10, 2.5, "one", true, nullptr, ojson::array({1, 2})});
      ojson pickd = ojson::array();
      for (const auto& v : e)
        if (rng() % 2) pickd.push_back(v);
      if (pickd.empty()) pickd.push_back(-7);
      s["enum"] = pickd;
      break;
    }
    case 6: {
      s["type"] = "array";
      s["items"] = random_schema(rng, depth + 1);
      s["minItems"] = int(rng() % 2);
      s["maxItems"] = s["minItems"].get<int>() + int(rng() % 3);
      break;
    }
    case 7:
    case 8: {
      s["type"] = rng() % 5 ? ojson("object") : ojson::array({"object", "null"});
      ojson props = ojson::object();
      ojson req = ojson::array();
      const int n = int(rng() % 4);
      for (int i = 0; i < n; ++i) {
        std::string name = random_name(rng);
        if (props.contains(name)) continue;
        props[name] = random_schema(rng, depth + 1);
        if (rng() % 2) req.push_back(name);
      }
      s["properties"] = props;
      if (!req.empty()) s["required"] = req;
      if (rng() % 2) s["additionalProperties"] = false;
      break;
    }
  }
  if (rng() % 3 == 0) s["description"] = "a generated parameter";
  return s;
}

// An object schema (tool parameters).
inline ojson random_parameters(std::mt19937_64& rng) {
  ojson s = random_schema(rng, 1);
  if (!s.contains("type") || s["type"] != "object") {
    ojson wrap = {{"type", "object"}, {"properties", {{"value", s}}}};
    if (rng() % 2) wrap["required"] = ojson::array({"value"});
    return wrap;
  }
  return s;
}

inline ojson random_tools(std::mt19937_64& rng, int n) {
  ojson tools = ojson::array();
  for (int i = 0; i < n; ++i)
    tools.push_back({{"type", "function"},
                     {"function",
                      {{"name", "tool_" + std::to_string(i) + (rng() % 2 ? "_x" : "")},
                       {"description", "generated"},
                       {"parameters", random_parameters(rng)}}}});
  return tools;
}

}  // namespace omni::testing_schemas
