// The child side of a fork: from the supervisor's copy of everything to a worker.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "common/address_table.h"
#include "common/config.h"
#include "common/stats.h"
#include "common/unique_fd.h"
#include "supervisor/listeners.h"

namespace rot13d::supervisor {

struct WorkerLaunch {
  const Config& config;
  ListenerSet& listeners;
  int slot;
  uint64_t generation;
  WorkerStats& own;
  const StatsTable& all;
  AddressTable& addresses;  // owner index: own's place in all
  BorrowedFd ready_fd;  // the supervisor's wakeup
  BorrowedFd nudge_fd;  // the siblings' doorbell
  pid_t supervisor;
};

// In the child, once the caller closed what is the supervisor's alone (its
// loop, the admin endpoint, reload requesters): keeps the listeners of this
// worker's configuration, closes the others, and runs daemon::RunWorker.
// Never returns: supervisor objects are never destroyed in the child (that
// would unlink socket files); it leaves with _exit.
[[noreturn]] void BecomeWorker(const WorkerLaunch& launch);

}  // namespace rot13d::supervisor
