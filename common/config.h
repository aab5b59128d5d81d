// The daemon's configuration: the TOML file's keys, their defaults, and validation.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/log.h"

namespace rot13d {

inline constexpr const char* kDefaultConfigPath = "/etc/rot13d/rot13d.toml";
inline constexpr int kMaxWorkers = 1024;

// Which closed connections get a line in the log (see daemon/connection_log.h).
enum class ConnectionLog { kOff, kErrors, kAll };
// "off", "errors", "all".
const char* ConnectionLogName(ConnectionLog mode);

struct Config {
  std::vector<ListenAddress> listen;  // never empty after validation
  bool listen_set = false;            // the file named `listen` (matters under socket activation)
  int backlog = 4096;
  int workers = 0;                    // 0 means "auto"
  int max_connections = 10000;        // per worker
  // Open connections from one client address (after PROXY), over all workers; 0 = no limit.
  int max_connections_per_address = 0;
  size_t buffer_size = 64 * 1024;     // bytes kept per connection at most
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(300)};  // 0 = never
  std::chrono::milliseconds shutdown_timeout{std::chrono::seconds(30)};
  LogLevel log_level = LogLevel::kInfo;
  LogTarget log_target = LogTarget::kAuto;
  mode_t socket_mode = 0666;          // permission bits of unix sockets we create
  std::string socket_user;            // owner of unix sockets we create ("" = unchanged)
  std::string socket_group;           // group of unix sockets we create ("" = unchanged)
  // A worker whose event loop has not turned for this long is hung: SIGABRT, then SIGKILL.
  std::chrono::milliseconds heartbeat_timeout{std::chrono::seconds(10)};  // 0 = never
  // This many boot failures of one generation within the window engage the
  // crash-loop governor: at most one fork per second for that generation.
  int crash_loop_failures = 3;
  std::chrono::milliseconds crash_loop_window{std::chrono::seconds(10)};  // 0 = no governor
  // Started as root, the supervisor binds and then becomes this user (and group;
  // "" = the user's primary group). "root" keeps root, explicitly.
  std::string user = "nobody";
  bool user_set = false;              // the file named `user` (else it is ignored when not root)
  std::string group;
  // The HTTP admin endpoint (GET /metrics, /status): addresses like listen's; none by default.
  std::vector<ListenAddress> admin_listen;
  // HAProxy's agent-check (supervisor/agent.h): addresses like admin_listen's; none by default.
  std::vector<ListenAddress> agent_listen;
  ConnectionLog connection_log = ConnectionLog::kOff;
  // Sources allowed to send a PROXY header on a listener that expects one
  // (unix sockets always are); Defaults() sets loopback.
  std::vector<Cidr> proxy_trusted;
  // How long a connection on such a listener may take to send its header.
  std::chrono::milliseconds proxy_header_timeout{std::chrono::seconds(5)};

  static Config Defaults();
};

// One problem with a configuration file, at a place in it (line 0 = the file as a whole).
struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  // "file:line:column: message", the form editors and compilers use.
  std::string ToString() const;
};

struct ConfigPlace {
  int line = 0;
  int column = 0;
};

struct ConfigLoad {
  std::optional<Config> config;     // set only when errors is empty
  std::vector<ConfigError> errors;  // every problem found, in file order
  std::map<std::string, ConfigPlace> places;  // where each key's value is
  bool unreadable = false;  // the file could not be read at all (its one error says why)
  bool defaults = false;    // no file at the default path: the embedded defaults
};

// Parses and validates TOML text; file_name is used in error positions.
ConfigLoad ParseConfig(std::string_view text, std::string_view file_name);

struct LoadOptions {
  // Also check that the users and groups named exist on this system (user
  // and group only when running as root, where they are used). The
  // supervisor's reload does not: a lookup can take long (LDAP, sssd), and the
  // reload requester has checked already.
  bool resolve_names = true;
};
// Reads and parses a regular file (anything else, a FIFO above all, is refused
// without being opened); a missing or unreadable file is an error at line 0.
ConfigLoad LoadConfigFile(const std::string& path, const LoadOptions& options = {});

// What rot13d runs on: the file at `path`; or, when that is the default path
// (not `given` with --config) and no file is there, the embedded defaults.
// Only at start and for --check-config: a reload must never trade the running
// configuration for the defaults because the file was moved aside for editing.
ConfigLoad LoadStartConfig(const std::string& path, bool given);

// The command line's --listen addresses replace the file's `listen` (a no-op when empty).
void OverrideListen(ConfigLoad& load, const std::vector<ListenAddress>& listen);

// Logs each error at error priority with CONFIG_FILE, CONFIG_LINE and CONFIG_COLUMN fields.
void LogConfigErrors(const std::vector<ConfigError>& errors);

// The effective configuration as TOML, as --check-config prints it.
std::string FormatConfig(const Config& config);

}  // namespace rot13d
