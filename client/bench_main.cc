// rot13-bench: a load generator for rot13 servers in the manner of redis-benchmark.
// Modes stream, rr and connect; every byte that comes back is checked.
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "client/bench.h"
#include "client/bench_args.h"
#include "client/bench_report.h"
#include "client/endpoint.h"
#include "client/exit_codes.h"

#ifndef ROT13D_VERSION
#define ROT13D_VERSION "unknown"
#endif

namespace rot13d::client {
namespace {

int Usage(const std::string& message) {
  std::fprintf(stderr, "rot13-bench: %s\nTry 'rot13-bench --help'.\n", message.c_str());
  return kExitUsage;
}

// The soft limit up to the hard one: thousands of connections are the point.
rlim_t RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  }
  return lim.rlim_cur;
}

// False, with a message, when the run would run out of file descriptors.
bool EnoughFiles(const BenchConfig& config) {
  rlim_t limit = RaiseFileLimit();
  uint64_t needed = uint64_t{config.connections} + config.idle + 32;
  if (needed <= limit) return true;
  std::fprintf(stderr,
               "rot13-bench: %u connections and %u idle ones need about %llu file descriptors; the limit is %llu "
               "(see ulimit -n)\n",
               config.connections, config.idle, static_cast<unsigned long long>(needed),
               static_cast<unsigned long long>(limit));
  return false;
}

// One connection and a round trip first: an absent or wrong server is named
// at once, before any load. The load then goes to the address that answered.
ProbeResult ProbeServer(const std::vector<SocketAddress>& addresses, BenchConfig& config) {
  // With --source, the probe comes from the first source, as the load's first connection does.
  const SocketAddress* source = config.sources.empty() ? nullptr : &config.sources.front();
  auto connection = ConnectAny(addresses, std::chrono::ceil<std::chrono::milliseconds>(config.timeout), source);
  if (!connection) {
    ProbeResult probe;
    probe.failure = ClassifyErrno(connection.error().errno_value());
    probe.message = connection.error().message();
    return probe;
  }
  config.address = connection->address;
  return Probe(connection->fd.borrow(), connection->address, config.timeout, config.expect);
}

// The probe failed: it says why, with --json in a report too, and exits with the status of its kind.
int ReportProbeFailure(const BenchConfig& config, const ProbeResult& probe, bool json) {
  std::fprintf(stderr, "rot13-bench: %s\n", probe.message.c_str());
  BenchResult result;
  result.Record(probe.failure, probe.message);
  result.mismatch = probe.mismatch;
  int status = ExitCodeFor(probe.failure);
  if (!json) return status;
  std::fputs(FormatJson(config, result, status).c_str(), stdout);
  return std::fflush(stdout) == 0 ? status : kExitIoError;
}

int Report(const BenchConfig& config, const BenchResult& result, const BenchArgs& args) {
  const bool json = args.json;
  int status = result.ExitStatus();
  std::string report =
      json ? FormatJson(config, result, status) : FormatSummary(config, result, args.latency_distribution);
  std::fputs(report.c_str(), stdout);
  if (std::fflush(stdout) != 0) return kExitIoError;
  if (status != kExitOk && json) {
    // The JSON says it all for scripts; a person at the terminal still gets a line.
    std::fprintf(stderr, "rot13-bench: run failed (exit status %d)%s%s\n", status,
                 result.first_error.empty() ? "" : ": ", result.first_error.c_str());
  }
  return status;
}

int Run(BenchArgs& args) {
  BenchConfig& config = args.config;
  auto endpoint = ParseEndpointArgs(args.address);
  if (!endpoint) {
    std::fprintf(stderr, "rot13-bench: %s\n", endpoint.error().ToString().c_str());
    return kExitBadAddress;
  }
  std::signal(SIGPIPE, SIG_IGN);
  if (!EnoughFiles(config)) return kExitIoError;
  auto addresses = Resolve(*endpoint, args.family);
  if (!addresses) {
    // "rot13-bench strem": a mistyped mode reads as a host name.
    bool maybe_mode = !args.mode_given && args.address.size() == 1 &&
                      args.address[0].find_first_of(":./") == std::string::npos;
    std::fprintf(stderr, "rot13-bench: %s%s\n", addresses.error().ToString().c_str(),
                 maybe_mode ? " (it is no mode either: the modes are rr, connect and stream)" : "");
    return kExitBadAddress;
  }
  // A source of the other family, or one for a Unix socket, is a usage error.
  auto matching = MatchSources(config.sources, *endpoint, std::move(*addresses));
  if (!matching) return Usage(matching.error().message());
  config.address = matching->front();
  ProbeResult probe = ProbeServer(*matching, config);
  if (probe.failure != FailureKind::kNone) return ReportProbeFailure(config, probe, args.json);
  if (!args.json) {
    // Before the run, as wrk does: what runs, while it runs.
    std::fputs(FormatHeader(config).c_str(), stdout);
    std::fflush(stdout);
  }
  return Report(config, RunBench(config), args);
}

int Main(int argc, char** argv) {
  auto args = ParseBenchArgs(argc, argv);
  if (!args) return Usage(args.error().message());
  switch (args->action) {
    case BenchArgs::Action::kHelp: std::fputs(BenchUsage(), stdout); return kExitOk;
    case BenchArgs::Action::kVersion: std::printf("rot13-bench %s\n", ROT13D_VERSION); return kExitOk;
    case BenchArgs::Action::kRun: break;
  }
  return Run(*args);
}

}  // namespace
}  // namespace rot13d::client

int main(int argc, char** argv) { return rot13d::client::Main(argc, argv); }
