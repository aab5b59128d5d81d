#include "client/args.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

namespace rot13d::client {

namespace {

struct Unit {
  std::string_view name;
  double nanoseconds;
};
// Largest first: FormatDuration takes the first that fits.
constexpr Unit kUnits[] = {{"h", 3600e9}, {"m", 60e9}, {"s", 1e9}, {"ms", 1e6}, {"us", 1e3}};

}  // namespace

Result<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  double scale = unit.empty() ? 1e9 : 0;
  for (const Unit& u : kUnits) {
    if (unit == u.name) scale = u.nanoseconds;
  }
  double ns = value * scale;
  if (text.empty() || ec != std::errc() || scale == 0 || !std::isfinite(value) || value < 0 ||
      ns > 366.0 * 86400 * 1e9) {
    return Err() << "invalid duration \"" << text << "\" (expected e.g. 10s, 500ms, 2m, or seconds: 10, 0.5)";
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(ns)));
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

std::string FormatDuration(std::chrono::nanoseconds d) {
  const double ns = static_cast<double>(d.count());
  char buf[32];
  for (const Unit& u : kUnits) {
    // The largest unit that says it in whole tenths ("1.5s", not "1500ms"),
    // or in whole hours or minutes ("90s", not "1.5m").
    double value = ns / u.nanoseconds;
    double tenths = std::round(value * 10);
    bool exact = std::fabs(value * 10 - tenths) < 1e-6 && (u.nanoseconds < 60e9 || std::fmod(tenths, 10) == 0);
    if (value >= 1 && exact) {
      std::snprintf(buf, sizeof buf, "%g%s", tenths / 10, std::string(u.name).c_str());
      return buf;
    }
  }
  std::snprintf(buf, sizeof buf, "%gs", ns / 1e9);
  return buf;
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
