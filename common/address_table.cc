#include "common/address_table.h"

#include <endian.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

namespace rot13d {

// Entry::owner: never used (ends a probe), free again, or a worker's counter slot + 2.
namespace {
constexpr uint32_t kNever = 0;
constexpr uint32_t kFree = 1;
constexpr uint32_t OwnerTag(uint32_t owner) { return owner + 2; }
constexpr size_t kNone = SIZE_MAX;
}  // namespace

struct alignas(64) AddressTable::Header {
  uint32_t layout = kAddressTableLayout;
  uint64_t entries = 0;
  uint64_t owners = 0;
  uint64_t seed = 0;  // random: which addresses share a probe window is not the clients' to choose
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> uncounted{0};
};

struct AddressTable::Entry {
  std::atomic<uint32_t> owner{kNever};
  std::atomic<uint32_t> count{0};  // written by its owner only (and the supervisor once the owner is dead)
  std::atomic<uint64_t> hi{0};
  std::atomic<uint64_t> lo{0};
};
static_assert(sizeof(std::atomic<uint64_t>) == 8 && std::atomic<uint64_t>::is_always_lock_free);

std::optional<ClientAddress> ClientAddressOf(const sockaddr* sa, socklen_t len) {
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return ClientAddress{0, (uint64_t{0xffff} << 32) | ntohl(in->sin_addr.s_addr)};
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    uint64_t hi = 0, lo = 0;
    std::memcpy(&hi, in6->sin6_addr.s6_addr, 8);
    std::memcpy(&lo, in6->sin6_addr.s6_addr + 8, 8);
    return ClientAddress{be64toh(hi), be64toh(lo)};  // an IPv4-mapped one comes out as its IPv4 above
  }
  return std::nullopt;
}

size_t AddressTable::Bytes(size_t entries, size_t owners) {
  size_t held = (owners * sizeof(std::atomic<uint32_t>) + 63) / 64 * 64;
  return sizeof(Header) + held + entries * sizeof(Entry);
}

AddressTable::Header& AddressTable::header() const { return *static_cast<Header*>(base_); }

std::atomic<uint32_t>& AddressTable::held(uint32_t owner) const {
  return reinterpret_cast<std::atomic<uint32_t>*>(static_cast<char*>(base_) + sizeof(Header))[owner];
}

AddressTable::Entry& AddressTable::at(size_t i) const {
  auto* first = static_cast<char*>(base_) + Bytes(0, owners_);
  return reinterpret_cast<Entry*>(first)[i & (entries_ - 1)];
}

// splitmix64's finalizer over the address and the table's seed.
size_t AddressTable::Home(const ClientAddress& a) const {
  uint64_t x = (a.hi * 0x9e3779b97f4a7c15ull) ^ a.lo ^ header().seed;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return static_cast<size_t>(x ^ (x >> 31));
}

// Every entry of an address lies before the first never-used entry of its
// window: entries are claimed at the first vacant place and never return to never-used.
uint32_t AddressTable::Total(const ClientAddress& a) const {
  uint32_t total = 0;
  const size_t home = Home(a);
  for (size_t i = 0; i < kProbeWindow; ++i) {
    Entry& e = at(home + i);
    uint32_t owner = e.owner.load();
    if (owner == kNever) break;
    if (owner == kFree) continue;
    // The count first: its store came after the address's (see Admit).
    uint32_t count = e.count.load();
    if (count > 0 && e.hi.load(std::memory_order_relaxed) == a.hi && e.lo.load(std::memory_order_relaxed) == a.lo) {
      total += count;
    }
  }
  return total;
}

uint32_t AddressTable::Count(const ClientAddress& address) const { return Total(address); }

AddressTable::Admission AddressTable::Admit(const ClientAddress& a, uint32_t owner, uint32_t limit) {
  const uint32_t tag = OwnerTag(owner);
  // Written before any entry, so that the supervisor knows to look should this worker die now.
  std::atomic<uint32_t>& mine_held = held(owner);
  mine_held.store(mine_held.load(std::memory_order_relaxed) + 1);
  const size_t home = Home(a);
  size_t mine = kNone;
  // A vacant place can be taken by a sibling between the look and the claim: look again, a few times.
  for (int attempt = 0; attempt < 4 && mine == kNone; ++attempt) {
    size_t vacant = kNone;
    for (size_t i = 0; i < kProbeWindow; ++i) {
      Entry& e = at(home + i);
      uint32_t o = e.owner.load();
      if (o == kNever || o == kFree) {
        if (vacant == kNone) vacant = home + i;
        if (o == kNever) break;
      } else if (o == tag && e.hi.load(std::memory_order_relaxed) == a.hi &&
                 e.lo.load(std::memory_order_relaxed) == a.lo) {
        mine = home + i;
        break;
      }
    }
    if (mine != kNone || vacant == kNone) break;
    Entry& e = at(vacant);
    uint32_t expected = e.owner.load();
    if ((expected == kNever || expected == kFree) && e.owner.compare_exchange_strong(expected, tag)) {
      e.hi.store(a.hi, std::memory_order_relaxed);
      e.lo.store(a.lo, std::memory_order_relaxed);
      mine = vacant;
    }
  }
  if (mine == kNone) {
    mine_held.store(mine_held.load(std::memory_order_relaxed) - 1);
    header().uncounted.fetch_add(1, std::memory_order_relaxed);
    return {Verdict::kUncounted, kNoEntry};
  }
  auto entry = static_cast<uint32_t>(mine & (entries_ - 1));
  Entry& e = at(entry);
  // Counted, then added up: sequentially consistent, so that two workers
  // taking the last place at once cannot both miss the other.
  e.count.store(e.count.load(std::memory_order_relaxed) + 1);
  if (Total(a) > limit) {
    Release(entry, owner);
    header().refused.fetch_add(1, std::memory_order_relaxed);
    return {Verdict::kOverLimit, kNoEntry};
  }
  return {Verdict::kAdmitted, entry};
}

void AddressTable::Release(uint32_t entry, uint32_t owner) {
  Entry& e = at(entry);
  uint32_t count = e.count.load(std::memory_order_relaxed);
  if (count > 1) {
    e.count.store(count - 1, std::memory_order_release);
  } else {
    // Count 0 before the entry is free: whoever claims it next starts from 0.
    e.count.store(0, std::memory_order_relaxed);
    e.owner.store(kFree, std::memory_order_release);
  }
  std::atomic<uint32_t>& mine_held = held(owner);
  mine_held.store(mine_held.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

uint64_t AddressTable::ReleaseOwner(uint32_t owner) {
  if (owner >= owners_ || held(owner).load() == 0) return 0;
  const uint32_t tag = OwnerTag(owner);
  uint64_t released = 0;
  // Only the memfd's data: reading a hole of the mapping would allocate its
  // page, and a scan of all of it would give the table its full size (24 MiB
  // by default) for the supervisor's sake. A hole holds no entry of anyone's.
  const off_t first = static_cast<off_t>(Bytes(0, owners_));
  const off_t end = static_cast<off_t>(Bytes(entries_, owners_));
  for (off_t from = first; from < end;) {
    off_t data = lseek(fd_.get(), from, SEEK_DATA);
    if (data < 0) break;  // ENXIO: no data past `from`
    off_t hole = lseek(fd_.get(), data, SEEK_HOLE);
    if (hole < 0 || hole > end) hole = end;
    // The entries that begin in this data (one that begins in a hole was
    // never written: a written entry makes data of every page it spans).
    auto first_at = [&](off_t offset) {
      return (static_cast<size_t>(offset - first) + sizeof(Entry) - 1) / sizeof(Entry);
    };
    size_t lo = first_at(std::max(data, first));
    size_t hi = std::min(entries_, first_at(hole));
    for (size_t i = lo; i < hi; ++i) {
      Entry& e = at(i);
      if (e.owner.load(std::memory_order_relaxed) != tag) continue;
      released += e.count.load(std::memory_order_relaxed);
      e.count.store(0, std::memory_order_relaxed);
      e.owner.store(kFree, std::memory_order_release);
    }
    from = hole;
  }
  held(owner).store(0);
  return released;
}

uint64_t AddressTable::refused() const { return header().refused.load(std::memory_order_relaxed); }
uint64_t AddressTable::uncounted() const { return header().uncounted.load(std::memory_order_relaxed); }

Result<void*> AddressTable::Map(BorrowedFd fd, size_t entries, size_t owners) {
  size_t bytes = Bytes(entries, owners);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return ErrnoErr() << "mmap of " << bytes << " bytes for the per-address counts";
  return p;
}

Result<AddressTable> AddressTable::Create(size_t entries, size_t owners) {
  if (entries == 0 || (entries & (entries - 1)) != 0 || entries > UINT32_MAX) {
    return Err() << "the per-address table needs a power of two entries, not " << entries;
  }
  UniqueFd fd(memfd_create("rot13d-address-counts", MFD_CLOEXEC));
  if (!fd) return ErrnoErr() << "memfd_create for the per-address counts";
  size_t bytes = Bytes(entries, owners);
  // The file is sparse: pages cost memory once an entry on them is used.
  if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return ErrnoErr() << "sizing the per-address counts to " << bytes << " bytes";
  }
  auto base = Map(fd.borrow(), entries, owners);
  if (!base) return base.error();
  auto* h = new (*base) Header();
  h->entries = entries;
  h->owners = owners;
  if (getrandom(&h->seed, sizeof h->seed, GRND_NONBLOCK) != sizeof h->seed) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // early boot without entropy: still not the clients' choice
    h->seed = static_cast<uint64_t>(ts.tv_nsec) * 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(ts.tv_sec);
  }
  // The zeroes of a new file are already every atomic's initial value (never used, 0).
  return AddressTable(std::move(fd), *base, entries, owners);
}

Result<AddressTable> AddressTable::Adopt(UniqueFd fd, size_t entries, size_t owners) {
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return ErrnoErr() << "fstat of the per-address counts";
  if (static_cast<size_t>(st.st_size) != Bytes(entries, owners)) {
    return Err() << "the per-address counts hold " << st.st_size << " bytes, not " << entries << " entries for "
                 << owners << " owners";
  }
  auto base = Map(fd.borrow(), entries, owners);
  if (!base) return base.error();
  AddressTable table(std::move(fd), *base, entries, owners);
  const Header& h = table.header();
  if (h.layout != kAddressTableLayout || h.entries != entries || h.owners != owners) {
    return Err() << "the per-address counts have layout " << h.layout << "; this binary has " << kAddressTableLayout;
  }
  return table;
}

void AddressTable::Unmap() {
  if (base_) munmap(base_, Bytes(entries_, owners_));
  base_ = nullptr;
}

AddressTable::AddressTable(AddressTable&& other) noexcept
    : fd_(std::move(other.fd_)),
      base_(std::exchange(other.base_, nullptr)),
      entries_(std::exchange(other.entries_, 0)),
      owners_(std::exchange(other.owners_, 0)) {}

AddressTable& AddressTable::operator=(AddressTable&& other) noexcept {
  if (this != &other) {
    Unmap();
    fd_ = std::move(other.fd_);
    base_ = std::exchange(other.base_, nullptr);
    entries_ = std::exchange(other.entries_, 0);
    owners_ = std::exchange(other.owners_, 0);
  }
  return *this;
}

AddressTable::~AddressTable() { Unmap(); }

}  // namespace rot13d
