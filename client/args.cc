#include "client/args.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

namespace rot13d::client {

namespace {

}  // namespace


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


std::string FormatSize(uint64_t bytes) {
  static constexpr std::pair<uint64_t, const char*> kSizes[] = {{1ull << 30, "GiB"}, {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
  char buf[32];
  for (const auto& [size, name] : kSizes) {
    if (bytes < size) continue;
    if (bytes % size == 0) {
      std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(bytes / size), name);
    } else {
      std::snprintf(buf, sizeof buf, "%.1f %s", static_cast<double>(bytes) / static_cast<double>(size), name);
    }
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%llu byte%s", static_cast<unsigned long long>(bytes), bytes == 1 ? "" : "s");
  return buf;
}

}  // namespace rot13d::client
