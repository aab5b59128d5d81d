#include "supervisor/planner.h"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "common/exit_codes.h"

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

std::string SignalName(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  if (abbrev) return std::string("SIG") + abbrev;
  return "signal " + std::to_string(signal);
}

std::string ExitStatus::Describe() const {
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

ExitDecision DecideOnExit(const WorkerRecord& worker, const ExitStatus& status, TimePoint now,
                          const RestartPolicy& policy, bool respawn_wanted) {
  (void)status;  // every unexpected exit is replaced; the status only shapes the log line
  ExitDecision d;
  if (!respawn_wanted || worker.state == WorkerState::kDraining) return d;  // kForget
  bool lived = now - worker.started >= policy.healthy_after;
  d.failures = (lived ? 0 : worker.failures) + 1;
  d.boot_failures = worker.booted ? 0 : worker.boot_failures + 1;
  if (d.boot_failures >= policy.max_boot_failures) {
    d.kind = ExitDecision::Kind::kGiveUp;
    return d;
  }
  d.kind = ExitDecision::Kind::kRespawn;
  d.delay = BackoffDelay(policy, d.failures);
  return d;
}

namespace {

Action Signal(pid_t pid, int sig) { return {.kind = Action::Kind::kSignal, .pid = pid, .signal = sig}; }

bool KillDue(const WorkerRecord& w, TimePoint now) {
  return w.pid > 0 && w.state == WorkerState::kDraining && !w.kill_sent && now >= w.kill_at;
}

}  // namespace

std::vector<Action> Plan(const SupervisorView& view, TimePoint now) {
  const std::vector<WorkerRecord>& workers = *view.workers;
  std::vector<Action> out;

  if (view.stopping) {
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

  // The canary's fate first: a generation being abandoned gets no new workers.
  bool promote = false, abandon = false;
  if (view.canary_generation) {
    uint64_t canary = *view.canary_generation;
    int booted = 0;
    for (const WorkerRecord& w : workers) {
      if (w.generation == canary && w.pid > 0 && w.booted && w.state == WorkerState::kRunning) ++booted;
    }
    promote = !view.canary_halted && booted >= view.canary_size;
    abandon = !promote && (view.canary_halted || now >= view.canary_deadline);
  }

  for (const WorkerRecord& w : workers) {
    bool doomed = abandon && w.generation == *view.canary_generation;
    if (w.state == WorkerState::kBackoff && now >= w.restart_at && !doomed) {
      out.push_back({.kind = Action::Kind::kSpawn, .slot = w.slot, .generation = w.generation});
    }
    if (KillDue(w, now)) out.push_back(Signal(w.pid, SIGKILL));
  }

  if (view.canary_generation) {
    if (abandon) {
      out.push_back({.kind = Action::Kind::kAbandon, .generation = *view.canary_generation});
      // Nothing was serving yet (this was the first generation), or what serves has given up.
      if (view.serving_generation == 0 || view.serving_halted) {
        out.push_back({.kind = Action::Kind::kExit, .exit_code = kExitCannotBoot});
      }
      return out;
    }
    if (promote) {
      out.push_back({.kind = Action::Kind::kPromote, .generation = *view.canary_generation});
      return out;
    }
  } else if (view.serving_halted) {
    // Serving on fewer workers than configured, for good, is a failure to say
    // out loud: exit non-zero and let the service manager restart us cleanly.
    out.push_back({.kind = Action::Kind::kExit, .exit_code = kExitCannotBoot});
    return out;
  }

  // A removed address closes once no older worker can accept on it any more.
  // Waiting for those workers to exit instead would leave the kernel completing
  // handshakes nobody accepts, to be reset at the close.
  if (view.retired_listeners) {
    bool old_accepting = std::any_of(workers.begin(), workers.end(), [&](const WorkerRecord& w) {
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
    if (!view.stopping && w.state == WorkerState::kBackoff) consider(w.restart_at);
    if (w.pid > 0 && w.state == WorkerState::kDraining && !w.kill_sent) consider(w.kill_at);
  }
  if (!view.stopping && view.canary_generation) consider(view.canary_deadline);
  return next;
}

}  // namespace rot13d::supervisor
