#include "tests/fault/helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

namespace rot13d::fault {

using blackbox::Fd;

LatencySummary Summarize(const client::Histogram& nanoseconds) {
  auto ms = [](uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  LatencySummary out;
  out.count = nanoseconds.count();
  out.p50_ms = ms(nanoseconds.ValueAtQuantile(0.50));
  out.p99_ms = ms(nanoseconds.ValueAtQuantile(0.99));
  out.max_ms = ms(nanoseconds.max());
  return out;
}

// ---------------------------------------------------------------- processes

std::vector<pid_t> LiveChildren(pid_t parent) {
  std::string p = std::to_string(parent);
  std::ifstream in("/proc/" + p + "/task/" + p + "/children");
  if (!in) return blackbox::ChildPids(parent);
  std::vector<pid_t> out;
  pid_t pid = 0;
  while (in >> pid) {
    if (blackbox::ProcessAlive(pid)) out.push_back(pid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

int OpenFdCount(pid_t pid) {
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!dir) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

double CpuSeconds(pid_t pid) {
  std::string text = blackbox::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(text.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 0; i < 13 && in >> field; ++i) {
    if (i == 11) utime = std::stoull(field);
    if (i == 12) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long PeakRssBytes(pid_t pid) {
  std::istringstream in(blackbox::ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmHWM:")) return std::strtol(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return -1;
}

PrivateNetwork::PrivateNetwork() {
  original_.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original_.valid()) {
    error_ = std::string("open /proc/thread-self/ns/net: ") + std::strerror(errno);
    return;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    error_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
    original_.Reset();
    return;
  }
  // A new namespace's loopback is down.
  Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (!s.valid() || ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) {
    error_ = std::string("SIOCGIFFLAGS lo: ") + std::strerror(errno);
    return;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) {
    error_ = std::string("SIOCSIFFLAGS lo up: ") + std::strerror(errno);
    return;
  }
  ok_ = true;
}

PrivateNetwork::~PrivateNetwork() {
  if (original_.valid() && setns(original_.get(), CLONE_NEWNET) != 0) {
    ADD_FAILURE() << "setns back to the original network namespace: " << std::strerror(errno);
  }
}

bool PrivateNetwork::Sysctl(const std::string& name, const std::string& value) {
  if (!ok_) return false;
  std::ofstream out("/proc/sys/" + name);
  out << value << "\n";
  out.flush();
  if (!out) return false;
  // Read back: the kernel separates numbers with tabs.
  std::istringstream want(value), got(blackbox::ReadFile("/proc/sys/" + name));
  std::string a, b;
  while (want >> a) {
    if (!(got >> b) || a != b) return false;
  }
  return true;
}

void PrepareProcessLimits(rlim_t nofile) {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_max < nofile) r.rlim_max = nofile;  // root may raise the hard limit
  r.rlim_cur = nofile;
  if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
  rlimit core{0, 0};
  setrlimit(RLIMIT_CORE, &core);
}

// ---------------------------------------------------------------- log

std::vector<LogLine> ParseLog(const std::string& text) {
  std::vector<LogLine> out;
  timespec wall_now{};
  clock_gettime(CLOCK_REALTIME, &wall_now);
  auto steady_now = Clock::now();
  double wall_now_s = static_cast<double>(wall_now.tv_sec) + static_cast<double>(wall_now.tv_nsec) / 1e9;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    tm t{};
    int ms = 0, pid = 0, consumed = 0, zone_h = 0, zone_m = 0;
    char sign = '+';
    char level[16] = {};
    // "2026-12-01 12:54:04.091+0100 rot13d[812] info: ..."
    if (std::sscanf(line.c_str(), "%d-%d-%d %d:%d:%d.%3d%c%2d%2d rot13d[%d] %15[a-z]: %n", &t.tm_year, &t.tm_mon,
                    &t.tm_mday, &t.tm_hour, &t.tm_min, &t.tm_sec, &ms, &sign, &zone_h, &zone_m, &pid, level,
                    &consumed) < 12 ||
        consumed == 0) {
      continue;
    }
    t.tm_year -= 1900;
    t.tm_mon -= 1;
    const int offset = (sign == '-' ? -1 : 1) * (zone_h * 3600 + zone_m * 60);
    LogLine l;
    l.wall_seconds = static_cast<double>(timegm(&t) - offset) + ms / 1000.0;
    l.at = steady_now - std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(wall_now_s - l.wall_seconds));
    l.pid = pid;
    l.level = level;
    l.message = line.substr(static_cast<size_t>(consumed));
    out.push_back(std::move(l));
  }
  return out;
}

// ---------------------------------------------------------------- figures

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

Figures::Figures() = default;

Figures::~Figures() {
  if (!emitted_) Emit();
}

std::string Figures::FormatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

Figures& Figures::Add(const std::string& key, const std::string& value) {
  for (auto& item : items_) {
    if (item.first == key) {
      item.second = value;
      return *this;
    }
  }
  items_.emplace_back(key, value);
  return *this;
}

Figures& Figures::AddLoad(const std::string& prefix, const LoadStats& s) {
  Add(prefix + "sessions", s.sessions_started);
  Add(prefix + "completed", s.sessions_completed);
  Add(prefix + "bytes_verified", s.bytes_verified);
  Add(prefix + "refused", s.Failures(FailureKind::kRefused));
  Add(prefix + "reset", s.Failures(FailureKind::kReset));
  Add(prefix + "timeout", s.Failures(FailureKind::kTimeout));
  Add(prefix + "closed_early", s.closed_early);
  Add(prefix + "wrong_answers", s.wrong_answers());
  Add(prefix + "other", s.Failures(FailureKind::kOther));
  return *this;
}

void Figures::Emit() {
  emitted_ = true;
  Add("runtime_s", Seconds(Clock::now() - start_));
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::ostringstream line;
  line << "FIGURES: " << (info ? std::string(info->test_suite_name()) + "." + info->name() : "?") << ":";
  bool first = true;
  for (const auto& [key, value] : items_) {
    line << (first ? " " : ", ") << key << "=" << value;
    first = false;
    ::testing::Test::RecordProperty(key, value);
  }
  std::cout << line.str() << std::endl;
}

}  // namespace rot13d::fault
