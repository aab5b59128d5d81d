// One generation of workers: the configuration they run, how many, and how their boots went.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "supervisor/planner.h"

namespace rot13d::supervisor {

// A reload starts a new generation as the canary; it serves once all its
// workers accept, and the one it replaces drains (its workers keep their
// generation number; the supervisor keeps no record of it beyond them).
struct Generation {
  uint64_t id = 0;  // 0: nothing serves yet
  Config config;
  int size = 0;               // workers it runs
  TimePoint deadline{};       // a canary must have every worker accepting by then
  bool halted = false;        // it gave up respawning
  std::string failure;        // why it halted
  BootFailureHistory boot_failures;  // for the crash-loop governor
  TimePoint last_fork{};

  // Counts a worker that died booting; the crash-loop governor's engagement,
  // the first time it engages, as a line to log.
  std::optional<std::string> RecordBootFailure(TimePoint now);

  // When the crash-loop governor lets it fork next, if it is engaged.
  std::optional<TimePoint> NextGovernedFork(TimePoint now, milliseconds interval) const {
    if (!boot_failures.Engaged(now, config.crash_loop_failures, config.crash_loop_window)) return std::nullopt;
    return last_fork == TimePoint{} ? now : last_fork + interval;
  }
};

// The generations the supervisor knows: the one serving and, during a
// reload, the canary proving itself. Retiring ones live on only in their
// workers' records.
class Generations {
 public:
  Generation& serving() { return serving_; }
  const Generation& serving() const { return serving_; }
  Generation* canary() { return canary_ ? &*canary_ : nullptr; }
  const Generation* canary() const { return canary_ ? &*canary_ : nullptr; }
  bool has_canary() const { return canary_.has_value(); }
  // The generation a worker belongs to; a retiring one's settings are the serving one's.
  Generation& Of(uint64_t id) { return canary_ && canary_->id == id ? *canary_ : serving_; }

  // What runs before the first generation serves (its listeners are bound by it).
  void SetInitialConfig(const Config& config) { serving_.config = config; }
  // A new canary of `size` workers running `config`, to be accepting by `deadline`.
  Generation& StartCanary(const Config& config, int size, TimePoint deadline);
  // The canary takes over; returns true when it is the first generation to serve.
  bool PromoteCanary();
  // Drops the canary and returns it.
  Generation AbandonCanary();
  // In a re-executed image (supervisor/handover.h): the serving generation as
  // the previous image had it, and the next number to give.
  void Resume(Generation serving, uint64_t next_id);

  std::vector<const Config*> ConfigsInForce() const;
  // The generations' part of the planner's view.
  void Describe(SupervisorView* view, TimePoint now, milliseconds governed_fork_interval) const;

 private:
  Generation serving_;
  std::optional<Generation> canary_;
  uint64_t next_id_ = 1;
};

}  // namespace rot13d::supervisor
