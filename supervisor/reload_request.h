// `rot13d --reload PID` and the supervisor: a reload request that gets an answer.
//
// The requester sends ReloadRequestSignal() with sigqueue(2) and kReloadRequest
// as its value (a real-time signal: requests queue, and never merge with a
// pending SIGHUP); the supervisor reloads as on SIGHUP and answers that pid
// with ReloadAnswerSignal() once the reload is settled: a positive value is the
// generation now serving, a negative one a ReloadFailure. A plain `kill -HUP`
// reloads the same way, unanswered.
#pragma once

#include <csignal>

namespace rot13d {

inline constexpr int kReloadRequest = 0x52313344;  // "R13D"

enum ReloadFailure : int {
  kReloadInvalidConfig = -1,  // the file did not parse or validate
  kReloadCannotListen = -2,   // a new listen address could not be bound
  kReloadBootFailed = -3,     // the new workers did not boot; the old ones serve on
  kReloadStopping = -4,       // the supervisor is stopping
  kReloadUnreadable = -5,     // the supervisor could not read the file (permissions, type)
};

inline int ReloadRequestSignal() { return SIGRTMIN + 1; }
inline int ReloadAnswerSignal() { return SIGRTMIN + 2; }

}  // namespace rot13d
