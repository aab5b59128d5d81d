// A worker process: one epoll loop over the shared listeners and its own connections.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/address_table.h"
#include "common/config.h"
#include "common/signals.h"
#include "common/stats.h"
#include "common/unique_fd.h"

namespace rot13d::daemon {

struct WorkerParams {
  std::vector<UniqueFd> listeners;  // this process's copies of the non-blocking listeners
  // Per listener, in the same order: whether its connections start with a
  // PROXY protocol header. Shorter (empty): the rest expect none.
  std::vector<ProxyProtocol> listener_proxy;
  std::vector<Cidr> proxy_trusted = Config::Defaults().proxy_trusted;
  std::chrono::milliseconds proxy_header_timeout = Config{}.proxy_header_timeout;
  // The configuration's settings (ParamsFor); until set, its defaults.
  size_t buffer_size = Config{}.buffer_size;
  int max_connections = Config{}.max_connections;
  int max_connections_per_address = Config{}.max_connections_per_address;  // 0 = no limit
  std::chrono::milliseconds idle_timeout = Config{}.idle_timeout;  // 0 = never
  ConnectionLog connection_log = Config{}.connection_log;
  // The longest wait between two turns of the loop, each of which stamps the
  // heartbeat: well under the supervisor's heartbeat_timeout.
  std::chrono::milliseconds tick{1000};
  WorkerStats* stats = nullptr;               // this worker's shared slot
  // Every slot of the shared counter table (this worker's included), read to
  // balance accepts across the workers that share its listeners. Null: no
  // balancing, the kernel's choice stands.
  const WorkerStats* all_stats = nullptr;
  size_t all_stats_count = 0;
  // Open connections per client address, shared with every worker; null: no limit.
  AddressTable* addresses = nullptr;
  uint32_t address_owner = 0;  // this worker's owner index in it: its counter slot
  BorrowedFd ready_fd;                        // eventfd poked when the worker's phase changes
  // An eventfd every worker watches, edge-triggered, and never reads: a write
  // wakes them all. A worker that steps back for balance while connections
  // are queued rings it, since queued connections wake nobody else.
  BorrowedFd nudge_fd;
  pid_t supervisor_pid = 0;
  // What ps shows, without its closing parenthesis: "rot13d: worker 0 (generation 2".
  std::string title;
};

// The settings of a worker of a generation running `config` (the
// descriptors and shared slots are the supervisor's to fill in).
WorkerParams ParamsFor(const Config& config);

// The signals a worker blocks and reads from its signalfd: SIGTERM and SIGINT
// drain it, SIGQUIT stops it now, and every other one is ignored (none may stop
// or kill a worker that serves clients). Not SIGABRT, which keeps its default
// (abort with a core: the supervisor's answer to a hung worker), nor SIGPIPE,
// which is ignored.
SignalSet WorkerSignals();

// The worker's entry, in the child of a fork: sets the signal mask and
// dispositions (whatever the parent had), then runs until told to stop or the
// supervisor is gone. Returns the process exit code; every failure to set up
// is logged before kExitCannotBoot.
int RunWorker(WorkerParams params);

}  // namespace rot13d::daemon
