#include "daemon/drain_signal.h"

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace rot13d::daemon {

using std::chrono::milliseconds;

Status SendDrainSignal(pid_t pid, int sig, milliseconds drain) {
  sigval value{};
  // shutdown_timeout is at most an hour: well inside an int of milliseconds.
  value.sival_int = static_cast<int>(std::clamp<int64_t>(drain.count(), 0, std::numeric_limits<int>::max()));
  if (sigqueue(pid, sig, value) != 0) return ErrnoErr() << "sigqueue " << pid;
  return OkStatus();
}

std::optional<milliseconds> DrainTimeOf(const signalfd_siginfo& si, pid_t supervisor) {
  if (si.ssi_code != SI_QUEUE || static_cast<pid_t>(si.ssi_pid) != supervisor || si.ssi_int < 0) return std::nullopt;
  return milliseconds(si.ssi_int);
}

milliseconds DrainCutoff(milliseconds drain) {
  return drain - std::min(drain / 10, milliseconds(250));
}

}  // namespace rot13d::daemon
