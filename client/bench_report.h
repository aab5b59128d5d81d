// rot13-bench's output: a summary for people and one JSON object for scripts (field
// names are documented in rot13-bench(1) and kept stable).
#pragma once

#include <string>
#include <string_view>

#include "client/bench.h"

namespace rot13d::client {

std::string FormatSummary(const BenchConfig& config, const BenchResult& result);
// exit_status: what the tool exits with (the result's own, or the probe's).
std::string FormatJson(const BenchConfig& config, const BenchResult& result, int exit_status);

// A JSON string literal, quotes included.
std::string JsonString(std::string_view text);

}  // namespace rot13d::client
