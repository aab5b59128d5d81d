// Per-worker live counters in shared memory, mapped by the supervisor before it forks.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/result.h"

namespace rot13d {

enum class WorkerPhase : uint32_t { kFree = 0, kBooting = 1, kAccepting = 2, kDraining = 3 };

// One cache line per worker so workers never contend. Each worker is the only
// writer of its slot; the supervisor only reads (and resets a slot it hands out).
struct alignas(64) WorkerStats {
  std::atomic<uint32_t> phase{0};
  std::atomic<uint32_t> open_connections{0};
  std::atomic<uint64_t> connections_total{0};
  std::atomic<uint64_t> bytes_total{0};
  std::atomic<int64_t> heartbeat_ns{0};  // CLOCK_MONOTONIC of the last loop turn
  // Read by sibling workers to balance accepts (see daemon/worker.h).
  std::atomic<uint32_t> accepting{0};     // 1 while the worker watches its listeners
  std::atomic<uint64_t> listener_key{0};  // which listening sockets it serves; 0 = none yet

  void SetPhase(WorkerPhase p) { phase.store(static_cast<uint32_t>(p), std::memory_order_release); }
  WorkerPhase Phase() const { return static_cast<WorkerPhase>(phase.load(std::memory_order_acquire)); }
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(sizeof(WorkerStats) == 64, "one cache line per worker");

// Single-writer increment: a plain load and store, no locked instruction.
template <typename T>
inline void Bump(std::atomic<T>& counter, T by) {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// A fixed table of slots in a MAP_SHARED anonymous mapping.
class StatsTable {
 public:
  static Result<StatsTable> Create(size_t slots);
  StatsTable(StatsTable&& other) noexcept;
  StatsTable& operator=(StatsTable&& other) noexcept;
  StatsTable(const StatsTable&) = delete;
  StatsTable& operator=(const StatsTable&) = delete;
  ~StatsTable();

  size_t size() const { return size_; }
  WorkerStats& at(size_t i) { return slots_[i]; }
  const WorkerStats& at(size_t i) const { return slots_[i]; }

 private:
  StatsTable(WorkerStats* slots, size_t size) : slots_(slots), size_(size) {}
  WorkerStats* slots_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rot13d
