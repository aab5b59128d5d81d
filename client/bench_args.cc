#include "client/bench_args.h"

#include <getopt.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "client/args.h"

namespace rot13d::client {
namespace {

constexpr const char* kUsage =
    "Usage: rot13-bench [rr]    [-c N] [-s SIZE] [-d TIME] [-r N]  [OPTIONS] [ADDRESS | HOST PORT]\n"
    "       rot13-bench connect [-c N] [-s SIZE] [-d TIME] [-r N]  [OPTIONS] [ADDRESS | HOST PORT]\n"
    "       rot13-bench stream  [-c N] [-n BYTES] [-d TIME]        [OPTIONS] [ADDRESS | HOST PORT]\n"
    "       rot13-bench -v | --version | --help\n"
    "\n"
    "Loads a rot13 server and checks every byte it answers.\n"
    "  rr       (the default) each of N connections sends a SIZE-byte message,\n"
    "           waits for the whole answer, and repeats: requests/s and latency\n"
    "  connect  N loops of connect, send SIZE bytes, half-close, read the answer\n"
    "           to EOF, close: cycles/s, failures by kind\n"
    "  stream   each of N connections sends BYTES, or sends for TIME, and reads\n"
    "           it all back: throughput each way\n"
    "\n"
    "ADDRESS is [HOST][:PORT], [IPv6]:PORT, tcp:HOST:PORT or unix:PATH (default\n"
    "localhost:1067); or HOST and PORT as two arguments.\n"
    "\n"
    "  -c, --connections N   concurrent connections (default: rr 50, connect 16,\n"
    "                        stream 4)\n"
    "  -d, --duration TIME   length of the run (default: rr and connect 10s;\n"
    "                        stream until its bytes are back)\n"
    "  -s, --size SIZE       rr, connect: message size (default: rr 64, connect 16)\n"
    "  -r, --requests N      rr, connect: stop after N messages or cycles in all\n"
    "  -n, --bytes BYTES     stream: bytes per connection, suffix K, M or G\n"
    "                        (default 64M without -d, no limit with it)\n"
    "  -t, --threads T       event-loop threads (default 1)\n"
    "      --idle K          hold K more connections open and idle for the run\n"
    "      --expect rot13|echo  what the server does to each byte (default rot13)\n"
    "      --timeout TIME    a connection that makes no progress for TIME fails\n"
    "                        (default 10s)\n"
    "      --max-time TIME   end the whole run after TIME (default 10m)\n"
    "      --latency         rr, connect: print the latency distribution (wrk's\n"
    "                        50%, 75%, 90% and 99%)\n"
    "      --json            print the result as one JSON object\n"
    "  -q, --quiet           no progress line (shown only when stderr is a terminal)\n"
    "  -4, --ipv4 / -6, --ipv6  use only IPv4 / IPv6 addresses of HOST\n"
    "      --source ADDR     connect from this local IPv4 or IPv6 address, of\n"
    "                        HOST's family; repeat it (or give ADDR,ADDR,...) to\n"
    "                        take several in turn, each with its own ephemeral\n"
    "                        ports (--source 127.0.0.1 ... --source 127.0.0.8)\n"
    "  -h, --help            print this help\n"
    "  -v, --version         print the version\n"
    "\n"
    "A TIME is a number with a unit, us, ms, s, m or h (10s, 500ms, 2m); a plain\n"
    "number is seconds.\n"
    "\n"
    "Exit status: 0 ok, 1 failures during the run, 2 usage, 3 bad address,\n"
    "4 refused, 5 reset, 6 timeout or --max-time, 7 mismatch (a wrong byte),\n"
    "130 interrupted. See rot13-bench(1).\n";

enum { kIdle = 256, kExpect, kTimeout, kMaxTime, kJson, kLatency, kSource };
const option kOptions[] = {
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
    {"latency", no_argument, nullptr, kLatency},
    {"quiet", no_argument, nullptr, 'q'},
    {"ipv4", no_argument, nullptr, '4'},
    {"ipv6", no_argument, nullptr, '6'},
    {"source", required_argument, nullptr, kSource},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, 'v'},
    {nullptr, 0, nullptr, 0},
};

// Which options were given: the mode's defaults fill in the others, and some
// belong to one mode only.
struct Given {
  bool connections = false;
  bool bytes = false;
  bool size = false;
  bool duration = false;
  bool requests = false;
  bool latency = false;
  bool quiet = false;
};

// -c, -n, -s, -r, -t and --idle.
Status ApplyNumber(int c, std::string_view value, BenchConfig& config, Given& given) {
  switch (c) {
    case 'c': {
      auto n = ParseCount(value, 1'000'000);
      if (!n || *n == 0) return Err() << "-c: expected 1..1000000 connections";
      config.connections = static_cast<uint32_t>(*n);
      given.connections = true;
      break;
    }
    case 'n': {
      auto n = ParseSize(value);
      if (!n || *n == 0) return Err() << "-n: " << (n ? std::string("must be at least 1 byte") : n.error().ToString());
      config.bytes = *n;
      given.bytes = true;
      break;
    }
    case 's': {
      auto n = ParseSize(value);
      if (!n || *n == 0 || *n > (1ull << 30)) return Err() << "-s: expected a size of 1 byte to 1G";
      config.size = *n;
      given.size = true;
      break;
    }
    case 'r': {
      auto n = ParseCount(value, UINT64_MAX >> 1);
      if (!n || *n == 0) return Err() << "-r: expected a number of requests, at least 1";
      config.requests = *n;
      given.requests = true;
      break;
    }
    case 't': {
      auto n = ParseCount(value, 256);
      if (!n || *n == 0) return Err() << "-t: expected 1..256 threads";
      config.threads = static_cast<uint32_t>(*n);
      break;
    }
    case kIdle: {
      auto n = ParseCount(value, 1'000'000);
      if (!n) return Err() << "--idle: expected 0..1000000 connections";
      config.idle = static_cast<uint32_t>(*n);
      break;
    }
  }
  return OkStatus();
}

// -d, --timeout and --max-time; `name` is the option as it was given.
Status ApplyDuration(int c, std::string_view value, std::string_view name, BenchConfig& config, Given& given) {
  auto d = ParseDuration(value);
  if (!d || d->count() == 0) {
    return Err() << name << ": " << (d ? std::string("must be more than 0") : d.error().ToString());
  }
  if (c == 'd') {
    config.duration = *d;
    given.duration = true;
  } else if (c == kTimeout) {
    config.timeout = *d;
  } else {
    config.max_time = *d;
  }
  return OkStatus();
}

Status ApplyExpect(std::string_view value, BenchConfig& config) {
  if (value == "rot13") {
    config.expect = Expect::kRot13;
  } else if (value == "echo") {
    config.expect = Expect::kEcho;
  } else {
    return Err() << "--expect: expected rot13 or echo";
  }
  return OkStatus();
}

const char* FamilyName(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

// --source: one address, or several separated by commas; all of one family.
Status ApplySource(std::string_view value, BenchConfig& config) {
  while (true) {
    size_t comma = value.find(',');
    auto source = ParseSourceAddress(value.substr(0, comma));
    if (!source) return Err() << "--source: " << source.error().message();
    if (!config.sources.empty() && source->family() != config.sources.front().family()) {
      return Err() << "--source: " << source->HostToString() << " is " << FamilyName(source->family()) << " but "
                   << config.sources.front().HostToString() << " is " << FamilyName(config.sources.front().family())
                   << " (the sources and the server's address are of one family)";
    }
    config.sources.push_back(*source);
    if (comma == std::string_view::npos) return OkStatus();
    value.remove_prefix(comma + 1);
  }
}

// -4 or -6 against the family of the --source addresses.
Status CheckSourceFamily(const BenchArgs& args) {
  if (args.config.sources.empty() || args.family == Family::kAny) return OkStatus();
  const SocketAddress& source = args.config.sources.front();
  if ((args.family == Family::kIpv4) == (source.family() == AF_INET)) return OkStatus();
  return Err() << (args.family == Family::kIpv4 ? "-4" : "-6") << " contradicts --source "
               << source.HostToString() << ", an " << FamilyName(source.family()) << " address";
}

constexpr std::string_view kModes[] = {"rr", "connect", "stream"};

bool IsMode(std::string_view word) { return std::find(std::begin(kModes), std::end(kModes), word) != std::end(kModes); }

bool IsPortNumber(std::string_view word) {
  return !word.empty() && word.find_first_not_of("0123456789") == std::string_view::npos;
}

// The mode, its defaults for what was not given, and the options it does not take.
Status ApplyMode(std::string_view mode, const Given& given, BenchConfig& config) {
  if (mode == "stream") {
    config.mode = Mode::kStream;
    if (!given.connections) config.connections = 4;
    if (given.size || given.requests) return Err() << "-s and -r apply to rr and connect; stream takes -n and -d";
    if (given.latency) return Err() << "--latency applies to rr and connect: stream measures no latency";
    // -n, -d or both: whichever ends first. Without -d the bytes end it; with -d alone, the time.
    if (!given.duration) config.duration = std::chrono::nanoseconds(0);
    if (given.duration && !given.bytes) config.bytes = 0;
  } else {
    config.mode = mode == "rr" ? Mode::kRequestResponse : Mode::kConnect;
    if (!given.connections) config.connections = mode == "rr" ? 50 : 16;
    if (!given.size) config.size = mode == "rr" ? 64 : 16;
    if (given.bytes) return Err() << "-n applies to stream; rr and connect take -s";
  }
  if (config.duration > config.max_time) return Err() << "-d is longer than --max-time";
  return OkStatus();
}

}  // namespace

const char* BenchUsage() { return kUsage; }

Result<std::vector<SocketAddress>> MatchSources(const std::vector<SocketAddress>& sources, const Endpoint& endpoint,
                                                std::vector<SocketAddress> addresses) {
  if (sources.empty() || addresses.empty()) return addresses;
  const int family = sources.front().family();
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    return Err() << "--source applies to TCP, not to a Unix socket (" << endpoint.ToString() << ")";
  }
  std::vector<SocketAddress> matching;
  for (const SocketAddress& a : addresses) {
    if (a.family() == family) matching.push_back(a);
  }
  if (matching.empty()) {
    return Err() << "--source " << sources.front().HostToString() << " is " << FamilyName(family) << ", but "
                 << endpoint.ToString() << " is " << FamilyName(addresses.front().family())
                 << " (the sources and the server's address are of one family)";
  }
  return matching;
}

Result<BenchArgs> ParseBenchArgs(int argc, char** argv) {
  BenchArgs args;
  Given given;
  opterr = 0;  // our own messages, without argv[0]'s directory
  int c;
  while ((c = getopt_long(argc, argv, ":c:n:s:d:r:t:q46hv", kOptions, nullptr)) != -1) {
    std::string_view value = optarg ? optarg : "";
    Status applied = OkStatus();
    switch (c) {
      case 'c': case 'n': case 's': case 'r': case 't': case kIdle:
        applied = ApplyNumber(c, value, args.config, given);
        break;
      case 'd': case kTimeout: case kMaxTime:
        applied = ApplyDuration(c, value, argv[optind - 1], args.config, given);
        break;
      case kExpect: applied = ApplyExpect(value, args.config); break;
      case kSource: applied = ApplySource(value, args.config); break;
      case kJson: args.json = true; break;
      case kLatency:
        args.latency_distribution = true;
        given.latency = true;
        break;
      case 'q': given.quiet = true; break;
      case '4': args.family = Family::kIpv4; break;
      case '6': args.family = Family::kIpv6; break;
      case 'h': args.action = BenchArgs::Action::kHelp; return args;
      case 'v': args.action = BenchArgs::Action::kVersion; return args;
      case ':': return Err() << "option '" << argv[optind - 1] << "' needs a value";
      default: return Err() << "unknown option '" << argv[optind - 1] << "'";
    }
    if (!applied) return applied.error();
  }
  // [MODE] [ADDRESS | HOST PORT]: a first word that names no mode is the address, for rr.
  std::vector<std::string> words(argv + optind, argv + argc);
  std::string mode = "rr";
  if (!words.empty() && IsMode(words[0])) {
    mode = words[0];
    words.erase(words.begin());
    args.mode_given = true;
  } else if (words.size() > 2 || (words.size() == 2 && !IsPortNumber(words[1]))) {
    return Err() << "unknown mode '" << words[0] << "' (expected stream, rr or connect)";
  }
  if (words.size() > 2) return Err() << "too many arguments (expected [MODE] [ADDRESS | HOST PORT])";
  if (Status applied = ApplyMode(mode, given, args.config); !applied) return applied.error();
  if (Status applied = CheckSourceFamily(args); !applied) return applied.error();
  args.address = std::move(words);
  args.config.threads = std::min(args.config.threads, args.config.connections);
  args.config.progress = !given.quiet && isatty(2) == 1;
  return args;
}

}  // namespace rot13d::client
