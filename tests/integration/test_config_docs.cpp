// docs/config.md against the code: every key the parser knows is documented, every documented key exists, and
// each documented default is the code's default (a file that sets a key to its documented default parses to the
// same configuration as an empty file). config/omnid.yaml, the shipped file, holds the defaults too.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/config.h"

using omnid::Config;
using omnid::ConfigError;
using omnid::parse_config;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cell;
  bool code = false;
  for (size_t i = 1; i < row.size(); ++i) {  // row starts with '|'
    const char c = row[i];
    if (c == '\\' && i + 1 < row.size() && row[i + 1] == '|') {  // GFM: "\|" is a pipe inside a cell
      cell += '|';
      ++i;
      continue;
    }
    if (c == '`') code = !code;
    if (c == '|' && !code) {
      out.push_back(trim(cell));
      cell.clear();
    } else {
      cell += c;
    }
  }
  return out;
}

// Dotted key -> documented default (the default cell without its backticks), from every table under a heading
// that names a section ("## model", "## audio.input").
std::map<std::string, std::string> documented_defaults(const std::string& markdown) {
  std::map<std::string, std::string> out;
  std::istringstream in(markdown);
  std::string line, section;
  int default_column = -1;
  const std::regex heading(R"(^## ([a-z_]+(\.[a-z_]+)*)\s*$)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      section = std::regex_match(line, m, heading) ? m[1].str() : "";
      default_column = -1;
      continue;
    }
    if (section.empty() || line.rfind("|", 0) != 0) {
      if (line.rfind("|", 0) != 0) default_column = -1;
      continue;
    }
    const auto c = cells(line);
    if (default_column < 0) {  // the header row
      for (size_t i = 0; i < c.size(); ++i)
        if (c[i] == "default") default_column = int(i);
      continue;
    }
    if (c.empty() || c[0].rfind("---", 0) == 0 || c[0].size() < 3 || c[0].front() != '`') continue;
    std::string value = c.size() > size_t(default_column) ? c[size_t(default_column)] : "";
    if (value.empty()) continue;  // a row that names a section (`model.sampling`) has no default of its own
    if (value.size() >= 2 && value.front() == '`' && value.back() == '`') value = value.substr(1, value.size() - 2);
    out[section + "." + c[0].substr(1, c[0].size() - 2)] = value;
  }
  return out;
}

// The YAML text of a file that sets only `key` to `value` (a documented default as written in the table).
std::string yaml_setting(const std::string& key, const std::string& value) {
  std::string yaml, indent;
  std::string rest = key;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    yaml += indent + rest.substr(0, dot) + ":\n";
    indent += "  ";
  }
  const bool literal = value == "\"\"" || value == "[]" || value == "true" || value == "false" || value == "null" ||
                       std::regex_match(value, std::regex(R"(-?[0-9]+(\.[0-9]+)?)"));
  std::string scalar = value;
  if (!literal) {
    scalar = "\"";
    for (char ch : value) scalar += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
    scalar += "\"";
  }
  return yaml + indent + rest + ": " + scalar + "\n";
}

std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml, "probe.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// Every leaf key the parser accepts, found by asking it: an unknown key in a section is refused with the list of
// the section's keys, and a key that is itself a section refuses an unknown key inside it.
void collect_code_keys(const std::string& prefix, std::set<std::string>& out) {
  const std::string probe = prefix.empty() ? "zz_probe: 1\n" : yaml_setting(prefix, "PROBE");
  std::string yaml = probe;
  if (!prefix.empty()) {  // replace the scalar by a mapping that holds the unknown key
    yaml = yaml.substr(0, yaml.rfind(": ")) + ":\n";
    yaml += std::string(2 * std::count(prefix.begin(), prefix.end(), '.') + 2, ' ') + "zz_probe: 1\n";
  }
  const std::string err = error_of(yaml);
  const std::string marker = (prefix.empty() ? "" : prefix + ".") + "zz_probe: unknown key (known here: ";
  const auto at = err.find(marker);
  if (at == std::string::npos) {  // not a section: a leaf
    out.insert(prefix);
    return;
  }
  const auto begin = at + marker.size();
  std::istringstream list(err.substr(begin, err.find(')', begin) - begin));
  for (std::string name; std::getline(list, name, ',');)
    collect_code_keys((prefix.empty() ? "" : prefix + ".") + trim(name), out);
}

Config defaults() {
  Config c = parse_config("", "probe.yaml");
  c.source.clear();
  return c;
}

}  // namespace

TEST(ConfigDocs, TheProbesFindTheCodesKeysAndParseTheTables) {
  std::set<std::string> keys;
  collect_code_keys("", keys);
  EXPECT_TRUE(keys.count("model.path"));
  EXPECT_TRUE(keys.count("audio.vad.threshold"));
  EXPECT_TRUE(keys.count("audio.barge_in"));
  EXPECT_FALSE(keys.count("audio.vad"));
  const auto doc = documented_defaults("## model\n\n| key | type | default | notes |\n|---|---|---|---|\n"
                                       "| `path` | string | `/x y` | the `a|b` notes |\n| `n` | int | 3 | |\n"
                                       "| `w` | `a` \\| `b` | `a` | one \\| two |\n"
                                       "| `sub` | mapping | | a section |\n\n"
                                       "## Errors\n\n| key | default |\n|---|---|\n| `ignored` | 1 |\n");
  EXPECT_EQ(doc, (std::map<std::string, std::string>{{"model.path", "/x y"}, {"model.n", "3"}, {"model.w", "a"}}));
  EXPECT_EQ(yaml_setting("a.b.c", "x: y"), "a:\n  b:\n    c: \"x: y\"\n");
}

TEST(ConfigDocs, EveryKeyIsDocumentedAndEveryDocumentedKeyExists) {
  std::set<std::string> code;
  collect_code_keys("", code);
  const auto doc = documented_defaults(read_file(std::string(OMNI_SOURCE_DIR) + "/docs/config.md"));
  for (const auto& key : code) EXPECT_TRUE(doc.count(key)) << key << " is a key of the code but not in docs/config.md";
  for (const auto& [key, value] : doc)
    EXPECT_TRUE(code.count(key)) << key << " is in docs/config.md but the code does not know it";
  EXPECT_GT(code.size(), 30u);
}

TEST(ConfigDocs, EveryDocumentedDefaultIsTheCodesDefault) {
  const auto doc = documented_defaults(read_file(std::string(OMNI_SOURCE_DIR) + "/docs/config.md"));
  ASSERT_GT(doc.size(), 30u);
  const Config expected = defaults();
  for (const auto& [key, value] : doc) {
    const std::string yaml = yaml_setting(key, value);
    Config c;
    try {
      c = parse_config(yaml, "docs/config.md");
    } catch (const ConfigError& e) {
      ADD_FAILURE() << key << ": the documented default '" << value << "' is not accepted: " << e.what();
      continue;
    }
    c.source.clear();
    EXPECT_TRUE(c == expected) << key << ": docs/config.md says the default is '" << value
                               << "', the code's default differs";
  }
}

TEST(ConfigDocs, TheShippedFileHoldsTheDefaults) {
  Config c = omnid::load_config_file(std::string(OMNI_SOURCE_DIR) + "/config/omnid.yaml");
  c.source.clear();
  EXPECT_TRUE(c == defaults()) << "config/omnid.yaml sets a value other than the code's default";
}

TEST(ConfigDocs, BargeInIsOffByDefault) {
  EXPECT_FALSE(defaults().audio.barge_in);
}
