// rot13-bench's output: a summary for people and one JSON object for scripts (field
// names are documented in rot13-bench(1) and kept stable).
#pragma once

#include <string>
#include <string_view>

#include "client/bench.h"

namespace rot13d::client {

// What runs, printed before the run as wrk does: "Running 10s rr test @ 127.0.0.1:1067"
// and a line with the connections, threads and messages.
std::string FormatHeader(const BenchConfig& config);
// The report after the run; latency_distribution (--latency) adds wrk's
// "Latency Distribution" of the 50th, 75th, 90th and 99th percentiles.
std::string FormatSummary(const BenchConfig& config, const BenchResult& result, bool latency_distribution = false);
// A latency as wrk prints it, in us, ms or s with two decimals, in a cell of
// `width` with the number right-aligned and the unit in two columns:
// "  786.43us", "    1.62ms", "    2.31s ".
std::string FormatLatency(double nanoseconds, int width);
// exit_status: what the tool exits with (the result's own, or the probe's).
std::string FormatJson(const BenchConfig& config, const BenchResult& result, int exit_status);

// A JSON string literal, quotes included.
std::string JsonString(std::string_view text);

}  // namespace rot13d::client
