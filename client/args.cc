#include "client/args.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

namespace rot13d::client {

Result<std::chrono::nanoseconds> ParseSeconds(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value) ||
      value < 0 || value > 366.0 * 86400) {
    return Err() << "invalid duration \"" << text << "\" (expected seconds, e.g. 10 or 0.5)";
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(value * 1e9)));
}

Result<uint64_t> ParseSize(std::string_view text) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  auto bad = [&]() -> Error {
    return Err() << "invalid size \"" << text << "\" (expected bytes, e.g. 512, 64K, 16M, 1G)";
  };
  if (text.empty() || ec != std::errc()) return bad();
  std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
  unsigned shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      case 'b': case 'B': shift = 0; break;
      default: return bad();
    }
    std::string_view rest = suffix.substr(1);
    if (shift == 0 && !rest.empty()) return bad();
    if (shift != 0 && !(rest.empty() || rest == "B" || rest == "iB")) return bad();
  }
  if (value > (UINT64_MAX >> 1) >> shift) return bad();
  return value << shift;
}

Result<uint64_t> ParseCount(std::string_view text, uint64_t max) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > max) {
    return Err() << "invalid number \"" << text << "\" (expected 0.." << max << ")";
  }
  return value;
}

std::string FormatSeconds(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(d.count()) / 1e9);
  return buf;
}

}  // namespace rot13d::client
