#include "grammar/json_schema.h"

#include <cmath>
#include <cstdlib>
#include <set>


namespace omni {
namespace {

__int128 pow10_i128(int n) {
  __int128 r = 1;
  for (int i = 0; i < n; ++i) r *= 10;
  return r;
}

// units / 10^frac as a double, read back from its decimal text (as a JSON reader reads it).
double units_value(__int128 u, int frac) {
  const bool neg = u < 0;
  unsigned __int128 m = neg ? (unsigned __int128)(-u) : (unsigned __int128)u;
  std::string digits;
  do {
    digits.insert(digits.begin(), char('0' + int(m % 10)));
    m /= 10;
  } while (m);
  if (frac > 0) {
    if (int(digits.size()) <= frac) digits.insert(0, size_t(frac + 1 - int(digits.size())), '0');
    digits.insert(digits.end() - frac, '.');
  }
  return std::strtod(((neg ? "-" : "") + digits).c_str(), nullptr);
}

bool above_min(double v, const SchemaNode& n) { return n.exclusive_min ? v > n.minimum : v >= n.minimum; }
bool below_max(double v, const SchemaNode& n) { return n.exclusive_max ? v < n.maximum : v <= n.maximum; }

class Compiler {
 public:
  Compiler(Schema& s, const SchemaLimits& lim) : s_(s), lim_(lim) {}

  int node(const ojson& j, const std::string& where, int depth) {
    if (!j.is_object()) throw SchemaError(where + ": expected a schema object");
    if (depth > lim_.max_depth)
      throw SchemaError(where + ": nested deeper than " + std::to_string(lim_.max_depth) + " levels");
    if (int(s_.nodes.size()) >= lim_.max_nodes)
      throw SchemaError(where + ": more than " + std::to_string(lim_.max_nodes) + " schema nodes");
    static const std::set<std::string> known = {
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum",
        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "description",
        "title", "default", "examples", "$schema", "$comment"};
    for (auto it = j.begin(); it != j.end(); ++it)
      if (!known.count(it.key()))
        throw SchemaError(where + "." + it.key() + ": keyword not supported (docs/model.md \"Tool calls\" lists "
                          "the supported subset)");
    const int id = int(s_.nodes.size());
    s_.nodes.emplace_back();
    SchemaNode n;
    if (auto t = j.find("type"); t != j.end()) {
      if (t->is_string()) {
        n.types = type_bit(t->get<std::string>(), where + ".type");
      } else if (t->is_array() && !t->empty()) {
        for (const auto& x : *t) {
          if (!x.is_string()) throw SchemaError(where + ".type: expected type names");
          n.types |= type_bit(x.get<std::string>(), where + ".type");
        }
      } else {
        throw SchemaError(where + ".type: expected a type name or a non-empty list of them");
      }
    }
    if (n.types & schema_type::Number) n.types &= uint8_t(~schema_type::Integer);  // number covers integer
    if (auto e = j.find("enum"); e != j.end()) {
      if (!e->is_array() || e->empty()) throw SchemaError(where + ".enum: expected a non-empty array");
      if (int(e->size()) > lim_.max_enum)
        throw SchemaError(where + ".enum: more than " + std::to_string(lim_.max_enum) + " values");
      std::set<std::string> seen;
      for (const auto& v : *e) {
        if (n.types && !(type_of(v) & n.types)) continue;  // a value the type excludes can never be valid
        std::string text = json_dumps_py(v);
        if (seen.insert(text).second) n.enum_json.push_back(std::move(text));
      }
      if (n.enum_json.empty()) throw SchemaError(where + ".enum: no value has the schema's type");
    } else if (!n.types) {
      throw SchemaError(where + ": needs a \"type\" or an \"enum\"");
    }
    n.max_len = lim_.max_string;
    if (auto v = j.find("minLength"); v != j.end()) n.min_len = count(*v, where + ".minLength", 0, 1 << 16);
    if (auto v = j.find("maxLength"); v != j.end()) {
      n.max_len = count(*v, where + ".maxLength", 0, 1 << 16);
    } else {
      n.max_len = std::max(n.max_len, n.min_len);
    }
    if ((n.types & schema_type::String) && n.enum_json.empty()) {
      if (n.min_len > n.max_len)
        throw SchemaError(where + ": minLength " + std::to_string(n.min_len) + " is above maxLength " +
                          std::to_string(n.max_len));
    }
    numbers(n, j, where);
    if (n.types & schema_type::Array) {
      auto it = j.find("items");
      if (it == j.end()) throw SchemaError(where + ": an array needs \"items\"");
      n.items = node(*it, where + ".items", depth + 1);
      n.max_items = lim_.max_items;
      if (auto v = j.find("minItems"); v != j.end()) n.min_items = count(*v, where + ".minItems", 0, 4096);
      if (auto v = j.find("maxItems"); v != j.end()) {
        n.max_items = count(*v, where + ".maxItems", 0, 4096);
      } else {
        n.max_items = std::max(n.max_items, n.min_items);
      }
      if (n.min_items > n.max_items)
        throw SchemaError(where + ": minItems " + std::to_string(n.min_items) + " is above maxItems " +
                          std::to_string(n.max_items));
    } else if (j.contains("items")) {
      node(j.at("items"), where + ".items", depth + 1);  // checked, though unused without type array
    }
    if (auto ap = j.find("additionalProperties"); ap != j.end()) {
      if (!ap->is_boolean()) throw SchemaError(where + ".additionalProperties: only true or false is supported");
      n.closed = !ap->get<bool>();
    }
    if (n.types & schema_type::Object) {
      std::set<std::string> required;
      if (auto r = j.find("required"); r != j.end()) {
        if (!r->is_array()) throw SchemaError(where + ".required: expected an array of names");
        for (const auto& x : *r) {
          if (!x.is_string()) throw SchemaError(where + ".required: expected an array of names");
          required.insert(x.get<std::string>());
        }
      }
      if (auto p = j.find("properties"); p != j.end()) {
        if (!p->is_object()) throw SchemaError(where + ".properties: expected an object");
        if (int(p->size()) > lim_.max_enum)
          throw SchemaError(where + ".properties: more than " + std::to_string(lim_.max_enum) + " properties");
        for (auto it = p->begin(); it != p->end(); ++it) {
          SchemaNode::Prop prop;
          prop.name = it.key();
          prop.prefix = json_quote_py(it.key()) + ": ";
          prop.required = required.erase(it.key()) > 0;
          prop.node = node(it.value(), where + ".properties." + it.key(), depth + 1);
          n.props.push_back(std::move(prop));
        }
      }
      if (!required.empty())
        throw SchemaError(where + ".required: '" + *required.begin() + "' is not in properties");
    }
    s_.nodes[size_t(id)] = std::move(n);
    return id;
  }

 private:
  static uint8_t type_of(const ojson& v) {
    switch (v.type()) {
      case ojson::value_t::string: return schema_type::String;
      case ojson::value_t::number_integer:
      case ojson::value_t::number_unsigned: return schema_type::Integer | schema_type::Number;
      case ojson::value_t::number_float:
        return std::floor(v.get<double>()) == v.get<double>() ? schema_type::Integer | schema_type::Number
                                                             : schema_type::Number;
      case ojson::value_t::boolean: return schema_type::Boolean;
      case ojson::value_t::null: return schema_type::Null;
      case ojson::value_t::array: return schema_type::Array;
      case ojson::value_t::object: return schema_type::Object;
      default: return 0;
    }
  }

  static uint8_t type_bit(const std::string& t, const std::string& where) {
    if (t == "string") return schema_type::String;
    if (t == "number") return schema_type::Number;
    if (t == "integer") return schema_type::Integer;
    if (t == "boolean") return schema_type::Boolean;
    if (t == "null") return schema_type::Null;
    if (t == "array") return schema_type::Array;
    if (t == "object") return schema_type::Object;
    throw SchemaError(where + ": unknown type '" + t + "'");
  }

  static int count(const ojson& v, const std::string& where, int lo, int hi) {
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
      throw SchemaError(where + ": expected a whole number");
    const double d = v.get<double>();
    if (d < lo || d > hi)
      throw SchemaError(where + ": " + json_dumps_py(v) + " is outside " + std::to_string(lo) + ".." +
                        std::to_string(hi));
    return int(d);
  }

  static double bound(const ojson& j, const char* key, const std::string& where, bool* present) {
    auto it = j.find(key);
    *present = it != j.end();
    if (!*present) return 0;
    if (!it->is_number()) throw SchemaError(where + "." + key + ": expected a number");
    const double d = it->get<double>();
    if (!std::isfinite(d)) throw SchemaError(where + "." + key + ": not a finite number");
    return d;
  }

  void numbers(SchemaNode& n, const ojson& j, const std::string& where) {
    bool has_min, has_max, has_xmin, has_xmax;
    const double mn = bound(j, "minimum", where, &has_min), mx = bound(j, "maximum", where, &has_max);
    const double xmn = bound(j, "exclusiveMinimum", where, &has_xmin),
                 xmx = bound(j, "exclusiveMaximum", where, &has_xmax);
    if (has_min) n.minimum = mn;
    if (has_xmin && (!has_min || xmn >= mn)) {
      n.minimum = xmn;
      n.exclusive_min = true;
    }
    if (has_max) n.maximum = mx;
    if (has_xmax && (!has_max || xmx <= mx)) {
      n.maximum = xmx;
      n.exclusive_max = true;
    }
    if (!(n.types & (schema_type::Number | schema_type::Integer))) return;
    n.frac = (n.types & schema_type::Number) ? lim_.frac_digits : 0;
    n.int_digits = lim_.int_digits;
    const __int128 scale = pow10_i128(n.frac);
    const __int128 limit = (pow10_i128(lim_.int_digits) - 1) * scale;  // the largest magnitude written
    // lo: the smallest units value whose decimal reads back as a double allowed by the minimum.
    n.lo = -limit;
    if (std::isfinite(n.minimum) && n.minimum > -double(limit) / double(scale)) {
      __int128 u = (__int128)std::ceil((long double)n.minimum * (long double)scale);
      while (u > -limit && above_min(units_value(u - 1, n.frac), n)) --u;
      while (u <= limit && !above_min(units_value(u, n.frac), n)) ++u;
      n.lo = u;
    }
    n.hi = limit;
    if (std::isfinite(n.maximum) && n.maximum < double(limit) / double(scale)) {
      __int128 u = (__int128)std::floor((long double)n.maximum * (long double)scale);
      while (u < limit && below_max(units_value(u + 1, n.frac), n)) ++u;
      while (u >= -limit && !below_max(units_value(u, n.frac), n)) --u;
      n.hi = u;
    }
    if (n.lo > n.hi)
      throw SchemaError(where + ": no " + std::string(n.frac ? "number" : "integer") + " lies between minimum " +
                        py_float_repr(n.minimum) + " and maximum " + py_float_repr(n.maximum) +
                        (n.frac ? "" : " (or the bounds are beyond the written range)"));
  }

  Schema& s_;
  const SchemaLimits& lim_;
};

bool fail(std::string* why, const std::string& path, const std::string& what) {
  if (why) *why = (path.empty() ? "value" : path) + ": " + what;
  return false;
}

bool check(const Schema& s, int id, const ojson& v, const std::string& path, std::string* why) {
  const SchemaNode& n = s.nodes[size_t(id)];
  if (!n.enum_json.empty()) {
    const std::string text = json_dumps_py(v);
    for (const std::string& e : n.enum_json)
      if (e == text) return true;
    return fail(why, path, "not one of the enum values");
  }
  switch (v.type()) {
    case ojson::value_t::string: {
      if (!(n.types & schema_type::String)) return fail(why, path, "a string is not allowed here");
      int len = 0;
      for (unsigned char c : v.get_ref<const std::string&>()) len += (c & 0xC0) != 0x80;
      if (len < n.min_len || len > n.max_len) return fail(why, path, "length outside minLength/maxLength");
      return true;
    }
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned:
    case ojson::value_t::number_float: {
      const double d = v.get<double>();
      const bool whole = v.is_number_integer() || std::floor(d) == d;
      if (!(n.types & schema_type::Number) && !((n.types & schema_type::Integer) && whole))
        return fail(why, path, whole ? "a number is not allowed here" : "not an integer");
      if (!above_min(d, n) || !below_max(d, n)) return fail(why, path, "outside minimum/maximum");
      return true;
    }
    case ojson::value_t::boolean:
      return (n.types & schema_type::Boolean) ? true : fail(why, path, "a boolean is not allowed here");
    case ojson::value_t::null:
      return (n.types & schema_type::Null) ? true : fail(why, path, "null is not allowed here");
    case ojson::value_t::array: {
      if (!(n.types & schema_type::Array)) return fail(why, path, "an array is not allowed here");
      if (int(v.size()) < n.min_items || int(v.size()) > n.max_items)
        return fail(why, path, "item count outside minItems/maxItems");
      for (size_t i = 0; i < v.size(); ++i)
        if (!check(s, n.items, v[i], path + "[" + std::to_string(i) + "]", why)) return false;
      return true;
    }
    case ojson::value_t::object: {
      if (!(n.types & schema_type::Object)) return fail(why, path, "an object is not allowed here");
      for (auto it = v.begin(); it != v.end() && n.closed; ++it) {
        bool known = false;
        for (const auto& p : n.props) known |= p.name == it.key();
        if (!known) return fail(why, path, "property '" + it.key() + "' is not in the schema");
      }
      for (const auto& p : n.props) {
        auto it = v.find(p.name);
        if (it == v.end()) {
          if (p.required) return fail(why, path, "required property '" + p.name + "' is missing");
          continue;
        }
        if (!check(s, p.node, *it, path + "." + p.name, why)) return false;
      }
      return true;
    }
    default: return fail(why, path, "not a JSON value");
  }
}

}  // namespace

Schema Schema::compile(const ojson& schema, const std::string& where, const SchemaLimits& lim) {
  Schema s;
  Compiler c(s, lim);
  s.root = c.node(schema, where, 0);
  return s;
}

bool Schema::validate(const ojson& value, std::string* why) const { return check(*this, root, value, "", why); }

}  // namespace omni
