#include "common/signals.h"

#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

namespace rot13d {
namespace {

uint64_t Bit(int signal) { return signal >= 1 && signal <= kMaxSignal ? uint64_t{1} << (signal - 1) : 0; }

// The kernel's struct sigaction for rt_sigaction(2) on x86-64 and arm64:
// handler, flags, restorer, then the mask as 8 bytes.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

}  // namespace

SignalSet SignalSet::Of(std::initializer_list<int> signals) {
  SignalSet s;
  for (int sig : signals) s.bits_ |= Bit(sig);
  return s;
}

SignalSet SignalSet::AllBlockable() {
  SignalSet s;
  s.bits_ = ~uint64_t{0};
  return s.Without({SIGKILL, SIGSTOP});
}

SignalSet SignalSet::Without(std::initializer_list<int> signals) const {
  SignalSet s = *this;
  for (int sig : signals) s.bits_ &= ~Bit(sig);
  return s;
}

bool SignalSet::Has(int signal) const { return (bits_ & Bit(signal)) != 0; }

Status SetSignalMask(const SignalSet& set) {
  uint64_t mask = set.bits();
  if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, nullptr, sizeof mask) != 0) {
    return ErrnoErr() << "rt_sigprocmask";
  }
  return OkStatus();
}

Result<UniqueFd> OpenSignalFd(const SignalSet& set) {
  uint64_t mask = set.bits();
  UniqueFd fd(static_cast<int>(syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_NONBLOCK | SFD_CLOEXEC)));
  if (!fd) return ErrnoErr() << "signalfd";
  return fd;
}

Status ResetSignalDispositions(const SignalSet& keep) {
  for (int sig = 1; sig <= kMaxSignal; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP || keep.Has(sig)) continue;
    KernelSigaction action{};
    action.handler = SIG_DFL;
    if (syscall(SYS_rt_sigaction, sig, &action, nullptr, sizeof action.mask) != 0) {
      return ErrnoErr() << "resetting the action of " << SignalName(sig);
    }
  }
  return OkStatus();
}

std::string SignalName(int signal) {
  if (signal >= SIGRTMIN && signal <= SIGRTMAX) {
    if (signal == SIGRTMIN) return "SIGRTMIN";
    if (signal == SIGRTMAX) return "SIGRTMAX";
    return "SIGRTMIN+" + std::to_string(signal - SIGRTMIN);
  }
  const char* abbrev = sigabbrev_np(signal);
  if (abbrev) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(signal);
}

}  // namespace rot13d
