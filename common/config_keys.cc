#include "common/config_keys.h"

#include "common/duration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>

namespace rot13d {
namespace {

using std::chrono::milliseconds;

constexpr LogLevel kLogLevels[] = {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kNotice, LogLevel::kWarning,
                                   LogLevel::kError};
constexpr LogTarget kLogTargets[] = {LogTarget::kAuto, LogTarget::kStderr, LogTarget::kJournal};
constexpr ConnectionLog kConnectionLogs[] = {ConnectionLog::kOff, ConnectionLog::kErrors, ConnectionLog::kAll};

// The table. A new key is one row here (and its field in Config); the docs
// test then asks for it in README.md, rot13d.toml(5) and etc/rot13d.toml.
constexpr ConfigKey kKeys[] = {
    {"listen", ListenKind{&Config::listen, &Config::listen_set, /*empty_ok=*/false, /*proxy_ok=*/true},
     "addresses to listen on (IPv4:PORT, [IPv6]:PORT, unix:/PATH), or { address = ..., proxy_protocol = \"v1\", "
     "\"v2\" or \"any\" }; ignored under socket activation"},
    {"backlog", IntegerKind<int>{&Config::backlog, 1, 65535}, "queue length of each listening socket"},
    {"workers", IntegerOrAutoKind{&Config::workers, 1, kMaxWorkers},
     "worker processes; \"auto\" = the CPUs this process may run on"},
    {"max_connections", IntegerKind<int>{&Config::max_connections, 1, 1 << 20}, "open connections per worker"},
    {"max_connections_per_address", IntegerKind<int>{&Config::max_connections_per_address, 0, 1 << 20},
     "open connections from one client address (the PROXY header's, if any) over all workers (0 = no limit)"},
    {"buffer_size", IntegerKind<size_t>{&Config::buffer_size, 1024, 64 << 20},
     "bytes read at once and kept per connection at most"},
    {"idle_timeout", SecondsKind{&Config::idle_timeout, 7 * 86400},
     "a connection without traffic this long is closed (0 = never)"},
    {"shutdown_timeout", SecondsKind{&Config::shutdown_timeout, 3600},
     "how long retiring workers may finish their connections before they are killed"},
    {"log_level", EnumKind<LogLevel>{&Config::log_level, "level", kLogLevels, LogLevelName},
     "the least important messages logged"},
    {"log_target", EnumKind<LogTarget>{&Config::log_target, "target", kLogTargets, LogTargetName},
     "where logs go"},
    {"socket_mode", OctalModeKind{&Config::socket_mode}, "permission bits of unix sockets rot13d creates"},
    {"socket_user", NameKind{&Config::socket_user, true}, "owner of unix sockets rot13d creates (\"\" = unchanged)"},
    {"socket_group", NameKind{&Config::socket_group, true}, "group of unix sockets rot13d creates (\"\" = unchanged)"},
    {"heartbeat_timeout", SecondsKind{&Config::heartbeat_timeout, 3600},
     "a worker whose loop has not turned this long is hung (0 = never)"},
    {"crash_loop_failures", IntegerKind<int>{&Config::crash_loop_failures, 1, 1000},
     "boot failures of a generation within crash_loop_window that slow its forks to one a second"},
    {"crash_loop_window", SecondsKind{&Config::crash_loop_window, 3600},
     "the window of crash_loop_failures (0 = no governor)"},
    {"user", NameKind{&Config::user, false, &Config::user_set},
     "started as root, the user to become after binding (\"root\" keeps root)"},
    {"group", NameKind{&Config::group, true}, "the group to become with user (\"\" = the user's primary group)"},
    {"admin_listen", ListenKind{&Config::admin_listen, nullptr, /*empty_ok=*/true},
     "addresses of the HTTP admin endpoint (/metrics, /status); [] = none"},
    {"agent_listen", ListenKind{&Config::agent_listen, nullptr, /*empty_ok=*/true},
     "addresses answering HAProxy's agent-check (up with a weight, drain, down); [] = none"},
    {"connection_log", EnumKind<ConnectionLog>{&Config::connection_log, "setting", kConnectionLogs, ConnectionLogName},
     "a log line per closed connection: none, those ended by a reset or an error, or all"},
    {"proxy_trusted", CidrListKind{&Config::proxy_trusted},
     "networks allowed to send a PROXY header (unix sockets always are)"},
    {"proxy_header_timeout", SecondsKind{&Config::proxy_header_timeout, 3600, /*min_seconds=*/3},
     "how long a connection on a PROXY listener may take to send its header"},
};

constexpr ProxyProtocol kProxyProtocols[] = {ProxyProtocol::kOff, ProxyProtocol::kV1, ProxyProtocol::kV2,
                                             ProxyProtocol::kAny};

// ---- Reading values: the checks the kinds share --------------------------------

}  // namespace


namespace {

std::string Quote(std::string_view key) { return "'" + std::string(key) + "'"; }

std::string TypeName(const toml::node& v) {
  std::ostringstream s;
  s << v.type();
  return s.str();
}

std::optional<int64_t> Integer(std::string_view key, const toml::node& v, int64_t lo, int64_t hi,
                               ConfigErrors& errors) {
  auto n = v.value_exact<int64_t>();
  if (!v.is_integer() || !n) {
    errors.Fail(v.source(), Quote(key) + ": expected an integer, got " + TypeName(v));
    return std::nullopt;
  }
  if (*n < lo || *n > hi) {
    errors.Fail(v.source(), Quote(key) + ": " + std::to_string(*n) + " is out of range (" + std::to_string(lo) +
                                ".." + std::to_string(hi) + ")");
    return std::nullopt;
  }
  return n;
}

std::optional<std::string> String(std::string_view key, const toml::node& v, ConfigErrors& errors) {
  if (!v.is_string()) {
    errors.Fail(v.source(), Quote(key) + ": expected a string, got " + TypeName(v));
    return std::nullopt;
  }
  return *v.value<std::string>();
}

// ---- Apply: one per kind -------------------------------------------------------

template <typename T>
void Apply(const IntegerKind<T>& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  if (auto n = Integer(key, v, k.lo, k.hi, errors)) c.*k.field = static_cast<T>(*n);
}

void Apply(const IntegerOrAutoKind& k, std::string_view key, const toml::node& v, Config& c,
           ConfigErrors& errors) {
  if (!v.is_string()) {
    if (auto n = Integer(key, v, k.lo, k.hi, errors)) c.*k.field = static_cast<int>(*n);
  } else if (*v.value<std::string>() == "auto") {
    c.*k.field = 0;
  } else {
    errors.Fail(v.source(), Quote(key) + ": expected an integer " + std::to_string(k.lo) + ".." +
                                std::to_string(k.hi) + " or \"auto\", got \"" + *v.value<std::string>() + "\"");
  }
}

void Apply(const SecondsKind& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  double s = 0;
  if (v.is_integer()) {
    s = static_cast<double>(*v.value<int64_t>());
  } else if (v.is_floating_point()) {
    s = *v.value<double>();
  } else if (v.is_string()) {
    auto d = ParseDuration(*v.value<std::string>());
    if (!d) {
      errors.Fail(v.source(), Quote(key) + ": expected seconds or a duration such as \"250ms\", \"30s\" or \"5m\", got \"" +
                                  *v.value<std::string>() + "\"");
      return;
    }
    s = static_cast<double>(d->count()) / 1e9;
  } else {
    errors.Fail(v.source(), Quote(key) + ": expected a number of seconds or a duration, got " + TypeName(v));
    return;
  }
  if (!std::isfinite(s) || s < static_cast<double>(k.min_seconds) || s > static_cast<double>(k.max_seconds)) {
    std::ostringstream m;
    m << Quote(key) << ": " << s << " seconds is out of range (" << k.min_seconds << ".." << k.max_seconds << ")";
    errors.Fail(v.source(), m.str());
    return;
  }
  // Millisecond resolution; a positive value must not round down to 0, which means "never".
  if (s > 0 && s < 0.001) {
    errors.Fail(v.source(), Quote(key) + ": must be 0 or at least 0.001 seconds");
    return;
  }
  c.*k.field = milliseconds(static_cast<int64_t>(std::llround(s * 1000)));
}

// "a, b or c"
template <typename E>
std::string Choices(const EnumKind<E>& k) {
  std::string out;
  for (size_t i = 0; i < k.values.size(); ++i) {
    if (i > 0) out += i + 1 == k.values.size() ? " or " : ", ";
    out += k.name(k.values[i]);
  }
  return out;
}

template <typename E>
void Apply(const EnumKind<E>& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  auto s = String(key, v, errors);
  if (!s) return;
  for (E value : k.values) {
    if (*s == k.name(value)) {
      c.*k.field = value;
      return;
    }
  }
  errors.Fail(v.source(),
              Quote(key) + ": unknown " + std::string(k.noun) + " \"" + *s + "\" (" + Choices(k) + ")");
}

void Apply(const OctalModeKind& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  auto s = String(key, v, errors);
  if (!s) return;
  bool octal = !s->empty() && s->size() <= 4 && s->find_first_not_of("01234567") == std::string::npos;
  long mode = octal ? std::strtol(s->c_str(), nullptr, 8) : -1;
  if (!octal || mode > 0777) {
    errors.Fail(v.source(), Quote(key) + ": expected an octal mode such as \"0660\", got \"" + *s + "\"");
    return;
  }
  c.*k.field = static_cast<mode_t>(mode);
}

void Apply(const NameKind& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  auto s = String(key, v, errors);
  if (!s) return;
  if ((s->empty() && !k.empty_ok) || s->size() > 64 || s->find_first_of(" \t\n:/") != std::string::npos ||
      std::any_of(s->begin(), s->end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; })) {
    errors.Fail(v.source(), Quote(key) + ": expected a user or group name or a numeric id, got \"" + *s + "\"");
    return;
  }
  c.*k.field = *s;
  if (k.named) c.*k.named = true;
}

// The text of a listen item and its PROXY setting: a string, or (where
// allowed) an inline table { address = "...", proxy_protocol = "..." }.
std::optional<std::string> ListenItemText(std::string_view key, const toml::node& item, bool proxy_ok,
                                          ProxyProtocol* proxy, ConfigErrors& errors) {
  const toml::table* table = item.as_table();
  if (!table) {
    if (!item.is_string()) {
      errors.Fail(item.source(), Quote(key) + ": expected an address string" +
                                     (proxy_ok ? " or a table { address = ..., proxy_protocol = ... }" : "") +
                                     ", got " + TypeName(item));
      return std::nullopt;
    }
    return *item.value<std::string>();
  }
  if (!proxy_ok) {
    errors.Fail(item.source(), Quote(key) + ": expected an address string, got " + TypeName(item));
    return std::nullopt;
  }
  std::optional<std::string> text;
  bool ok = true;
  for (auto&& [name, value] : *table) {
    if (name.str() == "address") {
      text = String(std::string(key) + ".address", value, errors);
      ok = ok && text.has_value();
    } else if (name.str() == "proxy_protocol") {
      EnumKind<ProxyProtocol> kind{nullptr, "setting", kProxyProtocols, ProxyProtocolName};
      auto s = String(std::string(key) + ".proxy_protocol", value, errors);
      auto found = std::find_if(std::begin(kProxyProtocols), std::end(kProxyProtocols),
                                [&](ProxyProtocol p) { return s && *s == ProxyProtocolName(p); });
      if (s && found == std::end(kProxyProtocols)) {
        errors.Fail(value.source(), Quote(std::string(key) + ".proxy_protocol") + ": unknown setting \"" + *s + "\" (" +
                                        Choices(kind) + ")");
      }
      if (found == std::end(kProxyProtocols)) ok = false; else *proxy = *found;
    } else {
      errors.Fail(name.source(), Quote(key) + ": unknown key '" + std::string(name.str()) +
                                     "' in a listen table (address, proxy_protocol)");
      ok = false;
    }
  }
  if (!text && ok) errors.Fail(item.source(), Quote(key) + ": a listen table needs an address");
  if (!ok) return std::nullopt;
  return text;
}

// One item of a listen array, unless it is not an address to listen on or
// is one of `earlier`.
std::optional<ListenAddress> ListenItem(std::string_view key, const toml::node& item, bool proxy_ok,
                                        const std::vector<ListenAddress>& earlier, ConfigErrors& errors) {
  ProxyProtocol proxy = ProxyProtocol::kOff;
  auto text = ListenItemText(key, item, proxy_ok, &proxy, errors);
  if (!text) return std::nullopt;
  auto address = ParseListenAddress(*text);
  if (!address) {
    errors.Fail(item.source(), Quote(key) + ": " + address.error().message());
    return std::nullopt;
  }
  address->proxy_protocol = proxy;
  if (address->kind != ListenAddress::Kind::kUnix && address->port == 0) {
    errors.Fail(item.source(), Quote(key) + ": port 0 in " + address->ToString() +
                                   " would bind a random port; name the port to listen on");
    return std::nullopt;
  }
  if (std::any_of(earlier.begin(), earlier.end(),
                  [&](const ListenAddress& e) { return e.ToString() == address->ToString(); })) {
    errors.Fail(item.source(), Quote(key) + ": " + address->ToString() + " is listed twice");
    return std::nullopt;
  }
  return *address;
}

void Apply(const ListenKind& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  const toml::array* array = v.as_array();
  if (!array) {
    errors.Fail(v.source(), Quote(key) + ": expected an array of addresses, got " + TypeName(v));
    return;
  }
  if (array->empty() && !k.empty_ok) {
    errors.Fail(v.source(), Quote(key) + ": needs at least one address");
    return;
  }
  std::vector<ListenAddress>& addresses = c.*k.field;
  addresses.clear();
  if (k.named) c.*k.named = true;
  for (const toml::node& item : *array) {
    if (auto address = ListenItem(key, item, k.proxy_ok, addresses, errors)) addresses.push_back(*address);
  }
}

void Apply(const CidrListKind& k, std::string_view key, const toml::node& v, Config& c, ConfigErrors& errors) {
  const toml::array* array = v.as_array();
  if (!array) {
    errors.Fail(v.source(), Quote(key) + ": expected an array of networks such as [\"10.0.0.0/8\"], got " + TypeName(v));
    return;
  }
  std::vector<Cidr> networks;
  for (const toml::node& item : *array) {
    auto text = String(key, item, errors);
    if (!text) continue;
    auto network = ParseCidr(*text);
    if (!network) {
      errors.Fail(item.source(), Quote(key) + ": " + network.error().message());
      continue;
    }
    networks.push_back(*network);
  }
  c.*k.field = std::move(networks);
}

// ---- Print: one per kind, the value as TOML ------------------------------------

// A TOML basic string: values such as unix paths and user names may hold
// quotes, backslashes and control characters, which must not end the string.
std::string Quoted(std::string_view text) {
  std::string out = "\"";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04X", c);
      out += escape;
    } else {
      out += ch;  // UTF-8 passes through: the text came from a TOML file
    }
  }
  return out + '"';
}

template <typename T>
std::string Print(const IntegerKind<T>& k, const Config& c) {
  return std::to_string(c.*k.field);
}

std::string Print(const IntegerOrAutoKind& k, const Config& c) {
  return c.*k.field == 0 ? "\"auto\"" : std::to_string(c.*k.field);
}

// Exact: whole seconds, or seconds with up to three decimals.
std::string Print(const SecondsKind& k, const Config& c) {
  int64_t ms = (c.*k.field).count();
  std::string s = std::to_string(ms / 1000);
  if (int64_t frac = ms % 1000; frac != 0) {
    char digits[8];
    std::snprintf(digits, sizeof digits, ".%03lld", static_cast<long long>(frac));
    std::string tail = digits;
    while (tail.back() == '0') tail.pop_back();
    s += tail;
  }
  return s;
}

template <typename E>
std::string Print(const EnumKind<E>& k, const Config& c) {
  return Quoted(k.name(c.*k.field));
}

std::string Print(const OctalModeKind& k, const Config& c) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(c.*k.field));
  return Quoted(mode);
}

std::string Print(const NameKind& k, const Config& c) { return Quoted(c.*k.field); }

std::string Print(const ListenKind& k, const Config& c) {
  std::string out = "[";
  for (const ListenAddress& address : c.*k.field) {
    if (out.size() > 1) out += ", ";
    if (address.proxy_protocol == ProxyProtocol::kOff) {
      out += Quoted(address.ToString());
    } else {
      out += "{ address = " + Quoted(address.ToString()) +
             ", proxy_protocol = " + Quoted(ProxyProtocolName(address.proxy_protocol)) + " }";
    }
  }
  return out + "]";
}

std::string Print(const CidrListKind& k, const Config& c) {
  std::string out = "[";
  for (const Cidr& network : c.*k.field) {
    if (out.size() > 1) out += ", ";
    out += Quoted(network.ToString());
  }
  return out + "]";
}

}  // namespace

void ConfigErrors::Fail(const toml::source_region& where, std::string message) {
  errors_.push_back(
      {file_, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), std::move(message)});
}

std::span<const ConfigKey> ConfigKeys() { return kKeys; }

const ConfigKey* FindConfigKey(std::string_view name) {
  for (const ConfigKey& key : kKeys) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

void ApplyConfigKey(const ConfigKey& key, const toml::node& value, Config& config, ConfigErrors& errors) {
  std::visit([&](const auto& kind) { Apply(kind, key.name, value, config, errors); }, key.kind);
}

std::string FormatConfigValue(const ConfigKey& key, const Config& config) {
  return std::visit([&](const auto& kind) { return Print(kind, config); }, key.kind);
}

std::string DefaultValue(const ConfigKey& key) { return FormatConfigValue(key, Config::Defaults()); }

}  // namespace rot13d
