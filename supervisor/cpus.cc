#include "supervisor/cpus.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace rot13d::supervisor {

std::optional<double> ParseCpuMax(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string quota;
  long long period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  try {
    size_t used = 0;
    long long q = std::stoll(quota, &used);
    if (used != quota.size() || q <= 0) return std::nullopt;
    return static_cast<double>(q) / static_cast<double>(period);
  } catch (...) {
    return std::nullopt;
  }
}

namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The cgroup v2 path of this process ("0::/system.slice/rot13d.service").
std::optional<std::string> OwnCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return std::nullopt;
}

}  // namespace

int AutoWorkerCount() {
  int cpus = 1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  if (auto cgroup = OwnCgroup()) {
    std::string path = *cgroup;
    while (true) {
      if (auto text = ReadFile("/sys/fs/cgroup" + path + "/cpu.max")) {
        if (auto quota = ParseCpuMax(*text)) {
          cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(*quota))));
        }
      }
      if (path.empty() || path == "/") break;
      size_t slash = path.rfind('/');
      path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
    }
  }
  return cpus;
}

}  // namespace rot13d::supervisor
