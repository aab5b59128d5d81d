// rot13-bench --idle: connections opened before the run, each proved live by a one-byte
// round trip, held open and idle through it, and checked at the end.
#pragma once

#include <vector>

#include "client/bench.h"
#include "common/unique_fd.h"

namespace rot13d::client {

// Opens up to config.idle connections, 256 at a time, each within --timeout.
// Those that fail are counted in `result`, which is marked out of time when
// `deadline` passes meanwhile.
std::vector<UniqueFd> OpenIdle(const BenchConfig& config, LoadClock::time_point deadline, BenchResult& result);

// At the end: which idle connections the server kept (idle_open) and which it
// dropped (idle_dropped).
void CheckIdle(const std::vector<UniqueFd>& idle, BenchResult& result);

}  // namespace rot13d::client
