// rot13d: the program entry. The command line, --check-config, and the hand-over
// to the reload requester (reload_request.h) or the supervisor.
#include <cerrno>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "supervisor/reload_request.h"
#include "supervisor/status_request.h"
#include "supervisor/supervisor.h"

#ifndef ROT13D_VERSION
#define ROT13D_VERSION "unknown"
#endif

namespace {

constexpr const char* kUsage =
    "Usage: rot13d [--config PATH] [--listen ADDR]... [--check-config [--quiet]]\n"
    "       rot13d [--config PATH] --reload PID | --upgrade PID\n"
    "       rot13d [--config PATH] --status [ADDRESS]\n"
    "       rot13d --version | --help\n"
    "\n"
    "A rot13 network service: a supervisor that binds its listeners once and\n"
    "forks workers that serve them. It stays in the foreground.\n"
    "\n"
    "  -c, --config PATH    configuration file (default /etc/rot13d/rot13d.toml;\n"
    "                       when that file does not exist, embedded defaults)\n"
    "  -l, --listen ADDR    listen on ADDR instead of the file's `listen`\n"
    "                       (repeatable): HOST:PORT, [IPv6]:PORT, unix:PATH\n"
    "  -t, --check-config   validate the configuration, print the effective\n"
    "                       settings, exit 0 if valid and 3 if not\n"
    "  -q, --quiet          with --check-config: print only errors\n"
    "  -r, --reload PID     check the configuration, ask the supervisor PID to\n"
    "                       reload it and wait for the outcome: exit 0 once the\n"
    "                       new workers serve, 3 if the file is invalid, 1 if\n"
    "                       the reload failed (the old workers keep serving).\n"
    "                       It checks the file the supervisor runs with (and\n"
    "                       with --config, that file first). After the binary\n"
    "                       was replaced (a package upgrade), a reload is an\n"
    "                       upgrade\n"
    "  -U, --upgrade PID    ask the supervisor PID to execute its installed\n"
    "                       binary in place (same pid, listeners and clients;\n"
    "                       its workers drain while the new binary's take over)\n"
    "                       and reload; exit codes as --reload\n"
    "  -s, --status [ADDR]  print the running daemon's workers and counters, from\n"
    "                       its admin endpoint at ADDR (default: the first\n"
    "                       admin_listen of the configuration)\n"
    "  -v, --version        print the version\n"
    "  -h, --help           print this help\n"
    "\n"
    "Signals: HUP reloads the configuration, USR2 upgrades (as --upgrade),\n"
    "TERM or INT stop gracefully, QUIT stops at once. See rot13d(8).\n";

// Problems found by the one-shot commands (--check-config, --reload): plain
// lines on a terminal; under systemd (ExecReload=) journal entries at their
// priority, with the config error fields, so that `journalctl -u rot13d -p err`
// and `systemctl status` show them.
void ReportConfigErrors(const std::vector<rot13d::ConfigError>& errors) {
  using namespace rot13d;
  if (StderrIsJournal()) {
    ConfigureLogging(LogLevel::kInfo, LogTarget::kJournal);
    LogConfigErrors(errors);
    return;
  }
  for (const ConfigError& e : errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
}

void ReportError(const std::string& message) {
  using namespace rot13d;
  if (StderrIsJournal()) {
    ConfigureLogging(LogLevel::kInfo, LogTarget::kJournal);
    Log(LogLevel::kError, message);
    return;
  }
  std::fprintf(stderr, "rot13d: %s\n", message.c_str());
}

// --check-config: the effective configuration on stdout unless quiet (as
// nginx -t -q), the verdict on stderr, every error as file:line:column.
int CheckConfig(const std::string& path, bool given, const std::vector<rot13d::ListenAddress>& listen, bool quiet) {
  using namespace rot13d;
  ConfigLoad load = LoadStartConfig(path, given);
  OverrideListen(load, listen);
  if (!load.config) {
    ReportConfigErrors(load.errors);
    ReportError(load.unreadable ? path + " cannot be read"
                                : path + " is invalid (" + Count(load.errors.size(), "error") + ")");
    return kExitConfig;
  }
  if (!quiet) {
    std::fputs(FormatConfig(*load.config).c_str(), stdout);
    if (load.defaults) {
      std::fprintf(stderr, "rot13d: no configuration file at %s; the embedded defaults above are valid\n",
                   path.c_str());
    } else {
      std::fprintf(stderr, "rot13d: %s is valid\n", path.c_str());
    }
  }
  return kExitOk;
}

struct Command {
  enum class Kind { kRun, kCheck, kReload, kUpgrade, kPreflight, kStatus, kHelp, kVersion, kUsageError } kind =
      Kind::kRun;
  rot13d::supervisor::Options options;
  bool quiet = false;
  std::string reload_pid;
  std::string status_address;  // --status [ADDRESS]; empty: the config's admin_listen
  std::string error;  // for kUsageError
};

// --listen ADDRESS, as `listen` would take it (port 0 is refused there too).
void AddListen(Command& c, const char* text) {
  auto address = rot13d::ParseListenAddress(text);
  if (address && address->kind != rot13d::ListenAddress::Kind::kUnix && address->port == 0) {
    address = rot13d::Error("port 0 would bind a random port");
  }
  if (!address) {
    c.kind = Command::Kind::kUsageError;
    c.error = "--listen " + std::string(text) + ": " + address.error().message();
    return;
  }
  c.options.listen.push_back(*address);
}

Command ParseArgs(int argc, char** argv) {
  Command c;
  c.options.config_path = rot13d::kDefaultConfigPath;
  auto value = [&](int& i, const char* what) -> const char* {
    if (i + 1 < argc) return argv[++i];
    c.kind = Command::Kind::kUsageError;
    c.error = std::string(argv[i]) + " needs " + what;
    return nullptr;
  };
  for (int i = 1; i < argc && c.kind != Command::Kind::kUsageError; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      c.kind = Command::Kind::kHelp;
      return c;
    }
    if (arg == "-v" || arg == "--version") {
      c.kind = Command::Kind::kVersion;
      return c;
    }
    if (arg == "-t" || arg == "--check-config") {
      c.kind = Command::Kind::kCheck;
    } else if (arg == "-q" || arg == "--quiet") {
      c.quiet = true;
    } else if (arg == "-r" || arg == "--reload") {
      if (const char* v = value(i, "the supervisor's pid")) {
        c.kind = Command::Kind::kReload;
        c.reload_pid = v;
      }
    } else if (arg == "-U" || arg == "--upgrade") {
      if (const char* v = value(i, "the supervisor's pid")) {
        c.kind = Command::Kind::kUpgrade;
        c.reload_pid = v;
      }
    } else if (arg == "--upgrade-preflight") {
      // Run by a supervisor on the binary it is about to execute (upgrade.cc); not for people.
      c.kind = Command::Kind::kPreflight;
    } else if (arg == "-s" || arg == "--status") {
      c.kind = Command::Kind::kStatus;
      // An optional address: the next argument unless it is an option.
      if (i + 1 < argc && argv[i + 1][0] != '-') c.status_address = argv[++i];
    } else if (arg == "-l" || arg == "--listen") {
      if (const char* v = value(i, "an address")) AddListen(c, v);
    } else if (arg == "-c" || arg == "--config" || arg.starts_with("--config=")) {
      const char* v = arg.starts_with("--config=") ? argv[i] + 9 : value(i, "a path");
      if (v) {
        c.options.config_path = v;
        c.options.config_path_given = true;
      }
    } else {
      c.kind = Command::Kind::kUsageError;
      c.error = "unknown argument '" + std::string(arg) + "'";
    }
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rot13d;
  Command c = ParseArgs(argc, argv);
  switch (c.kind) {
    case Command::Kind::kHelp: std::fputs(kUsage, stdout); return kExitOk;
    case Command::Kind::kVersion: std::printf("rot13d %s\n", ROT13D_VERSION); return kExitOk;
    case Command::Kind::kUsageError: std::fprintf(stderr, "rot13d: %s\n%s", c.error.c_str(), kUsage); return kExitUsage;
    case Command::Kind::kCheck:
      return CheckConfig(c.options.config_path, c.options.config_path_given, c.options.listen, c.quiet);
    case Command::Kind::kReload:
    case Command::Kind::kUpgrade:
      return RequestReload(c.reload_pid, c.options.config_path, c.options.config_path_given,
                           c.kind == Command::Kind::kUpgrade);
    case Command::Kind::kPreflight: c.options.version = ROT13D_VERSION; return supervisor::Preflight(c.options);
    case Command::Kind::kStatus:
      return supervisor::RequestStatus(c.status_address, c.options.config_path, c.options.config_path_given);
    case Command::Kind::kRun: break;
  }
  ConfigureLogging(LogLevel::kInfo, LogTarget::kAuto);
  c.options.version = ROT13D_VERSION;
  c.options.argv.assign(argv, argv + argc);  // before the title overwrites them: an upgrade runs them again
  InitProcTitle(argc, argv);  // argv was read: ps and top show what the process is doing
  SetProcTitle("rot13d: supervisor (starting)");
  return supervisor::Run(c.options);
}
