#include "common/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <map>
#include <tuple>
#include <sstream>

#include "common/log.h"
#include "common/unique_fd.h"
#include "common/users.h"

// toml++ reports problems with exceptions; they stop at this file's boundary.
#include <toml++/toml.h>

namespace rot13d {
namespace {

using std::chrono::milliseconds;

class Validator {
 public:
  explicit Validator(std::string_view file) : file_(file) {}

  void Fail(const toml::source_region& where, std::string message) {
    errors_.push_back({file_, static_cast<int>(where.begin.line),
                       static_cast<int>(where.begin.column), std::move(message)});
  }

  // A whole number within [lo, hi].
  std::optional<int64_t> Integer(std::string_view key, const toml::node& v, int64_t lo, int64_t hi) {
    auto n = v.value_exact<int64_t>();
    if (!v.is_integer() || !n) {
      Fail(v.source(), Describe(key) + ": expected an integer, got " + TypeName(v));
      return std::nullopt;
    }
    if (*n < lo || *n > hi) {
      Fail(v.source(), Describe(key) + ": " + std::to_string(*n) + " is out of range (" +
                           std::to_string(lo) + ".." + std::to_string(hi) + ")");
      return std::nullopt;
    }
    return n;
  }

  // Seconds, integer or fractional, within [0, max_seconds].
  std::optional<milliseconds> Seconds(std::string_view key, const toml::node& v, double max_seconds) {
    double s = 0;
    if (v.is_integer()) {
      s = static_cast<double>(*v.value<int64_t>());
    } else if (v.is_floating_point()) {
      s = *v.value<double>();
    } else {
      Fail(v.source(), Describe(key) + ": expected a number of seconds, got " + TypeName(v));
      return std::nullopt;
    }
    if (!std::isfinite(s) || s < 0 || s > max_seconds) {
      std::ostringstream m;
      m << Describe(key) << ": " << s << " seconds is out of range (0.." << max_seconds << ")";
      Fail(v.source(), m.str());
      return std::nullopt;
    }
    // Millisecond resolution; a positive value must not round down to 0, which means "never".
    if (s > 0 && s < 0.001) {
      Fail(v.source(), Describe(key) + ": must be 0 or at least 0.001 seconds");
      return std::nullopt;
    }
    return milliseconds(static_cast<int64_t>(std::llround(s * 1000)));
  }

  std::optional<std::string> String(std::string_view key, const toml::node& v) {
    if (!v.is_string()) {
      Fail(v.source(), Describe(key) + ": expected a string, got " + TypeName(v));
      return std::nullopt;
    }
    return *v.value<std::string>();
  }

  static std::string TypeName(const toml::node& v) {
    std::ostringstream s;
    s << v.type();
    return s.str();
  }
  static std::string Describe(std::string_view key) { return "'" + std::string(key) + "'"; }

  std::vector<ConfigError> Take() { return std::move(errors_); }

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
};

std::optional<LogLevel> ParseLogLevel(std::string_view s) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kNotice, LogLevel::kWarning,
                     LogLevel::kError}) {
    if (s == LogLevelName(l)) return l;
  }
  return std::nullopt;
}

std::optional<LogTarget> ParseLogTarget(std::string_view s) {
  for (LogTarget t : {LogTarget::kAuto, LogTarget::kStderr, LogTarget::kJournal}) {
    if (s == LogTargetName(t)) return t;
  }
  return std::nullopt;
}

void ApplyKey(Validator& check, Config& c, std::string_view key, const toml::node& v) {
  if (key == "listen") {
    const toml::array* arr = v.as_array();
    if (!arr) {
      check.Fail(v.source(), "'listen': expected an array of addresses, got " + Validator::TypeName(v));
      return;
    }
    if (arr->empty()) {
      check.Fail(v.source(), "'listen': needs at least one address");
      return;
    }
    c.listen.clear();
    c.listen_set = true;
    for (const toml::node& item : *arr) {
      auto text = check.String("listen", item);
      if (!text) continue;
      auto address = ParseListenAddress(*text);
      if (!address) {
        check.Fail(item.source(), "'listen': " + address.error().message());
        continue;
      }
      if (address->kind != ListenAddress::Kind::kUnix && address->port == 0) {
        check.Fail(item.source(), "'listen': port 0 in " + address->ToString() +
                                      " would bind a random port; name the port to listen on");
        continue;
      }
      if (std::find(c.listen.begin(), c.listen.end(), *address) != c.listen.end()) {
        check.Fail(item.source(), "'listen': " + address->ToString() + " is listed twice");
        continue;
      }
      c.listen.push_back(*address);
    }
  } else if (key == "backlog") {
    if (auto n = check.Integer(key, v, 1, 65535)) c.backlog = static_cast<int>(*n);
  } else if (key == "workers") {
    if (v.is_string()) {
      if (*v.value<std::string>() == "auto") {
        c.workers = 0;
      } else {
        check.Fail(v.source(), "'workers': expected an integer 1..1024 or \"auto\", got \"" +
                                   *v.value<std::string>() + "\"");
      }
    } else if (auto n = check.Integer(key, v, 1, kMaxWorkers)) {
      c.workers = static_cast<int>(*n);
    }
  } else if (key == "max_connections") {
    if (auto n = check.Integer(key, v, 1, 1 << 20)) c.max_connections = static_cast<int>(*n);
  } else if (key == "buffer_size") {
    if (auto n = check.Integer(key, v, 1024, 64 << 20)) c.buffer_size = static_cast<size_t>(*n);
  } else if (key == "idle_timeout") {
    if (auto t = check.Seconds(key, v, 7 * 86400)) c.idle_timeout = *t;
  } else if (key == "shutdown_timeout") {
    if (auto t = check.Seconds(key, v, 3600)) c.shutdown_timeout = *t;
  } else if (key == "log_level") {
    if (auto s = check.String(key, v)) {
      if (auto l = ParseLogLevel(*s)) {
        c.log_level = *l;
      } else {
        check.Fail(v.source(), "'log_level': unknown level \"" + *s +
                                   "\" (debug, info, notice, warning or error)");
      }
    }
  } else if (key == "log_target") {
    if (auto s = check.String(key, v)) {
      if (auto t = ParseLogTarget(*s)) {
        c.log_target = *t;
      } else {
        check.Fail(v.source(), "'log_target': unknown target \"" + *s +
                                   "\" (auto, stderr or journal)");
      }
    }
  } else if (key == "heartbeat_timeout") {
    if (auto t = check.Seconds(key, v, 3600)) c.heartbeat_timeout = *t;
  } else if (key == "crash_loop_failures") {
    if (auto n = check.Integer(key, v, 1, 1000)) c.crash_loop_failures = static_cast<int>(*n);
  } else if (key == "crash_loop_window") {
    if (auto t = check.Seconds(key, v, 3600)) c.crash_loop_window = *t;
  } else if (key == "user" || key == "group" || key == "socket_user" || key == "socket_group") {
    auto s = check.String(key, v);
    if (!s) return;
    // A name or a numeric id; "" means the default, except for `user`.
    bool empty_ok = key != "user";
    if ((s->empty() && !empty_ok) || s->size() > 64 ||
        s->find_first_of(" \t\n:/") != std::string::npos ||
        std::any_of(s->begin(), s->end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; })) {
      check.Fail(v.source(), Validator::Describe(key) + ": expected a user or group name or a numeric id, got \"" +
                                 *s + "\"");
      return;
    }
    if (key == "user") {
      c.user = *s;
      c.user_set = true;
    } else if (key == "group") {
      c.group = *s;
    } else if (key == "socket_user") {
      c.socket_user = *s;
    } else {
      c.socket_group = *s;
    }
  } else if (key == "socket_mode") {
    if (auto s = check.String(key, v)) {
      bool octal = !s->empty() && s->size() <= 4 &&
                   s->find_first_not_of("01234567") == std::string::npos;
      long mode = octal ? std::strtol(s->c_str(), nullptr, 8) : -1;
      if (!octal || mode > 0777) {
        check.Fail(v.source(), "'socket_mode': expected an octal mode such as \"0660\", got \"" +
                                   *s + "\"");
      } else {
        c.socket_mode = static_cast<mode_t>(mode);
      }
    }
  }
}

bool IsKnownKey(std::string_view key) {
  static constexpr std::string_view kKeys[] = {
      "listen",   "backlog",          "workers",   "max_connections", "buffer_size",
      "idle_timeout", "shutdown_timeout", "log_level", "log_target",      "socket_mode",
      "socket_user", "socket_group", "heartbeat_timeout", "crash_loop_failures",
      "crash_loop_window", "user", "group"};
  for (std::string_view k : kKeys) {
    if (k == key) return true;
  }
  return false;
}

// Exact: whole seconds, or seconds with up to three decimals.
std::string Seconds(milliseconds ms) {
  std::string s = std::to_string(ms.count() / 1000);
  if (int64_t frac = ms.count() % 1000; frac != 0) {
    char digits[8];
    std::snprintf(digits, sizeof digits, ".%03lld", static_cast<long long>(frac));
    std::string tail = digits;
    while (tail.back() == '0') tail.pop_back();
    s += tail;
  }
  return s;
}

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

}  // namespace

Config Config::Defaults() {
  Config c;
  c.listen.push_back(*ParseListenAddress("0.0.0.0:1067"));
  return c;
}

std::string ConfigError::ToString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

ConfigLoad ParseConfig(std::string_view text, std::string_view file_name) {
  ConfigLoad out;
  toml::table table;
  try {
    table = toml::parse(text, file_name);
  } catch (const toml::parse_error& e) {
    out.errors.push_back({std::string(file_name), static_cast<int>(e.source().begin.line),
                          static_cast<int>(e.source().begin.column),
                          "syntax error: " + std::string(e.description())});
    return out;
  }

  Validator check(file_name);
  Config c = Config::Defaults();
  for (auto&& [key, value] : table) {
    if (!IsKnownKey(key.str())) {
      check.Fail(key.source(), "unknown key '" + std::string(key.str()) + "'");
      continue;
    }
    ApplyKey(check, c, key.str(), value);
    out.places[std::string(key.str())] = {static_cast<int>(value.source().begin.line),
                                          static_cast<int>(value.source().begin.column)};
  }
  out.errors = check.Take();
  // toml++ iterates keys in sorted order; report in file order.
  std::stable_sort(out.errors.begin(), out.errors.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  if (out.errors.empty()) out.config = std::move(c);
  return out;
}

// The users and groups the file names must exist (a numeric id need not):
// found now, not at start after "listening on", nor at a reload.
std::vector<ConfigError> ResolveNames(const Config& c, const std::map<std::string, ConfigPlace>& places,
                                      const std::string& path) {
  std::vector<ConfigError> errors;
  auto fail = [&](const char* key, const Error& e) {
    auto it = places.find(key);
    ConfigPlace at = it == places.end() ? ConfigPlace{} : it->second;
    errors.push_back({path, at.line, at.column, "'" + std::string(key) + "': " + e.ToString()});
  };
  auto user = LookupUser(c.user);
  if (!user) fail("user", user.error());
  if (!c.group.empty()) {
    if (auto g = LookupGroup(c.group); !g) fail("group", g.error());
  } else if (user && !user->named) {
    fail("user", Err() << "uid " << c.user << " has no passwd entry, so no primary group: set 'group' too");
  }
  if (!c.socket_user.empty()) {
    if (auto u = LookupUser(c.socket_user); !u) fail("socket_user", u.error());
  }
  if (!c.socket_group.empty()) {
    if (auto g = LookupGroup(c.socket_group); !g) fail("socket_group", g.error());
  }
  return errors;
}

std::string FileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

ConfigLoad LoadConfigFile(const std::string& path, const LoadOptions& options) {
  auto fail = [&](std::string message) {
    ConfigLoad out;
    out.errors.push_back({path, 0, 0, std::move(message)});
    out.unreadable = true;
    return out;
  };
  auto fail_errno = [&](const char* what) { return fail(Error(ErrnoErr() << what).ToString()); };
  // Only a regular file is read: open(2) of a FIFO without a writer blocks
  // forever, and a device may do anything. stat first, so nothing else is
  // even opened; O_NONBLOCK and fstat close the race with a rename in between.
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return fail_errno("cannot open");
  if (!S_ISREG(st.st_mode)) return fail("cannot read: it is " + FileTypeName(st.st_mode) + ", not a regular file");
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return fail_errno("cannot open");
  if (fstat(fd.get(), &st) != 0) return fail_errno("cannot stat");
  if (!S_ISREG(st.st_mode)) return fail("cannot read: it is " + FileTypeName(st.st_mode) + ", not a regular file");
  std::string text;
  char buf[16384];
  while (true) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("cannot read");
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ConfigLoad load = ParseConfig(text, path);
  if (load.config && options.resolve_names) {
    load.errors = ResolveNames(*load.config, load.places, path);
    if (!load.errors.empty()) load.config.reset();
  }
  return load;
}

ConfigLoad LoadStartConfig(const std::string& path, bool given) {
  struct stat st {};
  if (!given && stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    ConfigLoad load;
    load.config = Config::Defaults();
    load.defaults = true;
    return load;
  }
  return LoadConfigFile(path);
}

std::string FormatConfig(const Config& c) {
  std::ostringstream s;
  s << "listen = [";
  for (size_t i = 0; i < c.listen.size(); ++i) {
    s << (i ? ", " : "") << Quoted(c.listen[i].ToString());
  }
  s << "]\n";
  s << "backlog = " << c.backlog << "\n";
  if (c.workers == 0) {
    s << "workers = \"auto\"\n";
  } else {
    s << "workers = " << c.workers << "\n";
  }
  s << "max_connections = " << c.max_connections << "\n";
  s << "buffer_size = " << c.buffer_size << "\n";
  s << "idle_timeout = " << Seconds(c.idle_timeout) << "\n";
  s << "shutdown_timeout = " << Seconds(c.shutdown_timeout) << "\n";
  s << "log_level = \"" << LogLevelName(c.log_level) << "\"\n";
  s << "log_target = \"" << LogTargetName(c.log_target) << "\"\n";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(c.socket_mode));
  s << "socket_mode = \"" << mode << "\"\n";
  s << "socket_user = " << Quoted(c.socket_user) << "\n";
  s << "socket_group = " << Quoted(c.socket_group) << "\n";
  s << "heartbeat_timeout = " << Seconds(c.heartbeat_timeout) << "\n";
  s << "crash_loop_failures = " << c.crash_loop_failures << "\n";
  s << "crash_loop_window = " << Seconds(c.crash_loop_window) << "\n";
  s << "user = " << Quoted(c.user) << "\n";
  s << "group = " << Quoted(c.group) << "\n";
  return s.str();
}

void LogConfigErrors(const std::vector<ConfigError>& errors) {
  for (const ConfigError& e : errors) {
    Log(LogLevel::kError, e.ToString(),
        {{"CONFIG_FILE", e.file}, {"CONFIG_LINE", std::to_string(e.line)}, {"CONFIG_COLUMN", std::to_string(e.column)}});
  }
}

}  // namespace rot13d
