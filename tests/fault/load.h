// The fault suite's verifying load: many connections that check every byte, and what they saw.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tests/blackbox/harness.h"

namespace rot13d::fault {

using blackbox::Clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

// Pseudo-random bytes (every value 0..255 occurs) and their rot13, stored twice
// over so that any window of up to kPeriod bytes is contiguous. A stream is a
// start offset into it: byte i of the stream is Data(start)[i], which lets a
// client verify what comes back without keeping what it sent.
class Pattern {
 public:
  static constexpr size_t kPeriod = (size_t{1} << 20) + 4093;  // not a power of two
  static const Pattern& Get();

  const uint8_t* Data(uint64_t offset) const { return plain_.data() + offset % kPeriod; }
  const uint8_t* Expected(uint64_t offset) const { return rotated_.data() + offset % kPeriod; }
  // How many of got[0..n) differ from the expected answer at offset (n <= kPeriod).
  size_t Mismatches(const uint8_t* got, size_t n, uint64_t offset) const;

 private:
  Pattern();
  std::vector<uint8_t> plain_, rotated_;
};

struct LoadOptions {
  std::string address;            // "127.0.0.1:PORT"
  int connections = 8;            // sessions open at once
  int threads = 1;                // each runs an epoll loop over its share of the sessions
  uint64_t min_bytes = 1024;      // each session sends a random length in [min_bytes, max_bytes],
  uint64_t max_bytes = 64 * 1024; // then half-closes and expects exactly that much back, then EOF
  // Request/response: send `chunk` bytes, wait for all of them back (verified),
  // think for up to `think`, repeat. streaming = send and receive at once, as fast as possible.
  bool streaming = false;
  size_t chunk = 16 * 1024;
  milliseconds think{0};
  milliseconds pause_between_sessions{0};
  uint64_t sessions_per_connection = 0;  // 0 = keep starting new sessions until Stop()
  milliseconds stall_timeout{10000};     // no progress this long = a stall (counted, session dropped)
  int rcvbuf = 0;                        // SO_RCVBUF / SO_SNDBUF of each socket, 0 = default
  int sndbuf = 0;
  uint64_t seed = 1;
};

enum class FailureKind { kRefused, kConnectError, kReset, kEarlyEof, kCorrupt, kStall };
const char* FailureName(FailureKind kind);

struct Failure {
  FailureKind kind;
  Clock::time_point at;
  uint16_t local_port = 0;  // the client's port: names the connection in /proc/net/tcp
  bool served = false;      // the session had received verified bytes before
  uint64_t received = 0;
  std::string detail;
};

struct LoadStats {
  uint64_t sessions_started = 0;
  uint64_t sessions_completed = 0;  // every byte back, verified, then EOF
  uint64_t refused = 0;
  uint64_t connect_errors = 0;      // other connect failures (timeouts, EADDRNOTAVAIL...)
  uint64_t resets = 0;              // ECONNRESET / EPIPE on an open connection
  uint64_t early_eofs = 0;          // EOF before everything came back
  uint64_t corrupt_bytes = 0;       // bytes that came back wrong (or extra)
  uint64_t stalls = 0;
  uint64_t bytes_verified = 0;
  uint64_t requests = 0;            // request/response round trips completed
  uint64_t failures() const { return refused + connect_errors + resets + early_eofs + stalls + (corrupt_bytes > 0); }
  std::string Summary() const;
};

// Round-trip latencies of request/response sessions, in microseconds.
struct LatencySummary {
  uint64_t count = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

class LoadEngine {
 public:
  explicit LoadEngine(LoadOptions options);
  ~LoadEngine();
  LoadEngine(const LoadEngine&) = delete;
  LoadEngine& operator=(const LoadEngine&) = delete;

  void Start();
  // Stops the threads and closes every connection; idempotent.
  void Stop();
  // Waits until every session ran its sessions_per_connection (only when that is set).
  bool WaitDone(milliseconds timeout);

  LoadStats Stats() const;
  std::vector<Failure> Failures() const;
  // Latencies so far (safe while running).
  LatencySummary Latency() const;
  // Client ports of open connections that have received verified bytes.
  std::vector<uint16_t> ServedPorts() const;

  struct Shared;  // counters and state the threads share (load.cc)

 private:
  LoadOptions options_;
  std::unique_ptr<Shared> shared_;
  std::vector<std::thread> threads_;
  bool started_ = false;
};

// ---------------------------------------------------------------- processes

// Children of `parent` that are alive (not zombies), from /proc/PID/task/PID/children:
// one small read, cheap enough to poll every millisecond or two.
std::vector<pid_t> LiveChildren(pid_t parent);
// Entries of /proc/PID/fd, or -1.
int OpenFdCount(pid_t pid);
// utime + stime of the process, in seconds, or -1.
double CpuSeconds(pid_t pid);
// VmHWM (peak RSS) in bytes, or -1.
long PeakRssBytes(pid_t pid);
using blackbox::ServerSideOwners;

// Moves the calling thread into a new network namespace with only loopback (up);
// daemons and threads it starts meanwhile live there too. The destructor moves
// the thread back. In there the test may set the namespace's own TCP sysctls
// without touching anyone else's loopback.
class PrivateNetwork {
 public:
  PrivateNetwork();
  ~PrivateNetwork();
  PrivateNetwork(const PrivateNetwork&) = delete;
  PrivateNetwork& operator=(const PrivateNetwork&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  // Writes /proc/sys/<name> of this namespace, e.g. ("net/ipv4/tcp_wmem", "4096 8192 16384").
  bool Sysctl(const std::string& name, const std::string& value);

 private:
  blackbox::Fd original_;
  bool ok_ = false;
  std::string error_;
};

// Raises RLIMIT_NOFILE of this process (and so of daemons it starts) to n, and
// sets RLIMIT_CORE to 0 so workers aborted on purpose leave no core files.
void PrepareProcessLimits(rlim_t nofile = 65536);

// ---------------------------------------------------------------- log

struct LogLine {
  Clock::time_point at;  // converted from the line's wall-clock stamp to the steady clock
  double wall_seconds = 0;  // seconds since the epoch, ms resolution
  pid_t pid = 0;
  std::string level;
  std::string message;
};
// Parses the daemon's stderr log ("YYYY-mm-dd HH:MM:SS.mmm rot13d[PID] level: message").
std::vector<LogLine> ParseLog(const std::string& text);

// ---------------------------------------------------------------- figures

// A test's figures: each is recorded as a test property (in the XML report) and
// all are printed on one line "FIGURES: Suite.Test: key=value, ...".
class Figures {
 public:
  Figures();
  ~Figures();  // emits, if Emit() was not called (a failed ASSERT still reports what it had)
  Figures& Add(const std::string& key, const std::string& value);
  Figures& Add(const std::string& key, const char* value) { return Add(key, std::string(value)); }
  template <typename T>
    requires std::is_arithmetic_v<T>
  Figures& Add(const std::string& key, T value) {
    if constexpr (std::is_floating_point_v<T>) return Add(key, FormatDouble(static_cast<double>(value)));
    else return Add(key, std::to_string(value));
  }
  Figures& AddLoad(const std::string& prefix, const LoadStats& s);
  void Emit();

 private:
  static std::string FormatDouble(double v);
  std::vector<std::pair<std::string, std::string>> items_;
  Clock::time_point start_ = Clock::now();
  bool emitted_ = false;
};

double Seconds(Clock::duration d);
double Millis(Clock::duration d);

}  // namespace rot13d::fault
