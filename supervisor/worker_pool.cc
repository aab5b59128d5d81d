#include "supervisor/worker_pool.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>

#include "common/log.h"
#include "daemon/drain_signal.h"

namespace rot13d::supervisor {

Status WorkerPool::Init(size_t slots, size_t address_entries) {
  auto table = StatsTable::Create(slots);
  if (!table) return table.error();
  auto addresses = AddressTable::Create(address_entries, slots);
  if (!addresses) return addresses.error();
  stats_.emplace(std::move(*table));
  addresses_.emplace(std::move(*addresses));
  for (int i = static_cast<int>(slots) - 1; i >= 0; --i) free_stats_.push_back(i);
  return OkStatus();
}

void WorkerPool::Adopt(StatsTable table, AddressTable addresses, std::vector<WorkerRecord> workers,
                       const CounterTotals& retired) {
  stats_.emplace(std::move(table));
  addresses_.emplace(std::move(addresses));
  workers_ = std::move(workers);
  retired_ = retired;
  free_stats_.clear();
  int highest = -1;
  for (const WorkerRecord& w : workers_) highest = std::max(highest, w.stats_index);
  for (int i = static_cast<int>(stats_->size()) - 1; i >= 0; --i) {
    bool used = std::any_of(workers_.begin(), workers_.end(), [i](const WorkerRecord& w) { return w.stats_index == i; });
    if (used) continue;
    free_stats_.push_back(i);
    // An older image left freed slots at zero: below a slot in use they must
    // read as kFree, or a reader would stop short of it (see WorkerPhase).
    WorkerStats& s = stats_->at(static_cast<size_t>(i));
    if (i < highest && s.Phase() == WorkerPhase::kUnused) s.SetPhase(WorkerPhase::kFree);
  }
}

WorkerRecord* WorkerPool::Find(pid_t pid) {
  auto it = std::find_if(workers_.begin(), workers_.end(), [pid](const WorkerRecord& w) { return w.pid == pid; });
  return it == workers_.end() ? nullptr : &*it;
}

WorkerRecord* WorkerPool::FindWaiting(int slot, uint64_t generation) {
  auto it = std::find_if(workers_.begin(), workers_.end(), [&](const WorkerRecord& w) {
    return w.slot == slot && w.generation == generation && w.state == WorkerState::kBackoff;
  });
  return it == workers_.end() ? nullptr : &*it;
}

void WorkerPool::AddGeneration(uint64_t generation, int size, TimePoint now) {
  for (int slot = 0; slot < size; ++slot) {
    workers_.push_back({.slot = slot, .generation = generation, .state = WorkerState::kBackoff, .restart_at = now});
  }
}

std::optional<ExitStatus> WorkerPool::Spawn(WorkerRecord& w, const Config& config, const ChildEntry& child) {
  // A new process for the slot: nothing of the last one's story carries over,
  // not even when this fork fails (then it is a failed boot, nothing else).
  w.started = Clock::now();
  w.booted = w.hung = w.kill_sent = w.stopped_accepting = false;
  w.heartbeat = {};
  if (free_stats_.empty()) return ExitStatus::ForkFailed(ENOSPC);  // every counter slot is taken
  w.stats_index = free_stats_.back();
  free_stats_.pop_back();
  WorkerStats& stats = stats_->at(static_cast<size_t>(w.stats_index));
  stats.Reset();
  stats.SetPhase(WorkerPhase::kBooting);
  pid_t pid = fork();
  if (pid == 0) {
    child(stats, *stats_);
    _exit(127);  // not reached: the child entry leaves with _exit
  }
  if (pid < 0) {
    ExitStatus failed = ExitStatus::ForkFailed(errno);
    ReleaseStats(w);
    return failed;
  }
  w.pid = pid;
  w.state = WorkerState::kRunning;
  w.heartbeat_timeout = config.heartbeat_timeout;
  return std::nullopt;
}

void WorkerPool::ReleaseStats(WorkerRecord& w) {
  if (w.stats_index < 0) return;
  WorkerStats& s = stats_->at(static_cast<size_t>(w.stats_index));
  retired_.Add(s);
  // Connections a worker still held when it died were cut: at the shutdown
  // deadline, by a kill, by a crash. (A worker that returns has none open.)
  retired_.closed[static_cast<size_t>(CloseReason::kShutdown)] += s.open_connections.load();
  // Its counts per address would otherwise hold places of clients long gone
  // (and the next worker in the slot would inherit them).
  addresses_->ReleaseOwner(static_cast<uint32_t>(w.stats_index));
  s.SetPhase(WorkerPhase::kFree);
  free_stats_.push_back(w.stats_index);
  w.stats_index = -1;
}

void WorkerPool::Reap(const OnExit& on_exit, const OnOther& on_other) {
  RefreshPhases();  // a worker that reported accepting and then died did boot
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    WorkerRecord* w = Find(pid);
    if (!w) {
      on_other(pid, ExitStatus::FromWaitStatus(status));
      continue;
    }
    uint32_t open = w->stats_index < 0 ? 0 : stats_->at(static_cast<size_t>(w->stats_index)).open_connections.load();
    ReleaseStats(*w);
    on_exit(*w, pid, ExitStatus::FromWaitStatus(status), open);
  }
}

void WorkerPool::Apply(WorkerRecord& w, const ExitDecision& d, TimePoint now) {
  w.pid = 0;
  switch (d.kind) {
    case ExitDecision::Kind::kForget: workers_.erase(workers_.begin() + (&w - workers_.data())); break;
    case ExitDecision::Kind::kRespawn:
      w.state = WorkerState::kBackoff;
      w.failures = d.failures;
      w.boot_failures = d.boot_failures;
      w.boot_kills = d.boot_kills;
      w.restart_at = now + d.delay;
      break;
    case ExitDecision::Kind::kGiveUp: w.state = WorkerState::kFailed; break;
  }
}

CounterTotals WorkerPool::Totals() const {
  CounterTotals t = retired_;
  for (const WorkerRecord& w : workers_) {
    if (w.stats_index >= 0) t.Add(stats_->at(static_cast<size_t>(w.stats_index)));
  }
  return t;
}

std::vector<WorkerSnapshot> WorkerPool::Describe() const {
  std::vector<WorkerSnapshot> out;
  for (const WorkerRecord& w : workers_) {
    WorkerSnapshot s;
    s.pid = w.pid;
    s.slot = w.slot;
    s.generation = w.generation;
    s.restarts = w.failures;
    s.state = w.pid <= 0                            ? "waiting"
              : w.hung                              ? "hung"
              : w.state == WorkerState::kDraining   ? "draining"
              : w.booted                            ? "accepting"
                                                    : "booting";
    if (w.stats_index >= 0) {
      const WorkerStats& st = stats_->at(static_cast<size_t>(w.stats_index));
      s.open_connections = st.open_connections.load(std::memory_order_relaxed);
      s.accepted = st.connections_total.load(std::memory_order_relaxed);
      s.bytes_received = st.bytes_received.load(std::memory_order_relaxed);
      s.bytes_sent = st.bytes_sent.load(std::memory_order_relaxed);
    }
    out.push_back(std::move(s));
  }
  return out;
}

void WorkerPool::RefreshPhases() {
  for (WorkerRecord& w : workers_) {
    if (w.pid <= 0 || w.stats_index < 0) continue;
    const WorkerStats& stats = stats_->at(static_cast<size_t>(w.stats_index));
    WorkerPhase phase = stats.Phase();
    // CLOCK_MONOTONIC nanoseconds; steady_clock is CLOCK_MONOTONIC.
    if (int64_t ns = stats.heartbeat_ns.load(std::memory_order_relaxed); ns > 0) {
      w.heartbeat = TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
    }
    if (phase == WorkerPhase::kAccepting || phase == WorkerPhase::kDraining) w.booted = true;
    if (phase == WorkerPhase::kDraining) w.stopped_accepting = true;
  }
}

void WorkerPool::Kill(pid_t pid, int sig) {
  // ESRCH: it died and waits to be reaped; the reap tells.
  if (::kill(pid, sig) != 0 && errno != ESRCH) {
    Log(LogLevel::kWarning, Error(ErrnoErr() << "kill " << pid << " " << SignalName(sig)).ToString());
  }
}

void WorkerPool::Signal(pid_t pid, int sig, milliseconds drain) {
  WorkerRecord* w = Find(pid);
  if (!w) return;
  if (sig == SIGKILL) {
    Kill(pid, sig);
    // A hung worker that outlived its SIGABRT stays a serving one, to be
    // replaced in its slot when it is reaped; any other is on its way out.
    if (!w->hung) w->state = WorkerState::kDraining;
    w->kill_sent = true;
  } else if (w->state != WorkerState::kDraining) {
    // The worker learns its deadline with the signal (daemon/drain_signal.h).
    Status sent = daemon::SendDrainSignal(pid, sig, drain);
    if (!sent && sent.error().errno_value() != ESRCH) Log(LogLevel::kWarning, sent.error().ToString());
    w->state = WorkerState::kDraining;
    // A hung worker keeps its short SIGKILL deadline: it cannot drain anyway.
    TimePoint drained = Clock::now() + drain;
    w->kill_at = w->hung ? std::min(w->kill_at, drained) : drained;
  } else {
    Kill(pid, sig);
  }
}

void WorkerPool::AbortHung(pid_t pid, milliseconds grace) {
  WorkerRecord* w = Find(pid);
  if (!w) return;
  Kill(pid, SIGABRT);
  Kill(pid, SIGCONT);
  w->hung = true;
  w->kill_at = Clock::now() + grace;
}

void WorkerPool::KillAllAndReap() {
  for (const WorkerRecord& w : workers_) {
    if (w.pid > 0) Kill(w.pid, SIGKILL);
  }
  for (const WorkerRecord& w : workers_) {
    if (w.pid > 0) {
      while (waitpid(w.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  workers_.clear();
}

void WorkerPool::KillAll() {
  for (WorkerRecord& w : workers_) {
    if (w.pid > 0) Signal(w.pid, SIGKILL, {});
  }
}

size_t WorkerPool::RetireAllBut(uint64_t generation, milliseconds drain) {
  std::vector<pid_t> old;
  for (const WorkerRecord& w : workers_) {
    if (w.generation != generation && w.pid > 0) old.push_back(w.pid);
  }
  std::erase_if(workers_, [&](const WorkerRecord& w) { return w.generation != generation && w.pid == 0; });
  for (pid_t pid : old) Signal(pid, SIGTERM, drain);
  return old.size();
}

void WorkerPool::DropWaiting(uint64_t generation) {
  std::erase_if(workers_, [&](const WorkerRecord& w) { return w.generation == generation && w.pid == 0; });
}

void WorkerPool::FailWaiting(uint64_t generation) {
  for (WorkerRecord& w : workers_) {
    if (w.generation == generation && w.pid == 0) w.state = WorkerState::kFailed;
  }
}

StatusFigures WorkerPool::Figures(uint64_t serving_generation) const {
  CounterTotals t = Totals();
  StatusFigures f{.generation = serving_generation, .connections_served = t.connections_total, .bytes = t.bytes_sent};
  for (const WorkerRecord& w : workers_) {
    if (w.stats_index < 0) continue;
    f.open_connections += stats_->at(static_cast<size_t>(w.stats_index)).open_connections.load(std::memory_order_relaxed);
    if (w.generation == serving_generation && w.pid > 0) ++f.workers;
  }
  return f;
}

std::vector<AcceptingWorker> WorkerPool::Accepting() const {
  std::vector<AcceptingWorker> out;
  for (const WorkerRecord& w : workers_) {
    if (w.pid <= 0 || w.stats_index < 0 || w.state != WorkerState::kRunning || !w.booted || w.stopped_accepting ||
        w.hung) {
      continue;
    }
    out.push_back({w.generation,
                   stats_->at(static_cast<size_t>(w.stats_index)).open_connections.load(std::memory_order_relaxed)});
  }
  return out;
}

}  // namespace rot13d::supervisor
