// The rot13 transform against a reference written out by hand, and every implementation against the byte one.
#include "common/rot13.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
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

// Each vector implementation on its own, not only the one this CPU dispatches
// to: the same sweep of byte values, lengths, alignments and guard bytes.
class Rot13ImplTest : public ::testing::TestWithParam<Rot13Impl> {
 protected:
  void SetUp() override {
    if (!GetParam().supported) {
      GTEST_SKIP() << "this CPU cannot run the " << GetParam().name << " implementation";
    }
  }
  void Run(uint8_t* data, size_t n) const { GetParam().fn(data, n); }
};

TEST_P(Rot13ImplTest, All256ValuesAtEveryPosition) {
  // Each value at every offset of a vector: 256 values rotated through the lanes.
  for (size_t shift = 0; shift < 64; ++shift) {
    std::vector<uint8_t> buf(256 + 64);
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i + shift);
    const std::vector<uint8_t> original = buf;
    Run(buf.data(), buf.size());
    for (size_t i = 0; i < buf.size(); ++i) {
      ASSERT_EQ(buf[i], Rot13Byte(original[i])) << "shift " << shift << " index " << i;
    }
  }
}

TEST_P(Rot13ImplTest, MatchesByteForAllLengthsAndAlignments) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> byte(0, 255);
  constexpr size_t kMaxLen = 320;
  constexpr size_t kMaxOffset = 63;
  constexpr size_t kGuard = 64;
  // 64-byte aligned storage, so offsets 0..63 are every alignment a vector can see.
  alignas(64) static uint8_t buf[kGuard + kMaxOffset + kMaxLen + kGuard];
  std::vector<uint8_t> original(sizeof buf);
  for (uint8_t& b : original) b = static_cast<uint8_t>(byte(rng));
  const char edges[] = "@AMNZ[`amnz{";
  for (size_t i = 0; i < sizeof edges - 1; ++i) original[kGuard + kMaxOffset + i * 5] = static_cast<uint8_t>(edges[i]);

  for (size_t offset = 0; offset <= kMaxOffset; ++offset) {
    for (size_t len = 0; len <= kMaxLen; ++len) {
      std::memcpy(buf, original.data(), sizeof buf);
      uint8_t* start = buf + kGuard + offset;
      Run(start, len);
      for (size_t i = 0; i < sizeof buf; ++i) {
        bool inside = buf + i >= start && buf + i < start + len;
        uint8_t want = inside ? Rot13Byte(original[i]) : original[i];
        if (buf[i] != want) {
          ADD_FAILURE() << "offset " << offset << " len " << len << " index " << i
                        << (inside ? " (inside)" : " (guard)") << ": got " << int{buf[i]} << ", want " << int{want};
          return;
        }
      }
    }
  }
}

TEST_P(Rot13ImplTest, RandomLargeBuffers) {
  std::mt19937_64 rng(7);
  for (size_t len : {size_t{4096}, size_t{65536}, size_t{65536 + 17}, size_t{1 << 20}, size_t{999983}}) {
    for (size_t offset : {size_t{0}, size_t{1}, size_t{31}}) {
      std::vector<uint8_t> original(len + offset);
      for (uint8_t& b : original) b = static_cast<uint8_t>(rng());
      std::vector<uint8_t> buf = original;
      Run(buf.data() + offset, len);
      for (size_t i = 0; i < buf.size(); ++i) {
        uint8_t want = i < offset ? original[i] : Rot13Byte(original[i]);
        ASSERT_EQ(buf[i], want) << "len " << len << " offset " << offset << " index " << i;
      }
    }
  }
}

std::string ImplName(const ::testing::TestParamInfo<Rot13Impl>& param_info) { return param_info.param.name; }

INSTANTIATE_TEST_SUITE_P(Each, Rot13ImplTest,
                         ::testing::ValuesIn(Rot13Implementations().begin(), Rot13Implementations().end()), ImplName);

TEST(Rot13, ListsScalarSse2AndAvx2WithScalarAlwaysSupported) {
  auto impls = Rot13Implementations();
  ASSERT_EQ(impls.size(), 3u);
  EXPECT_STREQ(impls[0].name, "scalar");
  EXPECT_TRUE(impls[0].supported);
  EXPECT_STREQ(impls[1].name, "sse2");
  EXPECT_STREQ(impls[2].name, "avx2");
#if defined(__x86_64__)
  EXPECT_TRUE(impls[1].supported) << "SSE2 is part of the x86-64 baseline";
  EXPECT_EQ(impls[2].supported, __builtin_cpu_supports("avx2") != 0);
#endif
}

TEST(Rot13, DispatchesToTheFastestSupported) {
  auto impls = Rot13Implementations();
  const char* want = "scalar";
  for (const Rot13Impl& impl : impls) {
    if (impl.supported) want = impl.name;
  }
  EXPECT_STREQ(Rot13ActiveName(), want);
}

}  // namespace
}  // namespace rot13d
