// The fault suite's helpers: processes, a private network, the daemon's log, figures, and
// the names of the load engine (client/load.h) its tests use.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "client/load.h"
#include "tests/blackbox/harness.h"

namespace rot13d::fault {

using blackbox::Clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

// The load itself runs on rot13-bench's engine (client/load.h).
using client::Failure;
using client::FailureKind;
using client::LoadEngine;
using client::LoadOptions;
using client::LoadStats;
using client::Pattern;

// Latencies of a load, in milliseconds, for figures and bounds.
struct LatencySummary {
  uint64_t count = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};
LatencySummary Summarize(const client::Histogram& nanoseconds);

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
// Parses the daemon's stderr log ("YYYY-mm-dd HH:MM:SS.mmm+ZZZZ rot13d[PID] level: message").
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
