// The configuration keys, one row each, from which parsing, --check-config and the docs test derive.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// Of toml++, only toml::parse throws, and config.cc calls it; the accessors used here do not.
#include <toml++/toml.h>

#include "common/address.h"
#include "common/config.h"
#include "common/log.h"

namespace rot13d {

// The problems found in a file's values, each at the place it is about.
class ConfigErrors {
 public:
  explicit ConfigErrors(std::string_view file) : file_(file) {}
  void Fail(const toml::source_region& where, std::string message);
  std::vector<ConfigError> Take() { return std::move(errors_); }

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
};

// The kinds of value a key holds. Each names the Config field it sets and
// carries its range; one Apply and one Print per kind (config_keys.cc) do the rest.

// A whole number within [lo, hi].
template <typename T>
struct IntegerKind {
  T Config::*field;
  int64_t lo;
  int64_t hi;
};

// A whole number within [lo, hi], or the string "auto", kept as 0.
struct IntegerOrAutoKind {
  int Config::*field;
  int64_t lo;
  int64_t hi;
};

// Seconds, integer or fractional, within [min_seconds, max_seconds], to the millisecond.
struct SecondsKind {
  std::chrono::milliseconds Config::*field;
  int64_t max_seconds;
  int64_t min_seconds = 0;
};

// One of a few names, each standing for a value of E.
template <typename E>
struct EnumKind {
  E Config::*field;
  std::string_view noun;       // what a name is, for "unknown <noun>"
  std::span<const E> values;   // in the order an error lists them
  const char* (*name)(E);
};

// Permission bits, written as an octal string such as "0660".
struct OctalModeKind {
  mode_t Config::*field;
};

// A user or group name, or a numeric id.
struct NameKind {
  std::string Config::*field;
  bool empty_ok;                   // "" stands for a default
  bool Config::*named = nullptr;   // if set, records that the file named the key
};

// An array of distinct addresses, each with a port to listen on.
struct ListenKind {
  std::vector<ListenAddress> Config::*field;
  bool Config::*named = nullptr;  // if set, records that the file named the key
  bool empty_ok = false;          // [] is allowed (and means none)
  // An item may also be an inline table { address = "...", proxy_protocol = "v2" }.
  bool proxy_ok = false;
};

// An array of networks in CIDR notation.
struct CidrListKind {
  std::vector<Cidr> Config::*field;
};

using ConfigKind = std::variant<IntegerKind<int>, IntegerKind<size_t>, IntegerOrAutoKind, SecondsKind,
                                EnumKind<LogLevel>, EnumKind<LogTarget>, OctalModeKind, NameKind, ListenKind,
                                EnumKind<ConnectionLog>, CidrListKind>;

// One key of the file. Its default is the initializer of its Config field
// (Config::Defaults() for listen), which FormatConfigValue prints.
struct ConfigKey {
  std::string_view name;
  ConfigKind kind;
  std::string_view doc;  // one line: what the key is for
};

// Every key, in the order --check-config prints them.
std::span<const ConfigKey> ConfigKeys();

// The key called `name`; null for an unknown key.
const ConfigKey* FindConfigKey(std::string_view name);

// Sets the key's field(s) of `config` from `value`, or tells `errors` why not.
void ApplyConfigKey(const ConfigKey& key, const toml::node& value, Config& config, ConfigErrors& errors);

// The key's value in `config` as TOML, as --check-config prints it.
std::string FormatConfigValue(const ConfigKey& key, const Config& config);

// The key's default as TOML: its value in Config::Defaults().
std::string DefaultValue(const ConfigKey& key);

}  // namespace rot13d
