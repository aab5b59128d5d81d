// rot13-bench: a load generator for rot13 servers in the manner of redis-benchmark.
// Modes stream, rr and connect; every byte that comes back is checked.
#include <getopt.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>

#include "client/args.h"
#include "client/bench.h"
#include "client/bench_report.h"
#include "client/endpoint.h"
#include "client/exit_codes.h"

#ifndef ROT13D_VERSION
#define ROT13D_VERSION "unknown"
#endif

namespace rot13d::client {
namespace {

constexpr const char* kUsage =
    "Usage: rot13-bench stream  [-c N] [-n BYTES]                  [OPTIONS] [ADDRESS]\n"
    "       rot13-bench rr      [-c N] [-s SIZE] [-d SECS] [-r N]  [OPTIONS] [ADDRESS]\n"
    "       rot13-bench connect [-c N] [-s SIZE] [-d SECS] [-r N]  [OPTIONS] [ADDRESS]\n"
    "       rot13-bench --version | --help\n"
    "\n"
    "Loads a rot13 server and checks every byte it answers.\n"
    "  stream   each of N connections sends BYTES, half-closes and reads them all\n"
    "           back: throughput each way\n"
    "  rr       each of N connections sends a SIZE-byte message, waits for the\n"
    "           whole answer, and repeats: requests/s and latency percentiles\n"
    "  connect  N loops of connect, send SIZE bytes, half-close, read the answer\n"
    "           to EOF, close: cycles/s, failures by kind\n"
    "\n"
    "ADDRESS is [HOST][:PORT], [IPv6]:PORT or unix:PATH (default localhost:1067).\n"
    "\n"
    "  -c, --connections N   concurrent connections (default: stream 4, rr 50,\n"
    "                        connect 16)\n"
    "  -n, --bytes BYTES     stream: bytes per connection, suffix K, M or G\n"
    "                        (default 64M)\n"
    "  -s, --size SIZE       rr, connect: message size (default: rr 64, connect 16)\n"
    "  -d, --duration SECS   rr, connect: length of the run (default 10)\n"
    "  -r, --requests N      rr, connect: stop after N messages or cycles in all\n"
    "  -t, --threads T       event-loop threads (default 1)\n"
    "      --idle K          hold K more connections open and idle for the run\n"
    "      --expect rot13|echo  what the server does to each byte (default rot13)\n"
    "      --timeout SECS    a connection that makes no progress for SECS fails\n"
    "                        (default 10)\n"
    "      --max-time SECS   end the whole run after SECS (default 600)\n"
    "      --json            print the result as one JSON object\n"
    "  -q, --quiet           no progress line (shown only when stderr is a terminal)\n"
    "  -4, --ipv4 / -6, --ipv6  use only IPv4 / IPv6 addresses of HOST\n"
    "  -h, --help            print this help\n"
    "      --version         print the version\n"
    "\n"
    "Exit status: 0 ok, 1 failures during the run, 2 usage, 3 bad address,\n"
    "4 refused, 5 reset, 6 timeout or --max-time, 7 mismatch (a wrong byte),\n"
    "130 interrupted. See rot13-bench(1).\n";

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

int Main(int argc, char** argv) {
  enum { kIdle = 256, kExpect, kTimeout, kMaxTime, kJson, kVersion };
  static const option kOptions[] = {
      {"connections", required_argument, nullptr, 'c'},
      {"bytes", required_argument, nullptr, 'n'},
      {"size", required_argument, nullptr, 's'},
      {"duration", required_argument, nullptr, 'd'},
      {"requests", required_argument, nullptr, 'r'},
      {"threads", required_argument, nullptr, 't'},
      {"idle", required_argument, nullptr, kIdle},
      {"expect", required_argument, nullptr, kExpect},
      {"timeout", required_argument, nullptr, kTimeout},
      {"max-time", required_argument, nullptr, kMaxTime},
      {"json", no_argument, nullptr, kJson},
      {"quiet", no_argument, nullptr, 'q'},
      {"ipv4", no_argument, nullptr, '4'},
      {"ipv6", no_argument, nullptr, '6'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, kVersion},
      {nullptr, 0, nullptr, 0},
  };
  BenchConfig config;
  bool json = false, quiet = false;
  bool have_connections = false, have_bytes = false, have_size = false, have_duration = false, have_requests = false;
  Family family = Family::kAny;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":c:n:s:d:r:t:q46h", kOptions, nullptr)) != -1) {
    std::string_view value = optarg ? optarg : "";
    auto count = [&](uint64_t max) -> Result<uint64_t> { return ParseCount(value, max); };
    switch (c) {
      case 'c': {
        auto n = count(1'000'000);
        if (!n || *n == 0) return Usage("-c: expected 1..1000000 connections");
        config.connections = static_cast<uint32_t>(*n);
        have_connections = true;
        break;
      }
      case 'n': {
        auto n = ParseSize(value);
        if (!n || *n == 0) return Usage("-n: " + (n ? std::string("must be at least 1 byte") : n.error().ToString()));
        config.bytes = *n;
        have_bytes = true;
        break;
      }
      case 's': {
        auto n = ParseSize(value);
        if (!n || *n == 0 || *n > (1ull << 30)) return Usage("-s: expected a size of 1 byte to 1G");
        config.size = *n;
        have_size = true;
        break;
      }
      case 'd':
      case kTimeout:
      case kMaxTime: {
        auto d = ParseSeconds(value);
        if (!d || d->count() == 0) {
          return Usage(std::string(argv[optind - 1]) + ": " +
                       (d ? std::string("must be more than 0") : d.error().ToString()));
        }
        if (c == 'd') {
          config.duration = *d;
          have_duration = true;
        } else if (c == kTimeout) {
          config.timeout = *d;
        } else {
          config.max_time = *d;
        }
        break;
      }
      case 'r': {
        auto n = count(UINT64_MAX >> 1);
        if (!n || *n == 0) return Usage("-r: expected a number of requests, at least 1");
        config.requests = *n;
        have_requests = true;
        break;
      }
      case 't': {
        auto n = count(256);
        if (!n || *n == 0) return Usage("-t: expected 1..256 threads");
        config.threads = static_cast<uint32_t>(*n);
        break;
      }
      case kIdle: {
        auto n = count(1'000'000);
        if (!n) return Usage("--idle: expected 0..1000000 connections");
        config.idle = static_cast<uint32_t>(*n);
        break;
      }
      case kExpect:
        if (value == "rot13") {
          config.expect = Expect::kRot13;
        } else if (value == "echo") {
          config.expect = Expect::kEcho;
        } else {
          return Usage("--expect: expected rot13 or echo");
        }
        break;
      case kJson: json = true; break;
      case 'q': quiet = true; break;
      case '4': family = Family::kIpv4; break;
      case '6': family = Family::kIpv6; break;
      case 'h': std::fputs(kUsage, stdout); return kExitOk;
      case kVersion: std::printf("rot13-bench %s\n", ROT13D_VERSION); return kExitOk;
      case ':': return Usage(std::string("option '") + argv[optind - 1] + "' needs a value");
      default: return Usage(std::string("unknown option '") + argv[optind - 1] + "'");
    }
  }
  if (optind >= argc) return Usage("no mode given (stream, rr or connect)");
  std::string_view mode = argv[optind++];
  if (mode == "stream") {
    config.mode = Mode::kStream;
    if (!have_connections) config.connections = 4;
    if (have_size || have_duration || have_requests) return Usage("-s, -d and -r apply to rr and connect, not stream");
  } else if (mode == "rr" || mode == "connect") {
    config.mode = mode == "rr" ? Mode::kRequestResponse : Mode::kConnect;
    if (!have_connections) config.connections = mode == "rr" ? 50 : 16;
    if (!have_size) config.size = mode == "rr" ? 64 : 16;
    if (have_bytes) return Usage("-n applies to stream; rr and connect take -s");
    if (config.duration > config.max_time) return Usage("-d is longer than --max-time");
  } else {
    return Usage("unknown mode '" + std::string(mode) + "' (expected stream, rr or connect)");
  }
  if (argc - optind > 1) return Usage("more than one address");
  config.threads = std::min(config.threads, config.connections);
  config.progress = !quiet && isatty(2) == 1;

  auto endpoint = ParseEndpoint(optind < argc ? argv[optind] : "");
  if (!endpoint) {
    std::fprintf(stderr, "rot13-bench: %s\n", endpoint.error().ToString().c_str());
    return kExitBadAddress;
  }
  std::signal(SIGPIPE, SIG_IGN);
  rlim_t limit = RaiseFileLimit();
  uint64_t needed = uint64_t{config.connections} + config.idle + 32;
  if (needed > limit) {
    std::fprintf(stderr,
                 "rot13-bench: %u connections and %u idle ones need about %llu file descriptors; the limit is %llu "
                 "(see ulimit -n)\n",
                 config.connections, config.idle, static_cast<unsigned long long>(needed),
                 static_cast<unsigned long long>(limit));
    return kExitIoError;
  }
  auto addresses = Resolve(*endpoint, family);
  if (!addresses) {
    std::fprintf(stderr, "rot13-bench: %s\n", addresses.error().ToString().c_str());
    return kExitBadAddress;
  }
  config.address = addresses->front();

  // One connection and a round trip first: an absent or wrong server is named
  // at once, with the exit status of its kind, before any load.
  BenchResult result;
  int status = kExitOk;
  auto connection = ConnectAny(*addresses, std::chrono::ceil<std::chrono::milliseconds>(config.timeout));
  ProbeResult probe;
  if (!connection) {
    probe.failure = ClassifyErrno(connection.error().errno_value());
    probe.message = connection.error().message();
  } else {
    config.address = connection->address;
    probe = Probe(connection->fd.borrow(), connection->address, config.timeout, config.expect);
    connection->fd.reset();
  }
  if (probe.failure != FailureKind::kNone) {
    std::fprintf(stderr, "rot13-bench: %s\n", probe.message.c_str());
    ++result.failures[static_cast<size_t>(probe.failure)];
    result.first_error = probe.message;
    result.mismatch = probe.mismatch;
    status = ExitCodeFor(probe.failure);
    if (!json) return status;
    std::fputs(FormatJson(config, result, status).c_str(), stdout);
    return std::fflush(stdout) == 0 ? status : kExitIoError;
  }

  result = RunBench(config);
  status = result.ExitStatus();
  std::string report = json ? FormatJson(config, result, status) : FormatSummary(config, result);
  std::fputs(report.c_str(), stdout);
  if (std::fflush(stdout) != 0) return kExitIoError;
  if (status != kExitOk && json) {
    // The JSON says it all for scripts; a person at the terminal still gets a line.
    std::fprintf(stderr, "rot13-bench: run failed (exit status %d)%s%s\n", status,
                 result.first_error.empty() ? "" : ": ", result.first_error.c_str());
  }
  return status;
}

}  // namespace
}  // namespace rot13d::client

int main(int argc, char** argv) { return rot13d::client::Main(argc, argv); }
