// The rot13 transform: A-Z and a-z rotate by 13, every other byte value is unchanged.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rot13d {

// Transforms n bytes in place.
void Rot13InPlace(uint8_t* data, size_t n);

// One byte, the definition the fast path is checked against.
constexpr uint8_t Rot13Byte(uint8_t c) {
  if (c >= 'a' && c <= 'z') return static_cast<uint8_t>('a' + (c - 'a' + 13) % 26);
  if (c >= 'A' && c <= 'Z') return static_cast<uint8_t>('A' + (c - 'A' + 13) % 26);
  return c;
}

}  // namespace rot13d
