// The one-line status the supervisor keeps in `systemctl status` (STATUS=).
#pragma once

#include <cstdint>
#include <string>

namespace rot13d::supervisor {

struct StatusFigures {
  unsigned workers = 0;  // live workers of the serving generation
  uint64_t generation = 0;
  uint64_t open_connections = 0;
  uint64_t connections_served = 0;
  uint64_t bytes = 0;
  std::string last_reload = "none";
  bool stopping = false;
};

// "2 workers (generation 3); 17 open connections; 10342 served, 1.2 GiB; last reload: ok (generation 3)".
std::string FormatStatus(const StatusFigures& f);

// "0 B", "1023 B", "1.0 KiB", "1.2 GiB".
std::string HumanBytes(uint64_t bytes);

}  // namespace rot13d::supervisor
