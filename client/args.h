// Command-line values shared by the client tools: durations, sizes and counts, strictly parsed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/duration.h"
#include "common/result.h"

namespace rot13d::client {

using rot13d::FormatDuration;  // common/duration.h
using rot13d::ParseDuration;


// Bytes: an integer with an optional binary suffix K, M or G (KiB, MiB, GiB),
// upper or lower case, optionally followed by "iB" or "B": "64", "16K", "1GiB".
Result<uint64_t> ParseSize(std::string_view text);

// A plain non-negative integer no larger than max.
Result<uint64_t> ParseCount(std::string_view text, uint64_t max);


// Bytes in the largest binary unit they reach: "64 MiB", "2 GiB", "1.5 KiB",
// "100 bytes"; whole numbers without decimals.
std::string FormatSize(uint64_t bytes);

}  // namespace rot13d::client
