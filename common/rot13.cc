#include "common/rot13.h"

#include <array>

namespace rot13d {
namespace {

constexpr std::array<uint8_t, 256> MakeTable() {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = Rot13Byte(static_cast<uint8_t>(i));
  return t;
}

constexpr std::array<uint8_t, 256> kTable = MakeTable();

}  // namespace

void Rot13InPlace(uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) data[i] = kTable[data[i]];
}

}  // namespace rot13d
