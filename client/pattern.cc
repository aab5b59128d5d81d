#include "client/pattern.h"

#include <algorithm>
#include <cstring>

#include "common/rot13.h"

namespace rot13d::client {

Pattern::Pattern(Expect expect) : sent_(2 * kPeriod), expected_(2 * kPeriod) {
  uint64_t state = 0x9e3779b97f4a7c15u;  // fixed: runs are reproducible
  for (size_t i = 0; i < kPeriod; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    uint8_t byte;
    if ((state & 3) != 0) {  // three in four bytes are letters, the rest any value
      byte = static_cast<uint8_t>(((state >> 8) & 1 ? 'a' : 'A') + (state >> 16) % 26);
    } else {
      byte = static_cast<uint8_t>(state >> 24);
    }
    sent_[i] = sent_[i + kPeriod] = byte;
  }
  // From the one-byte definition, not the daemon's vector code: a bug there
  // must show up as a mismatch, not be repeated here.
  expected_ = sent_;
  if (expect == Expect::kRot13) {
    for (uint8_t& b : expected_) b = Rot13Byte(b);
  }
}

size_t Pattern::Verify(uint64_t offset, const uint8_t* data, size_t n) const {
  size_t done = 0;
  while (done < n) {
    size_t chunk = std::min(n - done, kPeriod);
    const uint8_t* want = ExpectedAt(offset + done);
    if (std::memcmp(want, data + done, chunk) != 0) {
      for (size_t i = 0; i < chunk; ++i) {
        if (want[i] != data[done + i]) return done + i;
      }
    }
    done += chunk;
  }
  return n;
}

}  // namespace rot13d::client
