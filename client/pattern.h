// What rot13-bench sends and what it expects back: a fixed pseudo-random byte pattern,
// mostly letters so that a wrong transform shows at once, and its expected answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rot13d::client {

// What the server is supposed to do to each byte.
enum class Expect { kRot13, kEcho };

class Pattern {
 public:
  // A prime period: a server that repeats or drops a block of any power-of-two
  // size still lands on different bytes.
  static constexpr size_t kPeriod = 262139;

  explicit Pattern(Expect expect);

  // The bytes to send from stream offset `offset` on: kPeriod of them are contiguous.
  const uint8_t* SendAt(uint64_t offset) const { return sent_.data() + offset % kPeriod; }
  // The bytes that should come back from stream offset `offset` on, likewise.
  const uint8_t* ExpectedAt(uint64_t offset) const { return expected_.data() + offset % kPeriod; }

  // Compares n received bytes, which the server sent from stream offset
  // `offset` on, with what they should be; returns the index of the first
  // wrong byte, or n when all are right.
  size_t Verify(uint64_t offset, const uint8_t* data, size_t n) const;

 private:
  // Two periods back to back, so any offset has a full period after it.
  std::vector<uint8_t> sent_;
  std::vector<uint8_t> expected_;
};

}  // namespace rot13d::client
