#include "common/stats.h"

#include <sys/mman.h>

#include <new>
#include <utility>

namespace rot13d {

Result<StatsTable> StatsTable::Create(size_t slots) {
  size_t bytes = slots * sizeof(WorkerStats);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return ErrnoErr() << "mmap of " << bytes << " bytes for worker counters";
  auto* table = static_cast<WorkerStats*>(p);
  for (size_t i = 0; i < slots; ++i) new (&table[i]) WorkerStats();
  return StatsTable(table, slots);
}

StatsTable::StatsTable(StatsTable&& other) noexcept
    : slots_(std::exchange(other.slots_, nullptr)), size_(std::exchange(other.size_, 0)) {}

StatsTable& StatsTable::operator=(StatsTable&& other) noexcept {
  if (this != &other) {
    this->~StatsTable();
    slots_ = std::exchange(other.slots_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

StatsTable::~StatsTable() {
  if (slots_) munmap(slots_, size_ * sizeof(WorkerStats));
}

}  // namespace rot13d
