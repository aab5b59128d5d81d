// One generation of workers: the configuration they run, how many, and how their boots went.
#pragma once

#include <cstdint>
#include <string>

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

  // When the crash-loop governor lets it fork next, if it is engaged.
  std::optional<TimePoint> NextGovernedFork(TimePoint now, milliseconds interval) const {
    if (!boot_failures.Engaged(now, config.crash_loop_failures, config.crash_loop_window)) return std::nullopt;
    return last_fork == TimePoint{} ? now : last_fork + interval;
  }
};

}  // namespace rot13d::supervisor
