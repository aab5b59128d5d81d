#include "supervisor/planner.h"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "common/exit_codes.h"
#include "common/result.h"
#include "common/signals.h"

namespace rot13d::supervisor {

ExitStatus ExitStatus::FromWaitStatus(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
    s.core_dumped = WCOREDUMP(status);
  }
  return s;
}

std::string ExitStatus::Describe() const {
  if (fork_errno != 0) return Error("could not be forked", fork_errno).ToString();
  if (signal == 0) return "exited with code " + std::to_string(code);
  std::string s = "killed by " + SignalName(signal);
  if (core_dumped) s += " (core dumped)";
  return s;
}

milliseconds BackoffDelay(const RestartPolicy& policy, int failures) {
  milliseconds d = policy.initial_delay;
  for (int i = 1; i < failures && d < policy.max_delay; ++i) d *= 2;
  return std::min(d, policy.max_delay);
}

// The restart policy. A SIGKILL that rot13d did not send (the OOM killer, an
// operator) is never held against a worker, booted or not: it is replaced at
// once every time, and the crash-loop governor does not count it. A worker
// that was accepting when it died on its own is replaced at once, unless it
// keeps crashing young (then 100 ms, 200 ms, ... from its second crash in a
// row). The backoff, the governor and the give-up are for workers that die
// on their own before they accept: those that cannot boot.
ExitDecision DecideOnExit(const WorkerRecord& worker, const ExitStatus& status, TimePoint now,
                          const RestartPolicy& policy, bool respawn_wanted) {
  ExitDecision d;
  if (!respawn_wanted || worker.state == WorkerState::kDraining) return d;  // kForget
  d.kind = ExitDecision::Kind::kRespawn;
  const bool lived = now - worker.started >= policy.healthy_after;
  const int streak = lived ? 0 : worker.failures;
  d.boot_failures = worker.booted ? 0 : worker.boot_failures;
  d.boot_kills = worker.booted ? 0 : worker.boot_kills;
  if (KilledFromOutside(worker, status)) {
    // Not its failure: its own streak neither grows nor resets, and once
    // serving it is replaced at once. Killed again and again while booting
    // (an OOM kill of every new worker), with none of the slot's workers
    // booting in between, it backs off from the second kill in a row, so
    // that replacing it never becomes a fork loop; it still never gives up
    // nor counts for the crash-loop governor. (A storm that kills booted and
    // booting workers alike is no such loop: counting all its kills before
    // booting, every slot backed off for seconds and left none serving.)
    d.failures = streak;
    if (!worker.booted) {
      d.boot_kills = worker.boot_kills + 1;
      if (d.boot_kills > 1) d.delay = BackoffDelay(policy, d.boot_kills - 1);
    }
    return d;
  }
  d.failures = streak + 1;
  if (worker.booted) {
    d.delay = d.failures <= 1 ? milliseconds(0) : BackoffDelay(policy, d.failures - 1);
    return d;
  }
  d.delay = BackoffDelay(policy, d.failures);
  d.boot_failures = worker.boot_failures + 1;
  // The worker said that trying again will not help.
  const bool cannot_boot = status.signal == 0 && status.fork_errno == 0 && status.code == kExitCannotBoot;
  if (cannot_boot || d.boot_failures >= policy.max_boot_failures) d.kind = ExitDecision::Kind::kGiveUp;
  return d;
}

bool KilledFromOutside(const WorkerRecord& w, const ExitStatus& exit) {
  return exit.signal == SIGKILL && !w.kill_sent && !w.hung;
}

DeathNote DescribeDeath(const WorkerRecord& w, pid_t pid, const ExitStatus& exit, const ExitDecision& d,
                        bool respawn_wanted, uint32_t open) {
  DeathNote note;
  const bool expected = w.state == WorkerState::kDraining || !respawn_wanted;
  // A worker that left cleanly without being asked (someone sent it SIGTERM)
  // is replaced, but it did not fail: a warning, not an error.
  note.level = expected ? (exit.Clean() ? LogLevel::kInfo : LogLevel::kNotice)
                        : (exit.Clean() ? LogLevel::kWarning : LogLevel::kError);
  note.boot_failure = !w.booted && !expected && !KilledFromOutside(w, exit);
  note.repeatable = !expected;
  std::string how = exit.Describe();
  if (w.hung) how += " after it hung";
  if (!w.booted && !expected) how += " before it was accepting";
  note.story = "generation " + std::to_string(w.generation) + ": " + how;
  std::string who = exit.fork_errno ? "worker for slot " + std::to_string(w.slot) + " of generation " +
                                          std::to_string(w.generation)
                                    : "worker " + std::to_string(pid) + " (slot " + std::to_string(w.slot) +
                                          ", generation " + std::to_string(w.generation) + ")";
  note.text = who + " " + how;
  if (KilledFromOutside(w, exit)) note.text += "; SIGKILL from outside often means the OOM killer";
  if (open > 0) {
    note.text += w.kill_sent && w.state == WorkerState::kDraining
                     ? "; " + Count(open, "open connection") + " cut at shutdown_timeout"
                     : "; " + Count(open, "open connection") + " lost with it";
  }
  if (d.kind == ExitDecision::Kind::kRespawn) {
    note.text += d.delay.count() == 0 ? "; restarting now"
                                      : "; restarting in " + std::to_string(d.delay.count()) + " ms";
  }
  note.fields = WorkerFields(pid, w);
  note.fields.push_back(exit.signal ? LogField{"EXIT_SIGNAL", SignalName(exit.signal)}
                                    : LogField{"EXIT_CODE", std::to_string(exit.code)});
  note.fields.push_back({"COREDUMP", exit.core_dumped ? "1" : "0"});
  return note;
}

std::optional<RestartReason> RestartCause(const WorkerRecord& w, const ExitStatus& exit, const ExitDecision& d) {
  if (d.kind != ExitDecision::Kind::kRespawn) return std::nullopt;
  if (KilledFromOutside(w, exit)) return RestartReason::kKilled;
  if (!w.booted) return RestartReason::kBootFailure;
  if (w.hung) return RestartReason::kHung;
  if (exit.signal != 0) return RestartReason::kCrash;
  return RestartReason::kExit;
}

std::vector<LogField> WorkerFields(pid_t pid, const WorkerRecord& w) {
  return {{"WORKER_PID", std::to_string(pid)}, {"WORKER_SLOT", std::to_string(w.slot)},
          {"GENERATION", std::to_string(w.generation)}};
}

std::string DescribeHang(const WorkerRecord& w, pid_t pid, TimePoint now, milliseconds grace) {
  auto silent = std::chrono::duration_cast<milliseconds>(now - std::max(w.heartbeat, w.started));
  return "worker " + std::to_string(pid) + " (slot " + std::to_string(w.slot) + ", generation " +
         std::to_string(w.generation) + ") is hung: no heartbeat for " + std::to_string(silent.count()) +
         " ms (heartbeat_timeout " + std::to_string(w.heartbeat_timeout.count()) +
         " ms); sending SIGABRT, then SIGKILL in " + std::to_string(grace.count()) + " ms";
}

std::string GiveUpReason(const WorkerRecord& w, const ExitStatus& exit, const RestartPolicy& policy) {
  std::string where = "slot " + std::to_string(w.slot) + " of generation " + std::to_string(w.generation);
  if (exit.signal == 0 && exit.fork_errno == 0 && exit.code == kExitCannotBoot) {
    return where + " cannot boot (its worker exited with code " + std::to_string(kExitCannotBoot) +
           "; its log line says why)";
  }
  return where + " failed to boot " + std::to_string(policy.max_boot_failures) + " times in a row (last: " +
         exit.Describe() + ")";
}

namespace {

Action Signal(pid_t pid, int sig) { return {.kind = Action::Kind::kSignal, .pid = pid, .signal = sig}; }

// Draining workers are killed at their deadline; so are hung ones, after the grace.
bool KillPending(const WorkerRecord& w) {
  return w.pid > 0 && (w.state == WorkerState::kDraining || w.hung) && !w.kill_sent;
}

bool KillDue(const WorkerRecord& w, TimePoint now) { return KillPending(w) && now >= w.kill_at; }

TimePoint LastSignOfLife(const WorkerRecord& w) { return std::max(w.heartbeat, w.started); }

bool Watched(const WorkerRecord& w) {
  return w.pid > 0 && w.state == WorkerState::kRunning && !w.hung && w.heartbeat_timeout.count() > 0;
}

}  // namespace

bool HeartbeatStale(const WorkerRecord& w, TimePoint now) {
  return Watched(w) && now - LastSignOfLife(w) > w.heartbeat_timeout;
}

bool CrashLoopEngaged(const std::deque<TimePoint>& boot_failures, TimePoint now, int threshold,
                      milliseconds window) {
  if (window.count() <= 0 || threshold <= 0) return false;
  auto recent = std::count_if(boot_failures.begin(), boot_failures.end(),
                              [&](TimePoint t) { return t <= now && now - t < window; });
  return recent >= threshold;
}

bool RepeatFilter::Admit(const std::string& key, TimePoint now) {
  auto it = entries_.find(key);
  if (it == entries_.end() || now - it->second.window_start >= window_) {
    // A new window. A summary of the old one, if any, is Flush's to give.
    if (it != entries_.end() && it->second.suppressed > 0) return ++it->second.suppressed, false;
    entries_[key] = Entry{now, 1, 0};
    return true;
  }
  if (it->second.admitted < burst_) return ++it->second.admitted, true;
  ++it->second.suppressed;
  return false;
}

std::vector<RepeatFilter::Summary> RepeatFilter::Flush(TimePoint now) {
  std::vector<Summary> out;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.window_start < window_) {
      ++it;
      continue;
    }
    if (it->second.suppressed > 0) out.push_back({it->first, it->second.suppressed});
    it = entries_.erase(it);
  }
  return out;
}

namespace {

// Stopping: every live worker drains, is killed at its deadline, and the
// supervisor exits once none is left.
std::vector<Action> PlanStop(const std::vector<WorkerRecord>& workers, TimePoint now) {
  std::vector<Action> out;
  bool any_alive = false;
  for (const WorkerRecord& w : workers) {
    if (w.pid <= 0) continue;
    any_alive = true;
    if (w.state != WorkerState::kDraining) out.push_back(Signal(w.pid, SIGTERM));
    else if (KillDue(w, now)) out.push_back(Signal(w.pid, SIGKILL));
  }
  if (!any_alive) out.push_back({.kind = Action::Kind::kExit, .exit_code = kExitOk});
  return out;
}

enum class CanaryFate { kNone, kWait, kPromote, kAbandon };

// Promoted once every worker of it accepts; abandoned when it halted or its time is up.
CanaryFate DecideCanary(const SupervisorView& view, TimePoint now) {
  if (!view.canary_generation) return CanaryFate::kNone;
  int booted = 0;
  for (const WorkerRecord& w : *view.workers) {
    if (w.generation == *view.canary_generation && w.pid > 0 && w.booted && w.state == WorkerState::kRunning) {
      ++booted;
    }
  }
  if (!view.canary_halted && booted >= view.canary_size) return CanaryFate::kPromote;
  if (view.canary_halted || now >= view.canary_deadline) return CanaryFate::kAbandon;
  return CanaryFate::kWait;
}

// Per worker: spawns that are due (a governed generation forks once per plan
// at most), hung workers to abort, kill deadlines. A canary being abandoned
// gets no new workers.
void PlanWorkers(const SupervisorView& view, TimePoint now, bool abandoning, std::vector<Action>* out) {
  std::map<uint64_t, bool> governed_spawned;
  for (const WorkerRecord& w : *view.workers) {
    bool doomed = abandoning && w.generation == *view.canary_generation;
    if (w.state == WorkerState::kBackoff && now >= w.restart_at && !doomed) {
      auto governed = view.next_governed_fork.find(w.generation);
      bool allowed = governed == view.next_governed_fork.end() ||
                     (now >= governed->second && !governed_spawned[w.generation]);
      if (allowed) {
        if (governed != view.next_governed_fork.end()) governed_spawned[w.generation] = true;
        out->push_back({.kind = Action::Kind::kSpawn, .slot = w.slot, .generation = w.generation});
      }
    }
    if (HeartbeatStale(w, now)) out->push_back({.kind = Action::Kind::kAbortHung, .pid = w.pid});
    if (KillDue(w, now)) out->push_back(Signal(w.pid, SIGKILL));
  }
}

// New workers that already accept may hold clients: they drain like any
// retired worker. Those that never booted are killed. Then, if nothing was
// serving yet (the first generation) or what serves has given up: exit.
void PlanAbandon(const SupervisorView& view, std::vector<Action>* out) {
  for (const WorkerRecord& w : *view.workers) {
    if (w.generation == *view.canary_generation && w.pid > 0 && w.state != WorkerState::kDraining && !w.kill_sent) {
      out->push_back(Signal(w.pid, w.booted ? SIGTERM : SIGKILL));
    }
  }
  out->push_back({.kind = Action::Kind::kAbandon, .generation = *view.canary_generation});
  if (view.serving_generation == 0 || view.serving_halted) {
    out->push_back({.kind = Action::Kind::kExit, .exit_code = kExitCannotBoot});
  }
}

}  // namespace

std::vector<Action> Plan(const SupervisorView& view, TimePoint now) {
  if (view.stopping) return PlanStop(*view.workers, now);
  const CanaryFate fate = DecideCanary(view, now);
  std::vector<Action> out;
  PlanWorkers(view, now, fate == CanaryFate::kAbandon, &out);
  if (fate == CanaryFate::kAbandon) {
    PlanAbandon(view, &out);
    return out;
  }
  if (fate == CanaryFate::kPromote) {
    out.push_back({.kind = Action::Kind::kPromote, .generation = *view.canary_generation});
    return out;
  }
  if (fate == CanaryFate::kNone && view.serving_halted) {
    // Serving on fewer workers than configured, for good, is a failure to say
    // out loud: exit non-zero and let the service manager restart us cleanly.
    out.push_back({.kind = Action::Kind::kExit, .exit_code = kExitCannotBoot});
    return out;
  }
  // A removed address closes once no older worker can accept on it any more.
  // Waiting for those workers to exit instead would leave the kernel completing
  // handshakes nobody accepts, to be reset at the close.
  if (view.retired_listeners) {
    bool old_accepting = std::any_of(view.workers->begin(), view.workers->end(), [&](const WorkerRecord& w) {
      return w.pid > 0 && w.generation < view.serving_generation && !w.stopped_accepting;
    });
    if (!old_accepting) out.push_back({.kind = Action::Kind::kCloseRetired});
  }
  return out;
}

std::optional<TimePoint> NextDeadline(const SupervisorView& view) {
  std::optional<TimePoint> next;
  auto consider = [&](TimePoint t) {
    if (!next || t < *next) next = t;
  };
  for (const WorkerRecord& w : *view.workers) {
    if (!view.stopping && w.state == WorkerState::kBackoff) {
      TimePoint at = w.restart_at;
      if (auto g = view.next_governed_fork.find(w.generation); g != view.next_governed_fork.end()) {
        at = std::max(at, g->second);
      }
      consider(at);
    }
    if (KillPending(w)) consider(w.kill_at);
    // Just past the moment the heartbeat would be stale; a fresher one moves it.
    if (!view.stopping && Watched(w)) consider(LastSignOfLife(w) + w.heartbeat_timeout + milliseconds(1));
  }
  if (!view.stopping && view.canary_generation) consider(view.canary_deadline);
  return next;
}

bool RespawnWanted(const SupervisorView& view, uint64_t generation) {
  if (view.stopping) return false;
  if (generation == view.serving_generation) return !view.serving_halted;
  return view.canary_generation && generation == *view.canary_generation && !view.canary_halted;
}

bool BootFailureHistory::Record(TimePoint now, int threshold, milliseconds window) {
  times_.push_back(now);
  while (!times_.empty() && (window.count() <= 0 || now - times_.front() >= window)) times_.pop_front();
  if (engaged_ || !Engaged(now, threshold, window)) return false;
  engaged_ = true;
  return true;
}

bool BootFailureHistory::Engaged(TimePoint now, int threshold, milliseconds window) const {
  return CrashLoopEngaged(times_, now, threshold, window);
}

bool WatchdogHealthy(const SupervisorView& view, TimePoint now) {
  return std::none_of(view.workers->begin(), view.workers->end(),
                      [&](const WorkerRecord& w) { return HeartbeatStale(w, now); });
}

}  // namespace rot13d::supervisor
