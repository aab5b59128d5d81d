// The rot13 transform: A-Z and a-z rotate by 13, every other byte value is unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rot13d {

// Transforms n bytes in place with the fastest implementation this CPU runs
// (chosen once, on the first call).
void Rot13InPlace(uint8_t* data, size_t n);

// One byte, the definition the fast paths are checked against.
constexpr uint8_t Rot13Byte(uint8_t c) {
  if (c >= 'a' && c <= 'z') return static_cast<uint8_t>('a' + (c - 'a' + 13) % 26);
  if (c >= 'A' && c <= 'Z') return static_cast<uint8_t>('A' + (c - 'A' + 13) % 26);
  return c;
}

// Every implementation built into this binary, for tests and benchmarks.
// `supported` is false when this CPU cannot run it (calling fn then is undefined).
struct Rot13Impl {
  const char* name;  // "scalar", "sse2", "avx2"
  void (*fn)(uint8_t* data, size_t n);
  bool supported;
};
std::span<const Rot13Impl> Rot13Implementations();

// The name of the implementation Rot13InPlace uses.
const char* Rot13ActiveName();

}  // namespace rot13d
