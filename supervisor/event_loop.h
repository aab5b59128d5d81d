// The supervisor's one wait: epoll over a signalfd, a timerfd and an eventfd
// that workers poke when their phase changes. No handlers, no other blocking.
#pragma once

#include <sys/signalfd.h>

#include <vector>

#include "common/result.h"
#include "common/signals.h"
#include "common/unique_fd.h"
#include "supervisor/planner.h"

namespace rot13d::supervisor {

class EventLoop {
 public:
  // Blocks `signals` and opens the descriptors; `ready`, when given, is the
  // eventfd the workers of an earlier image poke (supervisor/handover.h).
  Status Open(const SignalSet& signals, UniqueFd ready = {});
  // What workers write to when they change phase (they inherit it).
  BorrowedFd ready_fd() const { return ready_.borrow(); }
  // In a forked worker: the loop is the supervisor's alone.
  void CloseInChild();
  // Waits until a signal arrives, `deadline` passes or a worker pokes;
  // appends the signals read. EINTR is a wakeup like any other.
  Status Wait(TimePoint deadline, std::vector<signalfd_siginfo>* signals);
  // Other descriptors whose readability also ends a Wait (the admin
  // endpoint's and the agent-check's); their owner reads them after it. Replaces the previous set.
  void WatchAlso(const std::vector<int>& fds);

 private:
  UniqueFd epoll_, signals_, timer_, ready_;
  std::vector<int> also_;
};

}  // namespace rot13d::supervisor
