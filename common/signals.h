// Signal sets as the kernel sees them, and the one place that blocks them.
//
// glibc's sigset_t functions refuse signals 32 and 33 (reserved for its
// threads), yet a `kill -32` still reaches the process and, with no handler,
// terminates it. rot13d is single-threaded (glibc signals its setxid and
// cancellation helpers only to other threads), so it blocks those two like any
// other, through the system calls themselves.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace rot13d {

// Signals 1..64 (SIGRTMAX on Linux), one bit each.
class SignalSet {
 public:
  constexpr SignalSet() = default;
  static SignalSet Of(std::initializer_list<int> signals);
  // Every signal that can be blocked: all of 1..64 but SIGKILL and SIGSTOP.
  static SignalSet AllBlockable();

  SignalSet Without(std::initializer_list<int> signals) const;
  bool Has(int signal) const;
  uint64_t bits() const { return bits_; }

 private:
  uint64_t bits_ = 0;
};

// The highest signal number (SIGRTMAX).
inline constexpr int kMaxSignal = 64;

// sigprocmask(SIG_SETMASK), including 32 and 33.
Status SetSignalMask(const SignalSet& set);
// A non-blocking, close-on-exec signalfd over the set (which must be blocked).
Result<UniqueFd> OpenSignalFd(const SignalSet& set);
// Sets every catchable signal but those in `keep` back to its default action.
Status ResetSignalDispositions(const SignalSet& keep);

// "SIGKILL" for 9, "SIGRTMIN+2" for real-time ones, "signal 32" for glibc's.
std::string SignalName(int signal);

}  // namespace rot13d
