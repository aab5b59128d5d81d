// rot13-bench's run: one mode's load (on the load engine) over N connections on T threads,
// every answered byte verified, plus optional idle connections held open for the whole run.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/endpoint.h"
#include "client/histogram.h"
#include "client/load.h"
#include "client/pattern.h"

namespace rot13d::client {

enum class Mode {
  kStream,           // each connection sends `bytes` and reads them all back
  kRequestResponse,  // each connection sends a `size`-byte message, waits for its answer, repeats
  kConnect,          // loops of connect, send `size` bytes, half-close, read the answer to EOF, close
};
const char* ModeName(Mode mode);

struct BenchConfig {
  Mode mode = Mode::kRequestResponse;
  SocketAddress address;
  // --source: the local addresses that connections (the probe's, the load's
  // and the idle ones) are made from, each the next in turn; all of the
  // address's family. Empty: the kernel picks.
  std::vector<SocketAddress> sources;
  uint32_t connections = 50;
  uint32_t threads = 1;
  uint32_t idle = 0;
  uint64_t bytes = 64ull << 20;                            // stream: per connection; 0 = until the duration ends
  uint64_t size = 64;                                      // rr, connect: message size
  std::chrono::nanoseconds duration = std::chrono::seconds(10);  // stream: 0 = until the bytes are back
  uint64_t requests = 0;                                   // rr, connect: stop after this many; 0 = no limit
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);   // no progress for this long fails a connection
  std::chrono::nanoseconds max_time = std::chrono::seconds(600);  // the whole run, setup included
  Expect expect = Expect::kRot13;
  bool progress = false;  // a progress line on stderr once per second
};

struct BenchResult {
  double seconds = 0;  // the measured run, from the first connect to the last answer or the end of -d
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;  // every one of them verified; rr, connect: those of the counted requests
  uint64_t requests = 0;        // answered messages (rr, connect), completed connections (stream)
  Histogram latency;            // nanoseconds per answered message (rr) or cycle (connect)
  std::array<uint64_t, kFailureKinds> failures{};
  std::string first_error;
  std::optional<MismatchReport> mismatch;
  uint32_t idle_open = 0;     // idle connections still open at the end
  uint32_t idle_dropped = 0;  // idle connections the server closed or reset during the run
  bool interrupted = false;   // SIGINT or SIGTERM
  bool out_of_time = false;   // --max-time ended the run

  uint64_t Failures(FailureKind kind) const { return failures[static_cast<size_t>(kind)]; }
  // Counts a failure of `kind`; the first message is kept.
  void Record(FailureKind kind, const std::string& message);
  // Failed connections, requests or cycles of any kind, and dropped idle connections.
  uint64_t errors() const;
  bool complete() const { return !interrupted && !out_of_time; }
  // 7 on any mismatch, else 130 when interrupted, 6 when --max-time ended
  // the run, 1 for any other failure, 0 when all went well.
  int ExitStatus() const;
};

struct ProbeResult {
  FailureKind failure = FailureKind::kNone;
  std::string message;  // why it failed, complete
  std::optional<MismatchReport> mismatch;  // the first wrong byte of a wrong answer
};
// Checks with one round trip on a connected socket that the server answers as
// expected, before any load: a wrong server is named at once.
ProbeResult Probe(BorrowedFd fd, const SocketAddress& address, std::chrono::nanoseconds timeout, Expect expect);

// Milliseconds for poll(2) until `deadline`: 0 once it passed, at most a minute.
int PollMs(LoadClock::time_point deadline);

// The load that runs a configuration, on the load engine.
LoadOptions LoadOptionsFor(const BenchConfig& config);

// Runs the benchmark. Blocks SIGINT and SIGTERM to take them as a request to
// stop and report what was measured.
BenchResult RunBench(const BenchConfig& config);

}  // namespace rot13d::client
