// Per-worker live counters in shared memory, mapped by the supervisor before it forks.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>

#include "common/result.h"
#include "common/unique_fd.h"

namespace rot13d {

// kUnused: never handed out. A new table reads as zeroes, and the supervisor
// hands out the lowest slot never used before only when no freed one is left,
// so the slots ever used are a prefix of the table and a reader of all slots
// stops at the first kUnused one: pages past it are never touched (reading a
// memfd's hole allocates the page). kFree: handed out before, free now.
enum class WorkerPhase : uint32_t { kUnused = 0, kBooting = 1, kAccepting = 2, kDraining = 3, kFree = 4 };

// How a connection ended, for the metrics and the connection log.
enum class CloseReason : uint8_t {
  kClientEof,    // the client half-closed and got everything it was owed
  kIdleTimeout,  // no traffic for idle_timeout
  kReset,        // the client reset it (or vanished: EPIPE)
  kShutdown,     // still open when its worker was stopped or killed at shutdown_timeout
  kError,        // anything else
};
inline constexpr size_t kCloseReasons = 5;
// "client_eof", "idle_timeout", "reset", "shutdown", "error": metric labels and log fields.
const char* CloseReasonName(CloseReason reason);

// Why a connection on a PROXY listener was closed before its header was complete.
enum class ProxyFailure : uint8_t {
  kUntrusted,  // from a source outside proxy_trusted: closed at accept
  kMalformed,  // not a header this listener takes
  kChecksum,   // a v2 header whose CRC32C did not match
  kTimeout,    // no complete header within proxy_header_timeout
  kTruncated,  // the client closed or reset it before the header's end
};
inline constexpr size_t kProxyFailures = 5;
// "untrusted", "malformed", "checksum", "timeout", "truncated": metric labels.
const char* ProxyFailureName(ProxyFailure failure);

// Upper bounds (seconds) of the connection-duration histogram's buckets; a
// last one, +Inf, follows.
inline constexpr double kDurationBounds[] = {0.001, 0.01, 0.1, 1, 10, 60, 600, 3600};
inline constexpr size_t kDurationBuckets = std::size(kDurationBounds) + 1;
// The bucket of a duration in microseconds.
size_t DurationBucket(uint64_t micros);

// A worker's counters in shared memory. Each worker is the only writer of its
// slot; the supervisor only reads (and resets a slot it hands out). The first
// cache line is what siblings read for accept balance; the counters are apart
// so that reading them never contends with it.
struct alignas(64) WorkerStats {
  std::atomic<uint32_t> phase{0};
  std::atomic<uint32_t> open_connections{0};
  std::atomic<int64_t> heartbeat_ns{0};  // CLOCK_MONOTONIC of the last loop turn
  // Read by sibling workers to balance accepts (see daemon/accept_balance.h).
  std::atomic<uint32_t> accepting{0};     // 1 while the worker watches its listeners
  // The share of the last busy window (AcceptBalance) its loop spent working
  // rather than waiting, in permille. It sits in what was padding, so the
  // layout stays 1: an older image's workers leave it 0, never busy.
  std::atomic<uint32_t> busy_permille{0};
  std::atomic<uint64_t> listener_key{0};  // which listening sockets it serves; 0 = none yet
  // 1 while it does not watch its listeners only because the balance holds it
  // back: nudged, it watches again. Not set while it is paused or cannot
  // watch (accepting is 0 then too). Also in what was padding.
  std::atomic<uint32_t> held{0};
  // 1 while its loop waits in epoll_wait: a heartbeat that is old then means
  // asleep, not stuck (the heartbeat is written once per loop turn).
  std::atomic<uint32_t> waiting{0};

  alignas(64) std::atomic<uint64_t> connections_total{0};  // accepted
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> accept_errors{0};
  std::atomic<uint64_t> closed[kCloseReasons]{};
  std::atomic<uint64_t> duration_buckets[kDurationBuckets]{};
  std::atomic<uint64_t> duration_sum_us{0};
  std::atomic<uint64_t> proxy_errors[kProxyFailures]{};

  void SetPhase(WorkerPhase p) { phase.store(static_cast<uint32_t>(p), std::memory_order_release); }
  WorkerPhase Phase() const { return static_cast<WorkerPhase>(phase.load(std::memory_order_acquire)); }
  // Zeroes every counter, for a slot handed to a new worker. The phase is
  // left alone: a sibling's scan must never see a slot in use as kUnused.
  void Reset();
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Counters added up over workers, those gone included: what the metrics
// report, monotonic across worker restarts and reloads.
struct CounterTotals {
  uint64_t connections_total = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t accept_errors = 0;
  uint64_t closed[kCloseReasons] = {};
  uint64_t duration_buckets[kDurationBuckets] = {};
  uint64_t duration_sum_us = 0;
  uint64_t proxy_errors[kProxyFailures] = {};

  void Add(const WorkerStats& s);
  void Add(const CounterTotals& t);
};

// Single-writer increment: a plain load and store, no locked instruction.
template <typename T>
inline void Bump(std::atomic<T>& counter, T by) {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// The layout of WorkerStats, for a supervisor that adopts the table of an
// older image (supervisor/handover.h): bump it whenever the struct changes.
inline constexpr uint32_t kStatsLayout = 1;

// A fixed table of slots in a shared mapping of a memfd. Forked workers
// share the mapping; the descriptor lets a re-executed supervisor map the
// same table again (supervisor/handover.h). Only the pages of slots in use
// are ever allocated (see WorkerPhase::kUnused).
class StatsTable {
 public:
  static Result<StatsTable> Create(size_t slots);
  // Maps the table another image created (its slots as they are).
  static Result<StatsTable> Adopt(UniqueFd fd, size_t slots);
  StatsTable(StatsTable&& other) noexcept;
  StatsTable& operator=(StatsTable&& other) noexcept;
  StatsTable(const StatsTable&) = delete;
  StatsTable& operator=(const StatsTable&) = delete;
  ~StatsTable();

  size_t size() const { return size_; }
  BorrowedFd fd() const { return fd_.borrow(); }
  WorkerStats& at(size_t i) { return slots_[i]; }
  const WorkerStats& at(size_t i) const { return slots_[i]; }

 private:
  StatsTable(UniqueFd fd, WorkerStats* slots, size_t size) : fd_(std::move(fd)), slots_(slots), size_(size) {}
  static Result<WorkerStats*> Map(BorrowedFd fd, size_t slots);
  UniqueFd fd_;
  WorkerStats* slots_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rot13d
