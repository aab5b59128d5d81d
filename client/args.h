// Command-line values shared by the client tools: durations, sizes and counts, strictly parsed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace rot13d::client {

// A duration: a decimal number with an optional unit, us, ms, s, m or h, as
// wrk takes them ("10s", "500ms", "2m", "1.5h"); a plain number is seconds
// ("10", "0.5"). 0 or more, at most 366 days.
Result<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// Bytes: an integer with an optional binary suffix K, M or G (KiB, MiB, GiB),
// upper or lower case, optionally followed by "iB" or "B": "64", "16K", "1GiB".
Result<uint64_t> ParseSize(std::string_view text);

// A plain non-negative integer no larger than max.
Result<uint64_t> ParseCount(std::string_view text, uint64_t max);

// A duration as it would be typed, in the largest unit that keeps it short:
// "10s", "500ms", "2m", "1.5s", "250us", "1h".
std::string FormatDuration(std::chrono::nanoseconds d);

// Bytes in the largest binary unit they reach: "64 MiB", "2 GiB", "1.5 KiB",
// "100 bytes"; whole numbers without decimals.
std::string FormatSize(uint64_t bytes);

}  // namespace rot13d::client
