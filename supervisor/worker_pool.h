// The worker processes: their table, their shared counter slots, fork, reap and signals.
// The mechanism only; what to do about a death is the planner's to decide.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <vector>

#include "common/address_table.h"
#include "common/config.h"
#include "common/stats.h"
#include "supervisor/metrics.h"
#include "supervisor/planner.h"
#include "supervisor/status_line.h"

namespace rot13d::supervisor {

// A worker taking new clients (booted, neither draining nor hung), and the connections it holds.
struct AcceptingWorker {
  uint64_t generation = 0;
  uint64_t open_connections = 0;
};

class WorkerPool {
 public:
  // Maps the shared counter table and the per-address counts (before the
  // first fork); a worker's owner index in the latter is its counter slot.
  Status Init(size_t slots, size_t address_entries = AddressTable::kDefaultEntries);
  // In a re-executed image (supervisor/handover.h): the tables, the workers
  // and the totals of workers gone, as the previous image left them.
  void Adopt(StatsTable table, AddressTable addresses, std::vector<WorkerRecord> workers,
             const CounterTotals& retired);
  // For the handover.
  BorrowedFd stats_fd() const { return stats_->fd(); }
  size_t stats_slots() const { return stats_->size(); }
  AddressTable& addresses() { return *addresses_; }
  const AddressTable& addresses() const { return *addresses_; }
  const CounterTotals& retired() const { return retired_; }

  const std::vector<WorkerRecord>& all() const { return workers_; }
  WorkerRecord* Find(pid_t pid);
  // The backoff record of `slot` in `generation`, if it waits to be spawned.
  WorkerRecord* FindWaiting(int slot, uint64_t generation);

  // Slots 0..size-1 of a new generation, due to be spawned at once.
  void AddGeneration(uint64_t generation, int size, TimePoint now);

  // Forks the worker of `w`; the child runs `child` with its counter slot and
  // never returns. On failure (no counter slot, or fork failed) returns how
  // it failed, for the planner; the record is left for that decision.
  using ChildEntry = std::function<void(WorkerStats& own, const StatsTable& all)>;
  std::optional<ExitStatus> Spawn(WorkerRecord& w, const Config& config, const ChildEntry& child);

  // Reaps every exited worker, calling on_exit with its record (counter slot
  // released), its pid, how it ended and how many connections it still held.
  // Another child of the supervisor (an upgrade's pre-flight) goes to on_other.
  using OnExit = std::function<void(WorkerRecord& w, pid_t pid, const ExitStatus& exit, uint32_t open)>;
  using OnOther = std::function<void(pid_t pid, const ExitStatus& exit)>;
  void Reap(const OnExit& on_exit, const OnOther& on_other);
  // Applies the planner's decision about a worker whose process is gone.
  void Apply(WorkerRecord& w, const ExitDecision& d, TimePoint now);
  // Reads phases and heartbeats the workers published.
  void RefreshPhases();

  // kill(2), and what it means for the record: SIGKILL is final, another
  // signal starts a drain that SIGKILL ends at now + drain.
  void Signal(pid_t pid, int sig, milliseconds drain);
  // SIGABRT (for a core) and SIGCONT (a stopped worker must run to take it);
  // SIGKILL follows after `grace`.
  void AbortHung(pid_t pid, milliseconds grace);
  void KillAllAndReap();
  // SIGKILL to every live worker (stopping now); the reaps follow.
  void KillAll();

  // Every live worker not of `generation`: signalled to drain; records of
  // other generations without a process are dropped. Returns how many.
  size_t RetireAllBut(uint64_t generation, milliseconds drain);
  // Records of `generation` without a process: dropped, or marked failed.
  void DropWaiting(uint64_t generation);
  void FailWaiting(uint64_t generation);

  std::vector<AcceptingWorker> Accepting() const;
  // Live figures for the status line (of workers gone: their totals).
  StatusFigures Figures(uint64_t serving_generation) const;
  // Every worker's counters added up, those of workers gone included:
  // monotonic across restarts and reloads.
  CounterTotals Totals() const;
  // Each slot as the admin endpoint shows it.
  std::vector<WorkerSnapshot> Describe() const;

 private:
  void ReleaseStats(WorkerRecord& w);
  void Kill(pid_t pid, int sig);

  std::vector<WorkerRecord> workers_;
  std::optional<StatsTable> stats_;
  std::optional<AddressTable> addresses_;
  // A stack: freed slots go out again first, then never-used ones lowest
  // first, which keeps the slots ever used a prefix (see WorkerPhase::kUnused).
  std::vector<int> free_stats_;
  CounterTotals retired_;  // of workers gone
};

}  // namespace rot13d::supervisor
