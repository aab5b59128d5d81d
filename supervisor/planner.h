// Pure decisions of the supervisor: the worker table, exit classification, backoff, and the plan.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/signals.h"
#include "supervisor/metrics.h"

namespace rot13d::supervisor {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using std::chrono::milliseconds;

// How a child ended, decoded from a waitpid status; or that it never started
// (fork failed), which the planner treats like a worker that died booting.
struct ExitStatus {
  int code = 0;     // valid when signal == 0
  int signal = 0;   // the killing signal, or 0
  bool core_dumped = false;
  int fork_errno = 0;  // fork(2) failed with this; no process ever existed

  static ExitStatus FromWaitStatus(int status);
  static ExitStatus ForkFailed(int error) { return {.fork_errno = error}; }
  bool Clean() const { return signal == 0 && code == 0 && fork_errno == 0; }
  // "exited with code 4", "killed by SIGKILL (core dumped)", "could not be forked: ...".
  std::string Describe() const;
};

struct RestartPolicy {
  milliseconds initial_delay{100};
  milliseconds max_delay{30000};
  // A worker that lived this long is healthy: its slot's failure count resets.
  milliseconds healthy_after{10000};
  // Consecutive deaths before accepting, in one slot, that halt the generation.
  int max_boot_failures = 5;
  // A new generation must have every worker accepting within this time.
  milliseconds boot_timeout{30000};
  // A hung worker gets SIGABRT (for its core), then SIGKILL this much later:
  // time to write a core of a worker holding many connection buffers.
  milliseconds hung_kill_grace{2000};
  // A generation in a crash loop forks at most once per this interval.
  milliseconds governed_fork_interval{1000};
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
  // Consecutive SIGKILLs from outside before booting, with no worker of the
  // slot booting in between: only a backoff, not carried over an upgrade.
  int boot_kills = 0;
  TimePoint restart_at{};
  TimePoint kill_at{};
  bool kill_sent = false;
  int stats_index = -1;
  // Liveness: the last heartbeat the worker published (epoch = none yet), and
  // how old it may get (0 = not checked). `hung` once SIGABRT was sent.
  TimePoint heartbeat{};
  milliseconds heartbeat_timeout{0};
  bool hung = false;
};

// A running worker whose loop has not turned within its heartbeat_timeout
// (counted from its start until it publishes a first heartbeat).
bool HeartbeatStale(const WorkerRecord& worker, TimePoint now);

// The crash-loop governor's trigger: at least `threshold` boot failures within
// `window` before now (window 0 = never).
bool CrashLoopEngaged(const std::deque<TimePoint>& boot_failures, TimePoint now, int threshold,
                      milliseconds window);

// Collapses repeated identical log messages: the first `burst` of a key in a
// window are logged, the rest are counted and summarized once the window closes.
class RepeatFilter {
 public:
  RepeatFilter(milliseconds window, uint64_t burst) : window_(window), burst_(burst) {}
  // True: log this message now. False: it was counted for a later summary.
  bool Admit(const std::string& key, TimePoint now);
  struct Summary {
    std::string key;
    uint64_t suppressed = 0;
  };
  // Counts of messages suppressed in windows that have closed; those keys start over.
  std::vector<Summary> Flush(TimePoint now);
  milliseconds window() const { return window_; }

 private:
  struct Entry {
    TimePoint window_start;
    uint64_t admitted = 0;
    uint64_t suppressed = 0;
  };
  milliseconds window_;
  uint64_t burst_;
  std::map<std::string, Entry> entries_;
};

// What to do with a worker that just exited.
struct ExitDecision {
  enum class Kind { kForget, kRespawn, kGiveUp };
  Kind kind = Kind::kForget;
  milliseconds delay{0};
  int failures = 0;
  int boot_failures = 0;
  int boot_kills = 0;
};

// respawn_wanted: the worker's generation is in force (or is the canary) and
// the supervisor is not stopping (see RespawnWanted).
ExitDecision DecideOnExit(const WorkerRecord& worker, const ExitStatus& status, TimePoint now,
                          const RestartPolicy& policy, bool respawn_wanted);

// A SIGKILL that rot13d did not send: the OOM killer's, an operator's.
bool KilledFromOutside(const WorkerRecord& worker, const ExitStatus& status);

// How a death is told: at what level, in what words, and under what key the
// repeat filter collapses identical ones (the pid differs, the story does not).
struct DeathNote {
  LogLevel level = LogLevel::kInfo;
  std::string text;   // "worker 812 (slot 0, generation 2) killed by SIGSEGV; restarting in 100 ms"
  std::string story;  // "generation 2: killed by SIGSEGV"
  bool boot_failure = false;  // it died before accepting, unasked: the crash-loop governor counts it
  bool repeatable = false;    // unasked: a crash loop repeats it, so the repeat filter may collapse it
  std::vector<LogField> fields;  // WORKER_PID, WORKER_SLOT, GENERATION, EXIT_CODE or EXIT_SIGNAL, COREDUMP
};
// `open`: the connections it still held, which died with it.
DeathNote DescribeDeath(const WorkerRecord& worker, pid_t pid, const ExitStatus& status,
                        const ExitDecision& decision, bool respawn_wanted, uint32_t open = 0);

// Why a worker that is being respawned died, as worker_restarts_total counts
// it; none when it is not respawned.
std::optional<RestartReason> RestartCause(const WorkerRecord& worker, const ExitStatus& status,
                                          const ExitDecision& decision);

// The journal fields naming a worker: WORKER_PID, WORKER_SLOT, GENERATION.
std::vector<LogField> WorkerFields(pid_t pid, const WorkerRecord& worker);

// The log line for a worker whose heartbeat went stale: how long it was
// silent, and what is done about it (SIGABRT now, SIGKILL after `grace`).
std::string DescribeHang(const WorkerRecord& worker, pid_t pid, TimePoint now, milliseconds grace);

// Why a generation stops respawning after this decision to give up.
std::string GiveUpReason(const WorkerRecord& worker, const ExitStatus& status, const RestartPolicy& policy);

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
  // Generations under the crash-loop governor: the earliest time of their next fork.
  std::map<uint64_t, TimePoint> next_governed_fork;
};

struct Action {
  enum class Kind {
    kSpawn,          // slot, generation
    kSignal,         // pid, signal
    kPromote,        // generation: the canary takes over, older ones drain
    kAbandon,        // generation: the canary failed, the serving one stays
    kCloseRetired,   // close listeners no generation uses any more
    kExit,           // exit_code
    kAbortHung,      // pid: its heartbeat is stale; SIGABRT now, SIGKILL after the grace
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

// WATCHDOG=1 is due only while every live worker is healthy or being replaced.
bool WatchdogHealthy(const SupervisorView& view, TimePoint now);

// Whether a worker of `generation` that dies is replaced: it serves or is the
// canary, has not halted, and the supervisor is not stopping.
bool RespawnWanted(const SupervisorView& view, uint64_t generation);

// Boot failures of one generation within its crash-loop window.
class BootFailureHistory {
 public:
  // Records one at `now`; true when this one engaged the governor.
  bool Record(TimePoint now, int threshold, milliseconds window);
  // The governor's trigger: at least threshold failures within window.
  bool Engaged(TimePoint now, int threshold, milliseconds window) const;
  size_t count() const { return times_.size(); }

 private:
  std::deque<TimePoint> times_;
  bool engaged_ = false;  // told once per generation
};

}  // namespace rot13d::supervisor
