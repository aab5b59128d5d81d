#include "common/duration.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace rot13d {
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

}  // namespace rot13d
