// Open connections per client address, shared by every worker (max_connections_per_address).
//
// A fixed open-addressing table in a shared mapping of a memfd, like the
// counter table (common/stats.h). An entry is one worker's count of one
// address: each worker writes only its own entries, so the hot path takes no
// lock and no locked instruction but one sequentially consistent store. The
// total of an address is the sum of its entries in its probe window.
//
// The limit is never exceeded: a worker counts the new connection first and
// then adds up the address's entries (a store-load pair in the sequentially
// consistent order), so of two workers admitting the last place at once at
// least one sees the other and refuses. The price is that such a race may
// refuse one connection too many.
//
// A worker that dies leaves its entries behind; the supervisor releases them
// (ReleaseOwner) before it hands the worker's counter slot to another. A
// per-owner count of what it holds, written before the entries, says whether
// there is anything to look for, so a worker that ended cleanly costs no scan.
//
// When an address's probe window has no room, its connection is admitted
// uncounted (fail open) and counted in full(): refusing clients because the
// table is full would be the limit turning into an outage.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/result.h"
#include "common/unique_fd.h"

namespace rot13d {

// A client's address as 16 bytes of IPv6; IPv4 (plain or IPv4-mapped) as ::ffff:a.b.c.d.
struct ClientAddress {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const ClientAddress&) const = default;
};

// The address of an IPv4 or IPv6 peer; nullopt for anything else (unix sockets).
std::optional<ClientAddress> ClientAddressOf(const sockaddr* sa, socklen_t len);

// The layout of the shared table, for a supervisor that adopts the table of
// an older image (supervisor/handover.h): bump it whenever it changes.
inline constexpr uint32_t kAddressTableLayout = 1;

class AddressTable {
 public:
  // Entries: a power of two. Owners: the workers' counter slots.
  static constexpr size_t kDefaultEntries = size_t{1} << 20;
  // How far from its home an address's entries may lie.
  static constexpr size_t kProbeWindow = 32;
  static constexpr uint32_t kNoEntry = UINT32_MAX;

  static Result<AddressTable> Create(size_t entries, size_t owners);
  // Maps the table another image created, as it is.
  static Result<AddressTable> Adopt(UniqueFd fd, size_t entries, size_t owners);
  AddressTable(AddressTable&& other) noexcept;
  AddressTable& operator=(AddressTable&& other) noexcept;
  AddressTable(const AddressTable&) = delete;
  AddressTable& operator=(const AddressTable&) = delete;
  ~AddressTable();

  enum class Verdict : uint8_t {
    kAdmitted,  // counted: Release(entry, owner) when it closes
    kOverLimit,  // not counted: close it
    kUncounted,  // no room in the table: admitted without being counted
  };
  struct Admission {
    Verdict verdict = Verdict::kUncounted;
    uint32_t entry = kNoEntry;  // with kAdmitted
  };
  // A new connection of `owner` from `address`, under `limit` (> 0) open ones per address.
  Admission Admit(const ClientAddress& address, uint32_t owner, uint32_t limit);
  // The connection Admit counted in `entry` closed.
  void Release(uint32_t entry, uint32_t owner);
  // In the supervisor, once `owner` is dead: forgets its connections; returns how many.
  uint64_t ReleaseOwner(uint32_t owner);

  // Open connections from `address`, over every owner.
  uint32_t Count(const ClientAddress& address) const;
  // Since the table was made: connections refused over the limit, and admitted uncounted.
  uint64_t refused() const;
  uint64_t uncounted() const;

  size_t entries() const { return entries_; }
  size_t owners() const { return owners_; }
  BorrowedFd fd() const { return fd_.borrow(); }

 private:
  struct Header;
  struct Entry;
  AddressTable(UniqueFd fd, void* base, size_t entries, size_t owners)
      : fd_(std::move(fd)), base_(base), entries_(entries), owners_(owners) {}
  static size_t Bytes(size_t entries, size_t owners);
  static Result<void*> Map(BorrowedFd fd, size_t entries, size_t owners);
  Header& header() const;
  std::atomic<uint32_t>& held(uint32_t owner) const;
  Entry& at(size_t i) const;
  size_t Home(const ClientAddress& address) const;
  uint32_t Total(const ClientAddress& address) const;
  void Unmap();

  UniqueFd fd_;
  void* base_ = nullptr;
  size_t entries_ = 0;
  size_t owners_ = 0;
};

}  // namespace rot13d
