#include "supervisor/reload_request.h"

#include <grp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/config.h"
#include "common/exit_codes.h"
#include "common/log.h"
#include "common/result.h"

namespace rot13d {
namespace {

// Waits this long for the supervisor's answer: a reload takes at most the
// boot timeout (30 s), twice when it queues behind one in progress.
constexpr int kReloadWaitSeconds = 90;

// To the journal at its priority under systemd (ExecReload=), else a plain line.
void Report(LogLevel level, const std::string& message) {
  if (StderrIsJournal()) {
    ConfigureLogging(LogLevel::kInfo, LogTarget::kJournal);
    Log(level, message);
    return;
  }
  std::fprintf(level <= LogLevel::kWarning ? stderr : stdout, "rot13d: %s\n", message.c_str());
}

void ReportErrors(const std::vector<ConfigError>& errors) {
  if (StderrIsJournal()) {
    ConfigureLogging(LogLevel::kInfo, LogTarget::kJournal);
    LogConfigErrors(errors);
    return;
  }
  for (const ConfigError& e : errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
}

// The request is a real-time signal, whose default action kills: make sure
// the pid is a rot13d supervisor (systemd's $MAINPID is; a stale pid file may
// not be). Unreadable but there, the process is hidden from us, not gone:
// systemd's PrivateUsers= gives ExecReload= a user namespace of its own, and
// with ProtectProc=invisible /proc then hides the main process. There the pid
// is systemd's $MAINPID, and the signal can reach only our own user anyway.
Status CheckIsSupervisor(pid_t pid) {
  std::string comm;
  std::getline(std::ifstream("/proc/" + std::to_string(pid) + "/comm"), comm);
  if (comm.empty()) {
    if (kill(pid, 0) == 0) return OkStatus();  // hidden
    return Err() << "no process with pid " << pid;
  }
  if (!comm.starts_with("rot13d") || comm.starts_with("rot13d-worker")) {
    return Err() << "pid " << pid << " is not a rot13d supervisor (it is '" << comm << "')";
  }
  return OkStatus();
}

// A supervisor that dropped root may only be signalled by its own user, and
// answers only a process it may signal: become that user.
Status BecomeOwnerOf(pid_t pid) {
  struct stat st {};
  std::string proc = "/proc/" + std::to_string(pid);
  if (geteuid() != 0 || stat(proc.c_str(), &st) != 0 || st.st_uid == 0) return OkStatus();
  if (setgroups(0, nullptr) != 0 || setresgid(st.st_gid, st.st_gid, st.st_gid) != 0 ||
      setresuid(st.st_uid, st.st_uid, st.st_uid) != 0) {
    return ErrnoErr() << "cannot become uid " << st.st_uid << " to hear the answer";
  }
  return OkStatus();
}

// What was asked, for the messages: "reload" or "upgrade".
struct Ask {
  const char* what;
  std::string path;  // the file checked here, or "" when the supervisor's own was left to it
};

int ReportAnswer(int value, pid_t pid, const Ask& ask) {
  if (value > 0) {
    std::printf("rot13d: %s applied: generation %d is serving\n", ask.what, value);
    return kExitOk;
  }
  const char* why = "unknown answer";
  int code = kExitFailure;
  switch (value) {
    case kReloadInvalidConfig:
      why = ask.path.empty() ? "the supervisor found its configuration file invalid; it keeps the running configuration"
                             : "the supervisor found its configuration file invalid (it runs with another file than "
                               "the one checked here, or that file changed since)";
      code = kExitConfig;
      break;
    case kReloadUnreadable:
      why = "the supervisor cannot read its configuration file";
      code = kExitConfig;
      break;
    case kReloadUpgradeFailed:
      why = "the new binary failed its pre-flight or could not be executed; the running one keeps serving";
      break;
    case kReloadCannotListen: why = "a new listen, admin or agent address could not be served"; break;
    case kReloadBootFailed: why = "the new workers did not boot; the previous ones keep serving"; break;
    case kReloadStopping: why = "rot13d is stopping"; break;
  }
  Report(LogLevel::kError, std::string(ask.what) + " failed: " + why + " (the log of pid " + std::to_string(pid) +
                               " has the details)");
  return code;
}

int AwaitAnswer(pid_t pid, const sigset_t& answer, const Ask& ask) {
  for (int waited = 0; waited < kReloadWaitSeconds; ++waited) {
    timespec second{1, 0};
    siginfo_t info{};
    int sig = sigtimedwait(&answer, &info, &second);
    if (sig < 0) {
      if (errno != EAGAIN && errno != EINTR) break;
      if (kill(pid, 0) != 0 && errno == ESRCH) {
        Report(LogLevel::kError, std::string(ask.what) + " failed: pid " + std::to_string(pid) + " exited");
        return kExitFailure;
      }
      continue;
    }
    if (info.si_pid == pid) return ReportAnswer(info.si_value.sival_int, pid, ask);
  }
  Report(LogLevel::kError, "no answer from pid " + std::to_string(pid) + " within " +
                               std::to_string(kReloadWaitSeconds) + " s; is it rot13d?");
  return kExitFailure;
}

}  // namespace

int RequestReload(const std::string& pid_text, const std::string& path, bool given, bool upgrade) {
  const Ask ask{upgrade ? "upgrade" : "reload", given ? path : std::string()};
  int pid = 0;
  auto [end, ec] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
  if (ec != std::errc() || end != pid_text.data() + pid_text.size() || pid <= 1) {
    std::fprintf(stderr, "rot13d: --%s needs the supervisor's pid, got '%s'\n", ask.what, pid_text.c_str());
    return kExitUsage;
  }
  // The supervisor checks the file it runs with, which only it knows. A file
  // named here (the unit's ExecReload= names it) is checked first, so that
  // its errors come with their places to whoever asked.
  if (given) {
    ConfigLoad load = LoadConfigFile(path);
    if (!load.config) {
      ReportErrors(load.errors);
      Report(LogLevel::kError, std::string(ask.what) + " refused: " + path +
                                   (load.unreadable ? " cannot be read" : " is invalid") +
                                   "; the running configuration stays");
      return kExitConfig;
    }
  }
  if (Status s = CheckIsSupervisor(pid); !s) {
    std::fprintf(stderr, "rot13d: %s\n", s.error().ToString().c_str());
    return kExitFailure;
  }
  sigset_t answer;
  sigemptyset(&answer);
  sigaddset(&answer, ReloadAnswerSignal());
  if (sigprocmask(SIG_BLOCK, &answer, nullptr) != 0) {
    std::fprintf(stderr, "rot13d: %s\n", Error(ErrnoErr() << "sigprocmask").ToString().c_str());
    return kExitFailure;
  }
  if (Status s = BecomeOwnerOf(pid); !s) {
    std::fprintf(stderr, "rot13d: %s\n", s.error().ToString().c_str());
    return kExitFailure;
  }
  sigval request{};
  request.sival_int = upgrade ? kUpgradeRequest : kReloadRequest;
  if (sigqueue(pid, ReloadRequestSignal(), request) != 0) {
    std::fprintf(stderr, "rot13d: %s\n", Error(ErrnoErr() << "cannot signal pid " << pid).ToString().c_str());
    return kExitFailure;
  }
  return AwaitAnswer(pid, answer, ask);
}

bool IsReloadRequest(const signalfd_siginfo& si) {
  return static_cast<int>(si.ssi_signo) == ReloadRequestSignal() && si.ssi_code == SI_QUEUE &&
         (si.ssi_int == kReloadRequest || si.ssi_int == kUpgradeRequest);
}

bool IsUpgradeRequest(const signalfd_siginfo& si) { return IsReloadRequest(si) && si.ssi_int == kUpgradeRequest; }

void ReloadRequesters::Add(pid_t requester) {
  if (int fd = static_cast<int>(syscall(SYS_pidfd_open, requester, 0)); fd >= 0) next_.emplace_back(fd);
}

void ReloadRequesters::StartReload() {
  for (UniqueFd& fd : next_) waiting_.push_back(std::move(fd));
  next_.clear();
}

// What sigqueue(3) sends, through the requester's pidfd. (syscall(2): the
// <sys/pidfd.h> of Debian 12's glibc 2.36 lacks extern "C" for C++.)
void ReloadRequesters::Answer(int value) {
  for (const UniqueFd& fd : waiting_) {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    info.si_signo = ReloadAnswerSignal();
    info.si_code = SI_QUEUE;
    info.si_pid = self_;
    info.si_uid = getuid();
    info.si_value.sival_int = value;
    if (syscall(SYS_pidfd_send_signal, fd.get(), ReloadAnswerSignal(), &info, 0) != 0 && errno != ESRCH) {
      Log(LogLevel::kWarning, Error(ErrnoErr() << "answering a reload request").ToString());
    }
  }
  waiting_.clear();
}

void ReloadRequesters::AnswerAll(int value) {
  StartReload();
  Answer(value);
}

std::vector<int> ReloadRequesters::PendingFds() const {
  std::vector<int> fds;
  for (const auto* list : {&waiting_, &next_}) {
    for (const UniqueFd& fd : *list) fds.push_back(fd.get());
  }
  return fds;
}

void ReloadRequesters::Adopt(const std::vector<int>& fds) {
  for (int fd : fds) waiting_.emplace_back(fd);
}

void ReloadRequesters::Forget() {
  waiting_.clear();
  next_.clear();
}

}  // namespace rot13d
