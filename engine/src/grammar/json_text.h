// JSON written the way the chat template writes it: Python's json.dumps(value, ensure_ascii=False) with its
// default separators ", " and ": ", keys in the order they were given, non-ASCII characters as UTF-8, control
// characters escaped (\n, \t, ... or \u00XX), floats as Python's repr (shortest digits that read back the
// same; exponent form below 1e-4 and from 1e16 on). docs/model.md "Tool calls".
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace omni {

using ojson = nlohmann::ordered_json;

std::string json_dumps_py(const ojson& value);
// A string literal with its quotes, escaped as json.dumps(ensure_ascii=False) escapes it.
std::string json_quote_py(std::string_view utf8);
// A double as Python's repr(float) writes it ("1.0", "1e-05", "1.5e+300", "-0.0", "Infinity", "NaN").
std::string py_float_repr(double v);

}  // namespace omni
