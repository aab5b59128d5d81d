// Pure decisions of the supervisor: the worker table, exit classification, backoff, and the plan.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rot13d::supervisor {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

// How a child ended, decoded from a waitpid status.
struct ExitStatus {
  int code = 0;     // valid when signal == 0
  int signal = 0;   // the killing signal, or 0
  bool core_dumped = false;

  static ExitStatus FromWaitStatus(int status);
  bool Clean() const { return signal == 0 && code == 0; }
  // "exited with code 4", "killed by SIGKILL (core dumped)".
  std::string Describe() const;
};

// "SIGKILL" for 9; "signal 77" for what has no name.
std::string SignalName(int signal);

struct RestartPolicy {
  milliseconds initial_delay{100};
  milliseconds max_delay{30000};
  // A worker that lived this long is healthy: its slot's failure count resets.
  milliseconds healthy_after{10000};
  // Consecutive deaths before accepting, in one slot, that halt the generation.
  int max_boot_failures = 5;
  // A new generation must have every worker accepting within this time.
  milliseconds boot_timeout{30000};
};

// 100 ms, 200 ms, 400 ms ... capped: the delay before the n-th consecutive restart (n >= 1).
milliseconds BackoffDelay(const RestartPolicy& policy, int failures);

enum class WorkerState {
  kRunning,   // has a pid; booted once it reports accepting
  kBackoff,   // waiting to be respawned at restart_at
  kDraining,  // asked to stop; killed at kill_at
  kFailed,    // its generation gave up on it
};

struct WorkerRecord {
  int slot = 0;
  uint64_t generation = 0;
  pid_t pid = 0;  // 0 when no process
  WorkerState state = WorkerState::kRunning;
  bool booted = false;
  bool stopped_accepting = false;  // draining, and its copies of the listeners are closed
  TimePoint started{};
  int failures = 0;       // consecutive unexpected exits
  int boot_failures = 0;  // consecutive exits before booting
  TimePoint restart_at{};
  TimePoint kill_at{};
  bool kill_sent = false;
  int stats_index = -1;
};

// What to do with a worker that just exited.
struct ExitDecision {
  enum class Kind { kForget, kRespawn, kGiveUp };
  Kind kind = Kind::kForget;
  milliseconds delay{0};
  int failures = 0;
  int boot_failures = 0;
};

// respawn_wanted: the worker's generation is in force (or is the canary) and
// the supervisor is not stopping.
ExitDecision DecideOnExit(const WorkerRecord& worker, const ExitStatus& status, TimePoint now,
                          const RestartPolicy& policy, bool respawn_wanted);

// Everything the plan looks at.
struct SupervisorView {
  const std::vector<WorkerRecord>* workers = nullptr;
  uint64_t serving_generation = 0;           // 0 before the first generation is up
  std::optional<uint64_t> canary_generation;  // a generation that must prove itself
  int canary_size = 0;
  TimePoint canary_deadline{};
  bool serving_halted = false;  // the serving generation gave up respawning: exit, let the
                                // service manager's Restart= decide
  bool canary_halted = false;
  bool stopping = false;
  bool retired_listeners = false;  // listeners no generation in force or starting uses
};

struct Action {
  enum class Kind {
    kSpawn,          // slot, generation
    kSignal,         // pid, signal
    kPromote,        // generation: the canary takes over, older ones drain
    kAbandon,        // generation: the canary failed, the serving one stays
    kCloseRetired,   // close listeners no generation uses any more
    kExit,           // exit_code
  };
  Kind kind;
  int slot = 0;
  uint64_t generation = 0;
  pid_t pid = 0;
  int signal = 0;
  int exit_code = 0;
  bool operator==(const Action&) const = default;
};

// The actions due now. Stable: running the same view twice gives the same plan,
// so the executor must change the table for each action it performs.
std::vector<Action> Plan(const SupervisorView& view, TimePoint now);

// The earliest future time at which Plan could return something new without
// any event arriving (a backoff or kill deadline), if any.
std::optional<TimePoint> NextDeadline(const SupervisorView& view);

}  // namespace rot13d::supervisor
