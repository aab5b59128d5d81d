#include "common/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "common/config_keys.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "common/users.h"

// toml++ reports problems with exceptions; they stop at this file's boundary.
#include <toml++/toml.h>

namespace rot13d {

const char* ConnectionLogName(ConnectionLog mode) {
  switch (mode) {
    case ConnectionLog::kOff: return "off";
    case ConnectionLog::kErrors: return "errors";
    case ConnectionLog::kAll: return "all";
  }
  return "?";
}

Config Config::Defaults() {
  Config c;
  c.listen.push_back(*ParseListenAddress("0.0.0.0:1067"));
  c.proxy_trusted = {*ParseCidr("127.0.0.0/8"), *ParseCidr("::1/128")};
  return c;
}

std::string ConfigError::ToString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

namespace {

// Edits (insert, delete, replace, swap of neighbours) that turn a into b.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// "; did you mean 'workers'?" when a known key is close to the unknown one.
std::string DidYouMean(std::string_view unknown) {
  std::string_view best;
  size_t best_distance = std::max<size_t>(2, unknown.size() / 4) + 1;
  for (const ConfigKey& k : ConfigKeys()) {
    size_t d = EditDistance(unknown, k.name);
    if (d < best_distance) {
      best = k.name;
      best_distance = d;
    }
  }
  return best.empty() ? "" : "; did you mean '" + std::string(best) + "'?";
}

std::string SyntaxHint(std::string_view text, int line) {
  size_t start = 0;
  for (int l = 1; l < line && start != std::string_view::npos; ++l) {
    start = text.find('\n', start);
    if (start != std::string_view::npos) ++start;
  }
  if (start == std::string_view::npos) return "";
  std::string_view row = text.substr(start, text.find('\n', start) - start);
  size_t eq = row.find('=');
  if (eq == std::string_view::npos) return "each setting is a line `key = value`";
  std::string_view value = row.substr(eq + 1);
  bool bare_address = value.find(':') != std::string_view::npos && value.find('"') == std::string_view::npos &&
                      value.find('\'') == std::string_view::npos;
  if (bare_address) return "text such as an address must be in quotes, as in listen = [\"127.0.0.1:1067\"]";
  return "";
}

// toml++ says what its grammar expected; say what the user most likely
// meant. The common slip: an address or a duration written without quotes
// (`listen = [127.0.0.1:1067]` reads as the start of a date or a time).
std::string SyntaxError(std::string_view text, int line, std::string_view parser_says) {
  std::string hint = SyntaxHint(text, line);
  if (hint.empty()) return "syntax error: " + std::string(parser_says);
  return "syntax error: " + hint + " (the TOML parser says: " + std::string(parser_says) + ")";
}


}  // namespace

ConfigLoad ParseConfig(std::string_view text, std::string_view file_name) {
  ConfigLoad out;
  toml::table table;
  try {
    table = toml::parse(text, file_name);
  } catch (const toml::parse_error& e) {
    out.errors.push_back({std::string(file_name), static_cast<int>(e.source().begin.line),
                          static_cast<int>(e.source().begin.column),
                          SyntaxError(text, static_cast<int>(e.source().begin.line), e.description())});
    return out;
  }

  ConfigErrors errors(file_name);
  Config c = Config::Defaults();
  for (auto&& [name, value] : table) {
    const ConfigKey* key = FindConfigKey(name.str());
    if (!key) {
      errors.Fail(name.source(), "unknown key '" + std::string(name.str()) + "'" + DidYouMean(name.str()));
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
  // `user` and `group` matter only to a process started as root.
  if (geteuid() == 0) {
    auto user = LookupUser(c.user);
    if (!user) fail("user", user.error());
    if (!c.group.empty()) {
      if (auto g = LookupGroup(c.group); !g) fail("group", g.error());
    } else if (user && !user->named) {
      fail("user", Err() << "uid " << c.user << " has no passwd entry, so no primary group: set 'group' too");
    }
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
  // lstat: a link to a missing file is an error to report, not "no file".
  struct stat st {};
  if (!given && lstat(path.c_str(), &st) != 0 && errno == ENOENT) {
    ConfigLoad load;
    load.config = Config::Defaults();
    load.defaults = true;
    return load;
  }
  return LoadConfigFile(path);
}

void OverrideListen(ConfigLoad& load, const std::vector<ListenAddress>& listen) {
  if (!load.config || listen.empty()) return;
  load.config->listen = listen;
  load.config->listen_set = true;
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
