// Durations as operators write them: a number with a unit (us, ms, s, m, h),
// or a plain number of seconds. One reading for the configuration file and
// for the client tools' options.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.h"

namespace rot13d {

// "10s", "500ms", "2m", "1.5h", "250us", or seconds ("10", "0.5"); not
// negative, at most a year.
Result<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// The other way: "1.5s", "250ms", "2m", "90s".
std::string FormatDuration(std::chrono::nanoseconds d);

}  // namespace rot13d
