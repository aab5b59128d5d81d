// The drain request: SIGTERM sent with sigqueue(3), carrying how long the worker has before SIGKILL.
//
// Both sides live here. The supervisor kills a draining worker at
// shutdown_timeout; a worker told that deadline ends its last connections
// itself just before it, so each is logged and counted as cut at shutdown (a
// SIGKILL leaves the process no chance to). The deadline travels with the
// signal, not in the worker's configuration, because a reload retires old
// workers on the new configuration's shutdown_timeout.
#pragma once

#include <sys/signalfd.h>
#include <sys/types.h>

#include <chrono>
#include <optional>

#include "common/result.h"

namespace rot13d::daemon {

// Supervisor side: sends `sig` (SIGTERM) to `pid` with `drain`, the time until
// its SIGKILL, as the signal's value; like kill(2) otherwise.
Status SendDrainSignal(pid_t pid, int sig, std::chrono::milliseconds drain);

// Worker side: the drain time a signal read from the signalfd carries, when
// it is a drain request from `supervisor`; nullopt for a plain kill(2), such
// as a SIGINT from the terminal.
std::optional<std::chrono::milliseconds> DrainTimeOf(const signalfd_siginfo& si, pid_t supervisor);

// When, after a drain request with `drain`, a worker cuts what is still open:
// a tenth of the time (at most 250 ms) before the SIGKILL, to close and log
// its connections and exit first.
std::chrono::milliseconds DrainCutoff(std::chrono::milliseconds drain);

}  // namespace rot13d::daemon
