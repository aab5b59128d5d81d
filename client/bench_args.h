// rot13-bench's command line: options, the mode and the address, checked as a whole.
#pragma once

#include <string>
#include <vector>

#include "client/bench.h"
#include "client/endpoint.h"
#include "common/result.h"

namespace rot13d::client {

struct BenchArgs {
  enum class Action { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  BenchConfig config;  // all but the address, with the mode's defaults
  bool mode_given = false;  // or rr by default
  std::vector<std::string> address;  // ADDRESS, HOST PORT, or none for the default
  Family family = Family::kAny;
  bool json = false;
  bool latency_distribution = false;  // --latency
};

// A usage error's message says what is wrong, without the program's name.
Result<BenchArgs> ParseBenchArgs(int argc, char** argv);

// --source against the address as resolved: a unix: address takes no source,
// and only the addresses of the sources' family remain, in their order (that
// none does is an error). Without sources, `addresses` as they are.
Result<std::vector<SocketAddress>> MatchSources(const std::vector<SocketAddress>& sources, const Endpoint& endpoint,
                                                std::vector<SocketAddress> addresses);

// The --help text.
const char* BenchUsage();

}  // namespace rot13d::client
