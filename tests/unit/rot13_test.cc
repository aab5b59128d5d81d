// The rot13 transform against a reference written out by hand, and the fast path against the byte one.
#include "common/rot13.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace rot13d {
namespace {

// The reference is spelled out letter by letter rather than computed, so a
// wrong formula in Rot13Byte cannot also be wrong here in the same way.
constexpr std::string_view kPlainUpper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr std::string_view kRotUpper = "NOPQRSTUVWXYZABCDEFGHIJKLM";
constexpr std::string_view kPlainLower = "abcdefghijklmnopqrstuvwxyz";
constexpr std::string_view kRotLower = "nopqrstuvwxyzabcdefghijklm";

std::array<uint8_t, 256> ReferenceTable() {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = static_cast<uint8_t>(i);  // identity for non-letters
  for (size_t i = 0; i < 26; ++i) {
    t[static_cast<uint8_t>(kPlainUpper[i])] = static_cast<uint8_t>(kRotUpper[i]);
    t[static_cast<uint8_t>(kPlainLower[i])] = static_cast<uint8_t>(kRotLower[i]);
  }
  return t;
}

TEST(Rot13, ByteMatchesHandWrittenReferenceForAll256Values) {
  const auto ref = ReferenceTable();
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(Rot13Byte(static_cast<uint8_t>(i)), ref[i]) << "byte " << i;
  }
}

TEST(Rot13, InPlaceMatchesHandWrittenReferenceForAll256Values) {
  const auto ref = ReferenceTable();
  std::array<uint8_t, 256> buf{};
  for (int i = 0; i < 256; ++i) buf[i] = static_cast<uint8_t>(i);
  Rot13InPlace(buf.data(), buf.size());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(buf[i], ref[i]) << "byte " << i;
}

TEST(Rot13, KnownText) {
  std::string s = "Hello, World! 123 @[`{ Why did the chicken cross the road?";
  Rot13InPlace(reinterpret_cast<uint8_t*>(s.data()), s.size());
  EXPECT_EQ(s, "Uryyb, Jbeyq! 123 @[`{ Jul qvq gur puvpxra pebff gur ebnq?");
}

TEST(Rot13, ZeroLengthTouchesNothing) {
  uint8_t sentinel = 'a';
  Rot13InPlace(&sentinel, 0);
  EXPECT_EQ(sentinel, 'a');
}

// A vectorised or word-at-a-time fast path has head/tail handling that depends
// on length and alignment; sweep both and compare with the per-byte definition.
// Guard bytes around the range catch writes outside it.
TEST(Rot13, InPlaceMatchesByteForAllLengthsAndAlignments) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> byte(0, 255);
  constexpr size_t kMaxLen = 300;
  constexpr size_t kMaxOffset = 63;
  constexpr size_t kGuard = 16;
  std::vector<uint8_t> original(kMaxOffset + kMaxLen + 2 * kGuard);
  for (uint8_t& b : original) b = static_cast<uint8_t>(byte(rng));
  // Make sure the boundary letters are in there, not just whatever the PRNG gives.
  const char edges[] = "AMNZamnz@[`{";
  for (size_t i = 0; i < sizeof edges - 1; ++i) original[kGuard + i * 7] = static_cast<uint8_t>(edges[i]);

  for (size_t offset = 0; offset <= kMaxOffset; ++offset) {
    for (size_t len = 0; len <= kMaxLen; ++len) {
      std::vector<uint8_t> buf = original;
      uint8_t* start = buf.data() + kGuard + offset;
      Rot13InPlace(start, len);
      for (size_t i = 0; i < buf.size(); ++i) {
        const uint8_t* p = buf.data() + i;
        bool inside = p >= start && p < start + len;
        uint8_t want = inside ? Rot13Byte(original[i]) : original[i];
        if (buf[i] != want) {
          ADD_FAILURE() << "offset " << offset << " len " << len << " index " << i << (inside ? " (inside)" : " (guard)")
                        << ": got " << int{buf[i]} << ", want " << int{want};
          return;
        }
      }
    }
  }
}

TEST(Rot13, ApplyingTwiceIsIdentity) {
  std::vector<uint8_t> data(4096 + 3);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + 7);
  const std::vector<uint8_t> original = data;
  Rot13InPlace(data.data(), data.size());
  EXPECT_NE(data, original);  // letters are in there, so the first pass changes something
  Rot13InPlace(data.data(), data.size());
  EXPECT_EQ(data, original);
}

}  // namespace
}  // namespace rot13d
