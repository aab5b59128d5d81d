#include "common/stats.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <new>
#include <utility>

namespace rot13d {

const char* CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kClientEof: return "client_eof";
    case CloseReason::kIdleTimeout: return "idle_timeout";
    case CloseReason::kReset: return "reset";
    case CloseReason::kShutdown: return "shutdown";
    case CloseReason::kError: return "error";
  }
  return "error";
}

const char* ProxyFailureName(ProxyFailure failure) {
  switch (failure) {
    case ProxyFailure::kUntrusted: return "untrusted";
    case ProxyFailure::kMalformed: return "malformed";
    case ProxyFailure::kChecksum: return "checksum";
    case ProxyFailure::kTimeout: return "timeout";
    case ProxyFailure::kTruncated: return "truncated";
  }
  return "malformed";
}

size_t DurationBucket(uint64_t micros) {
  size_t i = 0;
  while (i < std::size(kDurationBounds) && static_cast<double>(micros) > kDurationBounds[i] * 1e6) ++i;
  return i;
}

void WorkerStats::Reset() {
  open_connections.store(0);
  heartbeat_ns.store(0);
  accepting.store(0);
  busy_permille.store(0);
  held.store(0);
  waiting.store(0);
  listener_key.store(0);
  for (auto* c : {&connections_total, &bytes_received, &bytes_sent, &accept_errors, &duration_sum_us}) c->store(0);
  for (auto& c : closed) c.store(0);
  for (auto& c : duration_buckets) c.store(0);
  for (auto& c : proxy_errors) c.store(0);
}

void CounterTotals::Add(const WorkerStats& s) {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  connections_total += get(s.connections_total);
  bytes_received += get(s.bytes_received);
  bytes_sent += get(s.bytes_sent);
  accept_errors += get(s.accept_errors);
  for (size_t i = 0; i < kCloseReasons; ++i) closed[i] += get(s.closed[i]);
  for (size_t i = 0; i < kDurationBuckets; ++i) duration_buckets[i] += get(s.duration_buckets[i]);
  duration_sum_us += get(s.duration_sum_us);
  for (size_t i = 0; i < kProxyFailures; ++i) proxy_errors[i] += get(s.proxy_errors[i]);
}

void CounterTotals::Add(const CounterTotals& t) {
  connections_total += t.connections_total;
  bytes_received += t.bytes_received;
  bytes_sent += t.bytes_sent;
  accept_errors += t.accept_errors;
  for (size_t i = 0; i < kCloseReasons; ++i) closed[i] += t.closed[i];
  for (size_t i = 0; i < kDurationBuckets; ++i) duration_buckets[i] += t.duration_buckets[i];
  duration_sum_us += t.duration_sum_us;
  for (size_t i = 0; i < kProxyFailures; ++i) proxy_errors[i] += t.proxy_errors[i];
}

Result<WorkerStats*> StatsTable::Map(BorrowedFd fd, size_t slots) {
  size_t bytes = slots * sizeof(WorkerStats);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoErr() << "mmap of " << bytes << " bytes for worker counters";
  return static_cast<WorkerStats*>(p);
}

Result<StatsTable> StatsTable::Create(size_t slots) {
  UniqueFd fd(memfd_create("rot13d-worker-counters", MFD_CLOEXEC));
  if (!fd) return ErrnoErr() << "memfd_create for worker counters";
  if (ftruncate(fd.get(), static_cast<off_t>(slots * sizeof(WorkerStats))) != 0) {
    return ErrnoErr() << "sizing the worker counters to " << slots * sizeof(WorkerStats) << " bytes";
  }
  // Not written here: a new memfd reads as zeroes, every slot's default
  // value (kUnused), as in an adopted table; writing them would allocate all
  // of its pages (about 1 MiB) in every process.
  auto table = Map(fd.borrow(), slots);
  if (!table) return table.error();
  return StatsTable(std::move(fd), *table, slots);
}

Result<StatsTable> StatsTable::Adopt(UniqueFd fd, size_t slots) {
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoErr() << "fstat of the worker counters";
  if (static_cast<size_t>(st.st_size) != slots * sizeof(WorkerStats)) {
    return Err() << "the worker counters hold " << st.st_size << " bytes, not " << slots << " slots of "
                 << sizeof(WorkerStats);
  }
  auto table = Map(fd.borrow(), slots);
  if (!table) return table.error();
  return StatsTable(std::move(fd), *table, slots);
}

StatsTable::StatsTable(StatsTable&& other) noexcept
    : fd_(std::move(other.fd_)), slots_(std::exchange(other.slots_, nullptr)), size_(std::exchange(other.size_, 0)) {}

StatsTable& StatsTable::operator=(StatsTable&& other) noexcept {
  if (this != &other) {
    if (slots_) munmap(slots_, size_ * sizeof(WorkerStats));
    fd_ = std::move(other.fd_);
    slots_ = std::exchange(other.slots_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

StatsTable::~StatsTable() {
  if (slots_) munmap(slots_, size_ * sizeof(WorkerStats));
}

}  // namespace rot13d
