// A minimal JSON reader (for rot13d --status and the tests of rot13-bench --json): enough to check that the
// output is one valid object and to read its fields.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rot13d {

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kObject, kArray };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::map<std::string, Json> object;
  std::vector<Json> array;

  bool Has(const std::string& key) const { return object.count(key) != 0; }
  // The member, or a null value when there is none.
  const Json& operator[](const std::string& key) const;
  bool is_null() const { return type == Type::kNull; }
};

// The whole text must be one value (surrounding whitespace allowed).
std::optional<Json> ParseJson(std::string_view text);

}  // namespace rot13d
