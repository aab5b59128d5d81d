// PROXY protocol headers as a balancer sends them, built by the tests' own reference code.
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace rot13d::blackbox {

inline const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

// CRC32c, bit by bit: the test's own reference for the header's checksum.
inline uint32_t Crc32c(std::string_view data) {
  uint32_t crc = 0xFFFFFFFF;
  for (unsigned char b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
  }
  return ~crc;
}

inline std::string Be16(size_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)}; }

// A v2 PROXY header for TCP over IPv4 or IPv6, with an optional UNIQUE_ID and CRC32C.
inline std::string ProxyV2(int family, const char* source, const char* destination, uint16_t sport, uint16_t dport,
                           std::string_view unique_id = {}, bool crc = false) {
  std::string block(family == AF_INET ? 8 : 32, '\0');
  const size_t n = family == AF_INET ? 4 : 16;
  inet_pton(family, source, block.data());
  inet_pton(family, destination, block.data() + n);
  block += Be16(sport) + Be16(dport);
  if (!unique_id.empty()) block += std::string(1, '\x05') + Be16(unique_id.size()) + std::string(unique_id);
  if (crc) block += std::string("\x03\x00\x04\x00\x00\x00\x00", 7);
  std::string h = kSignature + "\x21" + (family == AF_INET ? "\x11" : "\x21") + Be16(block.size()) + block;
  if (crc) {
    uint32_t sum = Crc32c(h);
    for (int i = 0; i < 4; ++i) h[h.size() - 4 + static_cast<size_t>(i)] = static_cast<char>(sum >> (24 - 8 * i));
  }
  return h;
}

}  // namespace rot13d::blackbox
