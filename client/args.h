// Command-line values shared by the client tools: durations, sizes and counts, strictly parsed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace rot13d::client {

// Seconds as a decimal number ("10", "0.5"), 0 or more, at most a year.
Result<std::chrono::nanoseconds> ParseSeconds(std::string_view text);

// Bytes: an integer with an optional binary suffix K, M or G (KiB, MiB, GiB),
// upper or lower case, optionally followed by "iB" or "B": "64", "16K", "1GiB".
Result<uint64_t> ParseSize(std::string_view text);

// A plain non-negative integer no larger than max.
Result<uint64_t> ParseCount(std::string_view text, uint64_t max);

// Seconds for messages: "10 s", "0.5 s".
std::string FormatSeconds(std::chrono::nanoseconds d);

}  // namespace rot13d::client
