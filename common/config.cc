#include "common/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <tuple>

#include "common/config_keys.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "common/users.h"

// toml++ reports problems with exceptions; they stop at this file's boundary.
#include <toml++/toml.h>

namespace rot13d {

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

  ConfigErrors errors(file_name);
  Config c = Config::Defaults();
  for (auto&& [name, value] : table) {
    const ConfigKey* key = FindConfigKey(name.str());
    if (!key) {
      errors.Fail(name.source(), "unknown key '" + std::string(name.str()) + "'");
      continue;
    }
    ApplyConfigKey(*key, value, c, errors);
    out.places[std::string(name.str())] = {static_cast<int>(value.source().begin.line),
                                           static_cast<int>(value.source().begin.column)};
  }
  out.errors = errors.Take();
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
  std::string out;
  for (const ConfigKey& key : ConfigKeys()) {
    out += std::string(key.name) + " = " + FormatConfigValue(key, c) + "\n";
  }
  return out;
}

void LogConfigErrors(const std::vector<ConfigError>& errors) {
  for (const ConfigError& e : errors) {
    Log(LogLevel::kError, e.ToString(),
        {{"CONFIG_FILE", e.file}, {"CONFIG_LINE", std::to_string(e.line)}, {"CONFIG_COLUMN", std::to_string(e.column)}});
  }
}

}  // namespace rot13d
