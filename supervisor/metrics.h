// What the admin endpoint reports: a snapshot of the supervisor and its
// workers, rendered as Prometheus text (/metrics) and as JSON (/status).
// Pure functions over plain data: the supervisor fills the snapshot.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/stats.h"

namespace rot13d::supervisor {

// Why a worker was replaced, as the worker_restarts_total label says it.
enum class RestartReason : uint8_t { kCrash, kKilled, kExit, kHung, kBootFailure };
inline constexpr size_t kRestartReasons = 5;
const char* RestartReasonName(RestartReason reason);

// How a reload ended, as the reloads_total label says it.
// kUpgradeFailed: an upgrade's new binary failed its pre-flight or could not be executed.
enum class ReloadResult : uint8_t { kOk, kInvalid, kUnreadable, kCannotListen, kBootFailed, kUpgradeFailed };
inline constexpr size_t kReloadResults = 6;
const char* ReloadResultName(ReloadResult result);

struct WorkerSnapshot {
  pid_t pid = 0;
  int slot = 0;
  uint64_t generation = 0;
  std::string state;  // "booting", "accepting", "draining", "hung", "waiting" (no process)
  uint32_t open_connections = 0;
  uint64_t accepted = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  int restarts = 0;  // consecutive unexpected exits of its slot
};

struct Snapshot {
  std::string version;
  pid_t pid = 0;
  double start_time_seconds = 0;  // since the epoch
  double uptime_seconds = 0;
  uint64_t serving_generation = 0;
  uint64_t canary_generation = 0;  // 0: none
  bool stopping = false;
  std::string last_reload = "none";
  uint64_t reloads[kReloadResults] = {};
  uint64_t restarts[kRestartReasons] = {};
  CounterTotals totals;  // every worker's counters, those of workers gone included
  // max_connections_per_address (common/address_table.h): connections
  // refused over it, and those admitted uncounted for want of room.
  uint64_t refused_per_address = 0;
  uint64_t per_address_uncounted = 0;
  std::vector<WorkerSnapshot> workers;
};

// What the supervisor counts for the snapshot besides its workers' counters.
class Activity {
 public:
  void Count(ReloadResult r) { ++reloads_[static_cast<size_t>(r)]; }
  void Count(RestartReason r) { ++restarts_[static_cast<size_t>(r)]; }
  // A snapshot with these counts, the start time and the uptime filled in.
  supervisor::Snapshot Snapshot(const std::string& version, pid_t pid) const;

  // What an upgrade hands to the next image (supervisor/handover.h): the
  // counts and the start time, which the service keeps across it.
  struct Carried {
    uint64_t reloads[kReloadResults] = {};
    uint64_t restarts[kRestartReasons] = {};
    int64_t started_wall_ns = 0;    // CLOCK_REALTIME
    int64_t started_steady_ns = 0;  // CLOCK_MONOTONIC: the same clock in every image
  };
  Carried Carry() const;
  void Resume(const Carried& c);

 private:
  uint64_t reloads_[kReloadResults] = {};
  uint64_t restarts_[kRestartReasons] = {};
  std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// The Prometheus text exposition format, version 0.0.4; names rot13d_*, base units.
std::string RenderMetrics(const Snapshot& s);

// /status: the same as one JSON object.
std::string RenderStatusJson(const Snapshot& s);

// A JSON string literal of text (quotes, backslashes and controls escaped;
// bytes that are not UTF-8 as \u00XX).
std::string JsonString(std::string_view text);

}  // namespace rot13d::supervisor
