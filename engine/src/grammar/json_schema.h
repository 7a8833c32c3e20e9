// The JSON-Schema subset that tool parameters and structured answers may use, compiled for
// constrained decoding (json_grammar.h) and for checking values (docs/model.md "Tool calls").
//
// Supported: "type" (string, number, integer, boolean, null, array, object, or a list of them),
// objects ("properties", "required", "additionalProperties": false/true — only the listed
// properties are ever generated), strings ("enum", "minLength", "maxLength"), numbers and
// integers ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"), arrays ("items",
// "minItems", "maxItems"), "enum" of any JSON values, and the annotations "description",
// "title", "default", "examples", "$schema", "$comment". Any other keyword is refused with an
// error naming it and where it is.
//
// Every generated value is bounded, so a constrained call always ends: strings hold at most
// maxLength (default SchemaLimits::max_string) characters, arrays at most maxItems (default
// max_items) items, numbers at most int_digits digits before the point and frac_digits after.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "grammar/json_text.h"
#include "omni/errors.h"

namespace omni {

class SchemaError : public Error {
 public:
  using Error::Error;
};

struct SchemaLimits {
  int max_string = 256;  // characters of a string without maxLength
  int max_items = 32;    // items of an array without maxItems
  int int_digits = 15;   // digits before the decimal point
  int frac_digits = 6;   // digits after it ("number" only)
  int max_depth = 16;    // nesting of arrays and objects
  int max_nodes = 4096;  // schema nodes in all
  int max_enum = 64;     // values of one enum, properties of one object
};

namespace schema_type {
enum : uint8_t { String = 1, Number = 2, Integer = 4, Boolean = 8, Null = 16, Array = 32, Object = 64 };
}

struct SchemaNode {
  uint8_t types = 0;                   // schema_type bits
  std::vector<std::string> enum_json;  // enum: each allowed value as json_dumps_py writes it
  int min_len = 0, max_len = 0;        // string
  int frac = 0;                        // number: digits after the point (0: integer only)
  int int_digits = 15;                 // number: digits before the point
  __int128 lo = 0, hi = 0;             // number/integer: generated bounds in units of 10^-frac, inclusive
  double minimum = -1.0 / 0.0, maximum = 1.0 / 0.0;  // as the schema gives them (for validate)
  bool exclusive_min = false, exclusive_max = false;
  int items = -1, min_items = 0, max_items = 0;  // array
  struct Prop {
    std::string name;
    std::string prefix;  // "\"name\": " as it is written before the value
    int node = -1;
    bool required = false;
  };
  bool closed = true;       // additionalProperties false (the default here): validate refuses others
  std::vector<Prop> props;  // object, in the schema's order (the order values are written in)
};

class Schema {
 public:
  // Throws SchemaError naming the keyword and its path ("parameters.properties.x.pattern: ...").
  static Schema compile(const ojson& schema, const std::string& where = "schema", const SchemaLimits& lim = {});
  // Whether `value` is valid under the schema (within its bounds); `why` names the first problem.
  bool validate(const ojson& value, std::string* why = nullptr) const;

  int root = -1;
  std::vector<SchemaNode> nodes;
};

}  // namespace omni
