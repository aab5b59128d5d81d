// rot13d: command line, --check-config, --reload, and the hand-over to the supervisor.
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "supervisor/reload_request.h"
#include "supervisor/supervisor.h"

#ifndef ROT13D_VERSION
#define ROT13D_VERSION "unknown"
#endif

namespace {

constexpr const char* kUsage =
    "Usage: rot13d [--config PATH] [--check-config [--quiet]]\n"
    "       rot13d [--config PATH] --reload PID\n"
    "       rot13d --version | --help\n"
    "\n"
    "A rot13 network service: a supervisor that binds its listeners once and\n"
    "forks workers that serve them. It stays in the foreground.\n"
    "\n"
    "  -c, --config PATH    configuration file (default /etc/rot13d/rot13d.toml;\n"
    "                       when that file does not exist, embedded defaults)\n"
    "  -t, --check-config   validate the configuration, print the effective\n"
    "                       settings, exit 0 if valid and 3 if not\n"
    "  -q, --quiet          with --check-config: print only errors\n"
    "  -r, --reload PID     check the configuration, ask the supervisor PID to\n"
    "                       reload it and wait for the outcome: exit 0 once the\n"
    "                       new workers serve, 3 if the file is invalid, 1 if\n"
    "                       the reload failed (the old workers keep serving)\n"
    "  -v, --version        print the version\n"
    "  -h, --help           print this help\n"
    "\n"
    "Signals: HUP reloads the configuration, TERM or INT stop gracefully,\n"
    "QUIT stops at once. See rot13d(8).\n";

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
int CheckConfig(const std::string& path, bool given, bool quiet) {
  using namespace rot13d;
  struct stat st {};
  if (!given && stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    if (!quiet) {
      std::fputs(FormatConfig(Config::Defaults()).c_str(), stdout);
      std::fprintf(stderr, "rot13d: no configuration file at %s; the embedded defaults above are valid\n",
                   path.c_str());
    }
    return kExitOk;
  }
  ConfigLoad load = LoadConfigFile(path);
  if (!load.config) {
    ReportConfigErrors(load.errors);
    ReportError(load.unreadable ? path + " cannot be read"
                                : path + " is invalid (" + Count(load.errors.size(), "error") + ")");
    return kExitConfig;
  }
  if (!quiet) {
    std::fputs(FormatConfig(*load.config).c_str(), stdout);
    std::fprintf(stderr, "rot13d: %s is valid\n", path.c_str());
  }
  return kExitOk;
}

// Waits this long for the supervisor's answer: a reload takes at most the
// boot timeout (30 s), twice when it queues behind one in progress.
constexpr int kReloadWaitSeconds = 90;

int RequestReload(const std::string& pid_text, const std::string& path) {
  using namespace rot13d;
  int pid = 0;
  auto [end, ec] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
  if (ec != std::errc() || end != pid_text.data() + pid_text.size() || pid <= 1) {
    std::fprintf(stderr, "rot13d: --reload needs the supervisor's pid, got '%s'\n", pid_text.c_str());
    return kExitUsage;
  }
  // The supervisor re-reads the file; refuse early, with every error's place.
  ConfigLoad load = LoadConfigFile(path);
  if (!load.config) {
    ReportConfigErrors(load.errors);
    ReportError("reload refused: " + path + (load.unreadable ? " cannot be read" : " is invalid") +
                "; the running configuration stays");
    return kExitConfig;
  }
  // The request is a real-time signal, whose default action kills: make sure
  // the pid is a rot13d (systemd's $MAINPID is; a stale pid file may not be).
  std::string comm;
  if (FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/comm").c_str(), "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f)) comm = buf;
    std::fclose(f);
  }
  // Unreadable but there: the process is hidden from us, not gone. systemd's
  // PrivateUsers= gives ExecReload= a user namespace of its own, and with
  // ProtectProc=invisible /proc then hides the main process (ptrace access
  // needs the same namespace). There the pid is systemd's $MAINPID, and the
  // signal can reach only a process of our own user anyway.
  const bool hidden = comm.empty() && kill(pid, 0) == 0;
  if (comm.empty() && !hidden) {
    std::fprintf(stderr, "rot13d: no process with pid %d\n", pid);
    return kExitFailure;
  }
  if (!hidden && (!comm.starts_with("rot13d") || comm.starts_with("rot13d-worker"))) {
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    std::fprintf(stderr, "rot13d: pid %d is not a rot13d supervisor (it is '%s')\n", pid, comm.c_str());
    return kExitFailure;
  }
  sigset_t answer;
  sigemptyset(&answer);
  sigaddset(&answer, ReloadAnswerSignal());
  sigprocmask(SIG_BLOCK, &answer, nullptr);
  // A supervisor that dropped root may only signal its own user: become it.
  struct stat st {};
  std::string proc = "/proc/" + std::to_string(pid);
  if (geteuid() == 0 && stat(proc.c_str(), &st) == 0 && st.st_uid != 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(st.st_gid, st.st_gid, st.st_gid) != 0 ||
        setresuid(st.st_uid, st.st_uid, st.st_uid) != 0) {
      std::fprintf(stderr, "rot13d: cannot become uid %u to hear the answer: %s\n",
                   static_cast<unsigned>(st.st_uid), std::strerror(errno));
      return kExitFailure;
    }
  }
  sigval request{};
  request.sival_int = kReloadRequest;
  if (sigqueue(pid, ReloadRequestSignal(), request) != 0) {
    std::fprintf(stderr, "rot13d: cannot signal pid %d: %s\n", pid, std::strerror(errno));
    return kExitFailure;
  }
  for (int waited = 0; waited < kReloadWaitSeconds; ++waited) {
    timespec second{1, 0};
    siginfo_t info{};
    int sig = sigtimedwait(&answer, &info, &second);
    if (sig < 0) {
      if (errno != EAGAIN && errno != EINTR) break;
      if (kill(pid, 0) != 0 && errno == ESRCH) {
        std::fprintf(stderr, "rot13d: reload failed: pid %d exited\n", pid);
        return kExitFailure;
      }
      continue;
    }
    if (info.si_pid != pid) continue;
    int value = info.si_value.sival_int;
    if (value > 0) {
      std::printf("rot13d: reload applied: generation %d is serving %s\n", value, path.c_str());
      return kExitOk;
    }
    const char* why = "unknown answer";
    int code = kExitFailure;
    switch (value) {
      case kReloadInvalidConfig:
        why = "the supervisor found the file invalid (it changed after this check?)";
        code = kExitConfig;
        break;
      case kReloadUnreadable:
        why = "the supervisor cannot read the file";
        code = kExitConfig;
        break;
      case kReloadCannotListen: why = "a new listen address could not be bound"; break;
      case kReloadBootFailed: why = "the new workers did not boot; the previous ones keep serving"; break;
      case kReloadStopping: why = "rot13d is stopping"; break;
    }
    ReportError(std::string("reload failed: ") + why + " (its log has the details)");
    return code;
  }
  std::fprintf(stderr, "rot13d: no answer from pid %d within %d s; is it rot13d?\n", pid, kReloadWaitSeconds);
  return kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace rot13d;
  supervisor::Options options;
  options.config_path = kDefaultConfigPath;
  bool check = false;
  bool quiet = false;
  std::string reload_pid;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (arg == "-v" || arg == "--version") {
      std::printf("rot13d %s\n", ROT13D_VERSION);
      return kExitOk;
    } else if (arg == "-t" || arg == "--check-config") {
      check = true;
    } else if (arg == "-q" || arg == "--quiet") {
      quiet = true;
    } else if (arg == "-r" || arg == "--reload") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rot13d: %s needs the supervisor's pid\n%s", argv[i], kUsage);
        return kExitUsage;
      }
      reload_pid = argv[++i];
    } else if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "rot13d: %s needs a path\n%s", argv[i], kUsage);
        return kExitUsage;
      }
      options.config_path = argv[++i];
      options.config_path_given = true;
    } else if (arg.starts_with("--config=")) {
      options.config_path = std::string(arg.substr(9));
      options.config_path_given = true;
    } else {
      std::fprintf(stderr, "rot13d: unknown argument '%s'\n%s", argv[i], kUsage);
      return kExitUsage;
    }
  }
  if (check) return CheckConfig(options.config_path, options.config_path_given, quiet);
  if (!reload_pid.empty()) return RequestReload(reload_pid, options.config_path);
  ConfigureLogging(LogLevel::kInfo, LogTarget::kAuto);
  return supervisor::Run(options);
}
