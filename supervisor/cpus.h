// How many CPUs this process may use, for workers = "auto".
#pragma once

#include <optional>
#include <string_view>

namespace rot13d::supervisor {

// The CPU quota in a cgroup v2 cpu.max file ("200000 100000" -> 2.0; "max 100000" -> none).
std::optional<double> ParseCpuMax(std::string_view text);

// The number of CPUs in our affinity mask, lowered to the cgroup v2 quota
// (rounded up) of our cgroup or any ancestor; at least 1.
int AutoWorkerCount();

}  // namespace rot13d::supervisor
