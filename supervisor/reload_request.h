// `rot13d --reload PID` and the supervisor: a reload request that gets an answer.
// Both sides of the protocol live here.
//
// The requester sends ReloadRequestSignal() with sigqueue(2) and kReloadRequest
// as its value (a real-time signal: requests queue, and never merge with a
// pending SIGHUP); the supervisor reloads as on SIGHUP and answers the
// requester with ReloadAnswerSignal() once the reload is settled: a positive
// value is the generation now serving, a negative one a ReloadFailure. A plain
// `kill -HUP` reloads the same way, unanswered.
#pragma once

#include <sys/signalfd.h>
#include <sys/types.h>

#include <csignal>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace rot13d {

inline constexpr int kReloadRequest = 0x52313344;   // "R13D"
inline constexpr int kUpgradeRequest = 0x52313355;  // "R13U": re-execute the binary, then reload

enum ReloadFailure : int {
  kReloadInvalidConfig = -1,  // the file did not parse or validate
  kReloadCannotListen = -2,   // a new listen, admin or agent address could not be served
  kReloadBootFailed = -3,     // the new workers did not boot; the old ones serve on
  kReloadStopping = -4,       // the supervisor is stopping
  kReloadUnreadable = -5,     // the supervisor could not read the file (permissions, type)
  kReloadUpgradeFailed = -6,  // the new binary failed its pre-flight or could not be executed
};

inline int ReloadRequestSignal() { return SIGRTMIN + 1; }
inline int ReloadAnswerSignal() { return SIGRTMIN + 2; }

// ---- The requester's side.

// Asks the supervisor `pid_text` to reload (or, with `upgrade`, to re-execute
// its binary and reload: supervisor/handover.h) and waits for its answer. The
// supervisor checks the file it runs with; when config_path was `given`, that
// file is checked here first too, for its errors' places. Returns the process
// exit code: 0 applied, 3 the file is invalid or unreadable, 1 the reload
// failed or no answer came, 2 a bad pid. Prints what happened (to the
// journal, when stderr is it).
int RequestReload(const std::string& pid_text, const std::string& config_path, bool given, bool upgrade);

// ---- The supervisor's side.

// Whether a signal read from the signalfd is a well-formed reload request (or upgrade request).
bool IsReloadRequest(const signalfd_siginfo& si);
bool IsUpgradeRequest(const signalfd_siginfo& si);

// The requesters waiting for an answer, as pidfds (not pids: an answer must
// never reach a stranger that reused the pid of a requester that gave up,
// and the answer is a real-time signal, which kills by default).
class ReloadRequesters {
 public:
  explicit ReloadRequesters(pid_t self) : self_(self) {}
  // A request arrived: its sender waits for the next reload to settle. A
  // sender already gone gets no answer; the reload still runs.
  void Add(pid_t requester);
  // The reload starting now answers everyone who asked until now.
  void StartReload();
  // The reload in progress settled: answer those waiting for it.
  void Answer(int value);
  // Stopping: everyone waiting gets kReloadStopping.
  void AnswerAll(int value);
  // Closes every pidfd, in a forked worker.
  void Forget();
  // For an upgrade's handover: every requester's pidfd, all of whom get the
  // answer of the upgrade (it re-reads the file after their request), and
  // in the new image the same descriptors taken back.
  std::vector<int> PendingFds() const;
  void Adopt(const std::vector<int>& fds);

 private:
  pid_t self_;
  std::vector<UniqueFd> waiting_;  // for the reload in progress
  std::vector<UniqueFd> next_;     // for the next one
};

}  // namespace rot13d
