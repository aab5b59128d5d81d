#include "common/address_table.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include <vector>

namespace rot13d {
namespace {

using Verdict = AddressTable::Verdict;

ClientAddress V4(const char* text) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  EXPECT_EQ(inet_pton(AF_INET, text, &in.sin_addr), 1);
  return *ClientAddressOf(reinterpret_cast<const sockaddr*>(&in), sizeof in);
}

ClientAddress V6(const char* text) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  EXPECT_EQ(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
  return *ClientAddressOf(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
}

AddressTable Table(size_t entries = 1024, size_t owners = 8) {
  auto t = AddressTable::Create(entries, owners);
  EXPECT_TRUE(t) << t.error().ToString();
  return std::move(*t);
}

TEST(ClientAddressTest, Ipv4MappedIpv6IsTheIpv4Address) {
  EXPECT_EQ(V6("::ffff:127.0.0.1"), V4("127.0.0.1"));
  EXPECT_NE(V6("::1"), V4("127.0.0.1"));
  EXPECT_NE(V4("127.0.0.2"), V4("127.0.0.1"));
  EXPECT_NE(V6("2001:db8::1"), V6("2001:db8::2"));
}

TEST(ClientAddressTest, UnixSocketsHaveNone) {
  sockaddr_storage ss{};
  ss.ss_family = AF_UNIX;
  EXPECT_FALSE(ClientAddressOf(reinterpret_cast<const sockaddr*>(&ss), sizeof ss));
}

TEST(AddressTableTest, AdmitsUpToTheLimitAcrossOwners) {
  AddressTable t = Table();
  ClientAddress a = V4("192.0.2.1");
  std::vector<AddressTable::Admission> held;
  for (uint32_t owner : {0u, 1u, 0u}) {
    held.push_back(t.Admit(a, owner, 3));
    EXPECT_EQ(held.back().verdict, Verdict::kAdmitted);
  }
  EXPECT_EQ(t.Count(a), 3u);
  EXPECT_EQ(t.Admit(a, 2, 3).verdict, Verdict::kOverLimit);
  EXPECT_EQ(t.Admit(a, 0, 3).verdict, Verdict::kOverLimit);
  EXPECT_EQ(t.Count(a), 3u) << "a refusal leaves no count behind";
  EXPECT_EQ(t.refused(), 2u);
  // Another address is not affected.
  EXPECT_EQ(t.Admit(V4("192.0.2.2"), 2, 3).verdict, Verdict::kAdmitted);
}

TEST(AddressTableTest, ReleaseFreesAPlace) {
  AddressTable t = Table();
  ClientAddress a = V6("2001:db8::7");
  auto first = t.Admit(a, 0, 2);
  auto second = t.Admit(a, 1, 2);
  ASSERT_EQ(second.verdict, Verdict::kAdmitted);
  EXPECT_EQ(t.Admit(a, 0, 2).verdict, Verdict::kOverLimit);
  t.Release(first.entry, 0);
  EXPECT_EQ(t.Count(a), 1u);
  EXPECT_EQ(t.Admit(a, 0, 2).verdict, Verdict::kAdmitted);
  EXPECT_EQ(t.Count(a), 2u);
}

TEST(AddressTableTest, OneOwnerKeepsOneEntryPerAddress) {
  AddressTable t = Table();
  ClientAddress a = V4("198.51.100.9");
  auto first = t.Admit(a, 3, 10);
  auto second = t.Admit(a, 3, 10);
  EXPECT_EQ(first.entry, second.entry);
  t.Release(first.entry, 3);
  t.Release(second.entry, 3);
  EXPECT_EQ(t.Count(a), 0u);
  EXPECT_EQ(t.ReleaseOwner(3), 0u) << "nothing held: no scan, nothing released";
}

// The release scan reads only what was written: a full-size table stays as
// small as its entries in use (a read of a memfd's hole allocates the page).
TEST(AddressTableTest, ReleasingADeadOwnerTouchesOnlyPagesInUse) {
  AddressTable t = Table(AddressTable::kDefaultEntries, 64);
  std::vector<ClientAddress> clients = {V4("198.51.100.1"), V4("198.51.100.2"), V6("2001:db8::7")};
  for (const ClientAddress& a : clients) ASSERT_EQ(t.Admit(a, 9, 10).verdict, Verdict::kAdmitted);
  auto allocated = [&] {
    struct stat st{};
    EXPECT_EQ(fstat(t.fd().get(), &st), 0);
    return static_cast<int64_t>(st.st_blocks) * 512;
  };
  int64_t before = allocated();
  EXPECT_EQ(t.ReleaseOwner(9), 3u);
  EXPECT_EQ(allocated(), before) << "the scan allocated the table's holes";
  EXPECT_LT(allocated(), 1 << 20);
  for (const ClientAddress& a : clients) EXPECT_EQ(t.Count(a), 0u);
}

TEST(AddressTableTest, ADeadOwnersCountsAreReleased) {
  AddressTable t = Table();
  ClientAddress a = V4("203.0.113.5");
  for (int i = 0; i < 4; ++i) ASSERT_EQ(t.Admit(a, 5, 6).verdict, Verdict::kAdmitted);
  auto survivor = t.Admit(a, 6, 6);
  ASSERT_EQ(survivor.verdict, Verdict::kAdmitted);
  ASSERT_EQ(t.Admit(V4("203.0.113.6"), 5, 6).verdict, Verdict::kAdmitted);
  EXPECT_EQ(t.ReleaseOwner(5), 5u);
  EXPECT_EQ(t.Count(a), 1u) << "the sibling's connection still counts";
  EXPECT_EQ(t.Count(V4("203.0.113.6")), 0u);
  EXPECT_EQ(t.ReleaseOwner(5), 0u);
  // Its slot is free for a new worker, which starts from nothing.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(t.Admit(a, 5, 6).verdict, Verdict::kAdmitted);
  EXPECT_EQ(t.Admit(a, 5, 6).verdict, Verdict::kOverLimit);
}

// In a tiny table every address shares one window: colliding addresses keep
// their own counts, and a window without room admits uncounted.
TEST(AddressTableTest, CollisionsAndAFullTable) {
  const size_t entries = AddressTable::kProbeWindow;
  AddressTable t = Table(entries, 4);
  std::vector<AddressTable::Admission> held;
  for (uint32_t i = 0; i < entries; ++i) {
    held.push_back(t.Admit(ClientAddress{0, i}, i % 2, 1));
    ASSERT_EQ(held.back().verdict, Verdict::kAdmitted) << i;
  }
  for (uint32_t i = 0; i < entries; ++i) EXPECT_EQ(t.Count(ClientAddress{0, i}), 1u) << i;
  EXPECT_EQ(t.Admit(ClientAddress{0, 0}, 0, 1).verdict, Verdict::kOverLimit);
  EXPECT_EQ(t.Admit(ClientAddress{1, 0}, 0, 1).verdict, Verdict::kUncounted);
  EXPECT_EQ(t.uncounted(), 1u);
  // A released entry is room again, for any address.
  t.Release(held[7].entry, 1);
  EXPECT_EQ(t.Admit(ClientAddress{1, 0}, 2, 1).verdict, Verdict::kAdmitted);
  EXPECT_EQ(t.Count(ClientAddress{1, 0}), 1u);
  EXPECT_EQ(t.Count(ClientAddress{0, 8}), 1u) << "entries beyond the released one are still found";
}

TEST(AddressTableTest, AdoptSeesTheSameCounts) {
  AddressTable t = Table(64, 4);
  ClientAddress a = V4("10.1.2.3");
  ASSERT_EQ(t.Admit(a, 1, 5).verdict, Verdict::kAdmitted);
  UniqueFd copy(dup(t.fd().get()));
  auto adopted = AddressTable::Adopt(std::move(copy), 64, 4);
  ASSERT_TRUE(adopted) << adopted.error().ToString();
  EXPECT_EQ(adopted->Count(a), 1u);
  EXPECT_EQ(adopted->ReleaseOwner(1), 1u);
  EXPECT_EQ(t.Count(a), 0u);
  EXPECT_FALSE(AddressTable::Adopt(UniqueFd(dup(t.fd().get())), 128, 4)) << "another size is refused";
}

TEST(AddressTableTest, SizeMustBeAPowerOfTwo) { EXPECT_FALSE(AddressTable::Create(1000, 4)); }

}  // namespace
}  // namespace rot13d
