// A worker process: one epoll loop over the shared listeners and its own connections.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <vector>

#include "common/stats.h"
#include "common/unique_fd.h"

namespace rot13d::daemon {

struct WorkerParams {
  std::vector<UniqueFd> listeners;  // this process's copies of the non-blocking listeners
  size_t buffer_size = 64 * 1024;
  int max_connections = 10000;
  std::chrono::milliseconds idle_timeout{0};  // 0 = never
  WorkerStats* stats = nullptr;               // this worker's shared slot
  BorrowedFd ready_fd;                        // eventfd poked when the worker's phase changes
  pid_t supervisor_pid = 0;
};

// Runs until told to stop (SIGTERM/SIGINT: drain, SIGQUIT: now) or the
// supervisor is gone. Returns the process exit code. Expects SIGTERM, SIGINT,
// SIGQUIT and SIGHUP blocked by the caller (they are read from a signalfd).
int RunWorker(WorkerParams params);

}  // namespace rot13d::daemon
