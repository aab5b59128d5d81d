#include "supervisor/status_line.h"

#include <sstream>

#include "common/log.h"

namespace rot13d::supervisor {

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::ostringstream s;
  s.precision(u == 0 ? 0 : 1);
  s << std::fixed << v << ' ' << units[u];
  return s.str();
}

std::string FormatStatus(const StatusFigures& f) {
  std::string line = Count(f.workers, "worker") + " (generation " + std::to_string(f.generation) + "); " +
                     Count(f.open_connections, "open connection") + "; " + std::to_string(f.connections_served) +
                     " served, " + HumanBytes(f.bytes) + "; last reload: " + f.last_reload;
  return f.stopping ? "stopping; " + line : line;
}

}  // namespace rot13d::supervisor
