#include "tests/fault/load.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/epoll.h>
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
#include <map>
#include <random>
#include <sstream>

namespace rot13d::fault {

using blackbox::Fd;

// ---------------------------------------------------------------- Pattern

Pattern::Pattern() : plain_(2 * kPeriod), rotated_(2 * kPeriod) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < kPeriod; i += 8) {
    // splitmix64: cheap, and every byte value shows up in a megabyte of it.
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (size_t b = 0; b < 8 && i + b < kPeriod; ++b) plain_[i + b] = static_cast<uint8_t>(z >> (8 * b));
  }
  std::copy(plain_.begin(), plain_.begin() + kPeriod, plain_.begin() + kPeriod);
  for (size_t i = 0; i < plain_.size(); ++i) {
    uint8_t c = plain_[i];
    if (c >= 'a' && c <= 'z') c = static_cast<uint8_t>('a' + (c - 'a' + 13) % 26);
    else if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>('A' + (c - 'A' + 13) % 26);
    rotated_[i] = c;
  }
}

const Pattern& Pattern::Get() {
  static const Pattern pattern;
  return pattern;
}

size_t Pattern::Mismatches(const uint8_t* got, size_t n, uint64_t offset) const {
  if (n == 0) return 0;  // got may be null then, which memcmp must not see
  const uint8_t* want = Expected(offset);
  if (std::memcmp(got, want, n) == 0) return 0;
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += got[i] != want[i];
  return bad;
}

// ---------------------------------------------------------------- LoadEngine

const char* FailureName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kRefused: return "refused";
    case FailureKind::kConnectError: return "connect-error";
    case FailureKind::kReset: return "reset";
    case FailureKind::kEarlyEof: return "early-eof";
    case FailureKind::kCorrupt: return "corrupt";
    case FailureKind::kStall: return "stall";
  }
  return "?";
}

std::string LoadStats::Summary() const {
  std::ostringstream s;
  s << "sessions " << sessions_started << " started / " << sessions_completed << " completed, " << bytes_verified
    << " bytes verified, " << requests << " requests; refused " << refused << ", connect errors "
    << connect_errors << ", resets " << resets << ", early EOFs " << early_eofs << ", corrupt bytes "
    << corrupt_bytes << ", stalls " << stalls;
  return s.str();
}

struct LoadEngine::Shared {
  explicit Shared(const LoadOptions& o) : options(o), views(new SlotView[static_cast<size_t>(o.connections)]) {}

  LoadOptions options;
  sockaddr_in addr{};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sessions_started{0}, completed{0}, refused{0}, connect_errors{0}, resets{0},
      early_eofs{0}, corrupt_bytes{0}, stalls{0}, bytes_verified{0}, requests{0};
  std::atomic<int> slots_done{0};

  mutable std::mutex mu;
  std::vector<Failure> failures;       // guarded by mu
  std::vector<uint32_t> latencies_us;  // guarded by mu

  struct SlotView {
    std::atomic<uint16_t> port{0};
    std::atomic<bool> served{false};
  };
  std::unique_ptr<SlotView[]> views;
};

namespace {

constexpr size_t kIoChunk = 256 * 1024;
constexpr size_t kMaxLatencySamples = 4u << 20;

class Runner {
 public:
  Runner(LoadEngine::Shared& shared, std::vector<int> indices, uint64_t seed)
      : sh_(shared), o_(shared.options), rng_(seed), buf_(kIoChunk) {
    sessions_.resize(indices.size());
    for (size_t i = 0; i < indices.size(); ++i) sessions_[i].index = indices[i];
  }

  void Run();

 private:
  enum class State { kWaiting, kConnecting, kOpen, kThinking, kFinished };
  struct Session {
    int index = 0;
    Fd fd;
    State state = State::kWaiting;
    uint32_t registered = 0;
    Clock::time_point due{}, last_progress{}, request_start{};
    uint64_t start = 0, total = 0, sent = 0, received = 0, limit = 0;
    bool shut = false, corrupt_reported = false;
    uint64_t runs = 0;
    uint16_t port = 0;
  };

  void Scan(Clock::time_point now);
  void StartSession(Session& s, Clock::time_point now);
  void OnConnected(Session& s, Clock::time_point now);
  void OnEvent(Session& s, uint32_t events, Clock::time_point now);
  bool TrySend(Session& s, Clock::time_point now);
  void OnReadable(Session& s, Clock::time_point now);
  void NextRequest(Session& s, Clock::time_point now);
  void Interest(Session& s, uint32_t events);
  void Fail(Session& s, FailureKind kind, std::string detail, Clock::time_point now);
  void Finish(Session& s, bool failed, Clock::time_point now);
  void Schedule(Session& s, State state, Clock::time_point due) {
    s.state = state;
    s.due = due;
    next_scan_ = std::min(next_scan_, due);
  }
  uint64_t Random(uint64_t lo, uint64_t hi) { return lo >= hi ? lo : std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }

  LoadEngine::Shared& sh_;
  const LoadOptions& o_;
  std::mt19937_64 rng_;
  std::vector<uint8_t> buf_;
  std::vector<Session> sessions_;
  Fd epoll_;
  Clock::time_point next_scan_{};
  std::vector<uint32_t> latencies_;
};

void Runner::Run() {
  epoll_.Reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return;
  auto now = Clock::now();
  for (Session& s : sessions_) s.due = now;
  next_scan_ = now;
  std::vector<epoll_event> events(512);
  while (!sh_.stop.load(std::memory_order_relaxed)) {
    now = Clock::now();
    if (now >= next_scan_) Scan(now);
    auto wait = std::clamp<int64_t>(
        std::chrono::duration_cast<milliseconds>(next_scan_ - now).count() + 1, 0, 50);
    int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), static_cast<int>(wait));
    now = Clock::now();
    for (int i = 0; i < n; ++i) OnEvent(sessions_[events[static_cast<size_t>(i)].data.u32], events[static_cast<size_t>(i)].events, now);
    if (!latencies_.empty()) {
      // Published every turn, so Latency() is current while the load runs.
      std::lock_guard lock(sh_.mu);
      if (sh_.latencies_us.size() < kMaxLatencySamples) {
        sh_.latencies_us.insert(sh_.latencies_us.end(), latencies_.begin(), latencies_.end());
      }
      latencies_.clear();
    }
  }
}

void Runner::Scan(Clock::time_point now) {
  next_scan_ = now + milliseconds(50);
  for (Session& s : sessions_) {
    switch (s.state) {
      case State::kWaiting:
        if (now >= s.due) StartSession(s, now);
        else next_scan_ = std::min(next_scan_, s.due);
        break;
      case State::kThinking:
        if (now >= s.due) NextRequest(s, now);
        else next_scan_ = std::min(next_scan_, s.due);
        break;
      case State::kConnecting:
      case State::kOpen:
        if (now - s.last_progress > o_.stall_timeout) {
          Fail(s, FailureKind::kStall,
               "no progress for " + std::to_string(o_.stall_timeout.count()) + " ms (sent " + std::to_string(s.sent) +
                   ", received " + std::to_string(s.received) + " of " + std::to_string(s.total) + ")",
               now);
        }
        break;
      case State::kFinished:
        break;
    }
  }
}

void Runner::StartSession(Session& s, Clock::time_point now) {
  if (o_.sessions_per_connection > 0 && s.runs >= o_.sessions_per_connection) {
    s.state = State::kFinished;
    sh_.slots_done.fetch_add(1);
    return;
  }
  ++s.runs;
  sh_.sessions_started.fetch_add(1, std::memory_order_relaxed);
  s.start = rng_();
  s.total = Random(o_.min_bytes, o_.max_bytes);
  s.sent = s.received = 0;
  s.limit = o_.streaming ? s.total : std::min<uint64_t>(o_.chunk, s.total);
  s.shut = s.corrupt_reported = false;
  s.port = 0;
  s.registered = 0;
  s.last_progress = s.request_start = now;
  s.fd.Reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.fd.valid()) {
    Fail(s, FailureKind::kConnectError, std::string("socket: ") + std::strerror(errno), now);
    return;
  }
  if (o_.rcvbuf > 0) setsockopt(s.fd.get(), SOL_SOCKET, SO_RCVBUF, &o_.rcvbuf, sizeof o_.rcvbuf);
  if (o_.sndbuf > 0) setsockopt(s.fd.get(), SOL_SOCKET, SO_SNDBUF, &o_.sndbuf, sizeof o_.sndbuf);
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ev.data.u32 = static_cast<uint32_t>(&s - sessions_.data());
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, s.fd.get(), &ev);
  s.registered = EPOLLOUT;
  if (connect(s.fd.get(), reinterpret_cast<const sockaddr*>(&sh_.addr), sizeof sh_.addr) == 0) {
    OnConnected(s, now);
  } else if (errno == EINPROGRESS) {
    s.state = State::kConnecting;
  } else if (errno == ECONNREFUSED) {
    Fail(s, FailureKind::kRefused, "connect: refused at once", now);
  } else {
    Fail(s, FailureKind::kConnectError, std::string("connect: ") + std::strerror(errno), now);
  }
}

void Runner::OnConnected(Session& s, Clock::time_point now) {
  s.state = State::kOpen;
  sockaddr_in local{};
  socklen_t len = sizeof local;
  if (getsockname(s.fd.get(), reinterpret_cast<sockaddr*>(&local), &len) == 0) s.port = ntohs(local.sin_port);
  sh_.views[static_cast<size_t>(s.index)].port.store(s.port);
  s.last_progress = s.request_start = now;
  Interest(s, EPOLLIN | EPOLLRDHUP);
  TrySend(s, now);
}

void Runner::Interest(Session& s, uint32_t events) {
  if (events == s.registered) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u32 = static_cast<uint32_t>(&s - sessions_.data());
  epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, s.fd.get(), &ev);
  s.registered = events;
}

void Runner::OnEvent(Session& s, uint32_t events, Clock::time_point now) {
  if (s.state == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0 && (events & EPOLLOUT)) {
      OnConnected(s, now);
    } else if (err == ECONNREFUSED) {
      Fail(s, FailureKind::kRefused, "connect: refused", now);
    } else if (err != 0) {
      Fail(s, FailureKind::kConnectError, std::string("connect: ") + std::strerror(err), now);
    }
    return;
  }
  if (s.state != State::kOpen && s.state != State::kThinking) return;
  if (events & EPOLLOUT) {
    if (!TrySend(s, now)) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) OnReadable(s, now);
}

// False when the session ended.
bool Runner::TrySend(Session& s, Clock::time_point now) {
  const Pattern& p = Pattern::Get();
  while (s.sent < s.limit) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(s.limit - s.sent, kIoChunk));
    ssize_t w = send(s.fd.get(), p.Data(s.start + s.sent), n, MSG_NOSIGNAL);
    if (w > 0) {
      s.sent += static_cast<uint64_t>(w);
      s.last_progress = now;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Fail(s, FailureKind::kReset, std::string("send: ") + std::strerror(errno), now);
    return false;
  }
  if (s.sent == s.total && !s.shut) {
    shutdown(s.fd.get(), SHUT_WR);
    s.shut = true;
  }
  Interest(s, EPOLLIN | EPOLLRDHUP | (s.sent < s.limit ? EPOLLOUT : 0u));
  return true;
}

void Runner::OnReadable(Session& s, Clock::time_point now) {
  const Pattern& p = Pattern::Get();
  while (true) {
    ssize_t r = recv(s.fd.get(), buf_.data(), buf_.size(), 0);
    if (r > 0) {
      size_t got = static_cast<size_t>(r);
      size_t owed = static_cast<size_t>(s.sent > s.received ? s.sent - s.received : 0);
      size_t valid = std::min(got, owed);
      size_t bad = p.Mismatches(buf_.data(), valid, s.start + s.received) + (got - valid);
      if (bad > 0) {
        sh_.corrupt_bytes.fetch_add(bad);
        if (!s.corrupt_reported) {
          s.corrupt_reported = true;
          std::lock_guard lock(sh_.mu);
          sh_.failures.push_back({FailureKind::kCorrupt, now, s.port, true, s.received,
                                  std::to_string(bad) + " bad bytes in " + std::to_string(got) + " at offset " +
                                      std::to_string(s.received) + (got > valid ? " (more than was sent)" : "")});
        }
      }
      sh_.bytes_verified.fetch_add(valid - std::min(valid, bad), std::memory_order_relaxed);
      s.received += got;
      s.last_progress = now;
      if (!sh_.views[static_cast<size_t>(s.index)].served.load(std::memory_order_relaxed)) {
        sh_.views[static_cast<size_t>(s.index)].served.store(true);
      }
      if (!o_.streaming && s.received == s.limit && s.state == State::kOpen) {
        latencies_.push_back(static_cast<uint32_t>(
            std::min<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - s.request_start).count(),
                              UINT32_MAX)));
        sh_.requests.fetch_add(1, std::memory_order_relaxed);
        if (s.limit < s.total) {
          if (o_.think.count() > 0) {
            Schedule(s, State::kThinking,
                     now + std::chrono::microseconds(Random(0, static_cast<uint64_t>(o_.think.count()) * 1000)));
          } else {
            NextRequest(s, now);
            if (s.state != State::kOpen) return;
          }
        }
      }
      continue;
    }
    if (r == 0) {
      if (s.received == s.total && s.sent == s.total) {
        sh_.completed.fetch_add(1, std::memory_order_relaxed);
        Finish(s, false, now);
      } else {
        Fail(s, FailureKind::kEarlyEof,
             "EOF after " + std::to_string(s.received) + " of " + std::to_string(s.total) + " bytes (sent " +
                 std::to_string(s.sent) + ")",
             now);
      }
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    Fail(s, FailureKind::kReset, std::string("recv: ") + std::strerror(errno), now);
    return;
  }
}

void Runner::NextRequest(Session& s, Clock::time_point now) {
  s.state = State::kOpen;
  s.limit = std::min(s.total, s.limit + o_.chunk);
  s.request_start = now;
  TrySend(s, now);
}

void Runner::Fail(Session& s, FailureKind kind, std::string detail, Clock::time_point now) {
  auto& counter = kind == FailureKind::kRefused        ? sh_.refused
                  : kind == FailureKind::kConnectError ? sh_.connect_errors
                  : kind == FailureKind::kReset        ? sh_.resets
                  : kind == FailureKind::kEarlyEof     ? sh_.early_eofs
                                                       : sh_.stalls;
  counter.fetch_add(1);
  {
    // Stamped when seen, not with the loop turn's time: a fault injected in
    // between (a kill while this thread was preempted) would otherwise look
    // later than the failure it caused, and the failure would be judged
    // against the fault before it.
    std::lock_guard lock(sh_.mu);
    sh_.failures.push_back({kind, Clock::now(), s.port, sh_.views[static_cast<size_t>(s.index)].served.load(), s.received,
                            std::move(detail)});
  }
  Finish(s, true, now);
}

void Runner::Finish(Session& s, bool failed, Clock::time_point now) {
  if (failed && s.fd.valid()) {
    // Reset rather than linger: a failed session leaves nothing behind.
    linger lg{1, 0};
    setsockopt(s.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  s.fd.Reset();  // closing also removes it from epoll
  s.registered = 0;
  auto& view = sh_.views[static_cast<size_t>(s.index)];
  view.port.store(0);
  view.served.store(false);
  milliseconds pause = o_.pause_between_sessions;
  if (failed) pause = std::max(pause, milliseconds(10));  // never spin on a refusing port
  Schedule(s, State::kWaiting, now + pause);
}

}  // namespace

LoadEngine::LoadEngine(LoadOptions options) : options_(std::move(options)), shared_(new Shared(options_)) {
  const std::string& a = options_.address;
  size_t colon = a.rfind(':');
  shared_->addr.sin_family = AF_INET;
  shared_->addr.sin_port = htons(static_cast<uint16_t>(std::stoi(a.substr(colon + 1))));
  inet_pton(AF_INET, a.substr(0, colon).c_str(), &shared_->addr.sin_addr);
  (void)Pattern::Get();  // built before the clock matters
}

LoadEngine::~LoadEngine() { Stop(); }

void LoadEngine::Start() {
  if (started_) return;
  started_ = true;
  int threads = std::max(1, std::min(options_.threads, options_.connections));
  for (int t = 0; t < threads; ++t) {
    std::vector<int> indices;
    for (int i = t; i < options_.connections; i += threads) indices.push_back(i);
    uint64_t seed = options_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(t);
    threads_.emplace_back([this, indices = std::move(indices), seed]() mutable {
      Runner runner(*shared_, std::move(indices), seed);
      runner.Run();
    });
  }
}

void LoadEngine::Stop() {
  shared_->stop = true;
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

bool LoadEngine::WaitDone(milliseconds timeout) {
  return blackbox::WaitFor([&] { return shared_->slots_done.load() >= options_.connections; }, timeout, 10ms);
}

LoadStats LoadEngine::Stats() const {
  const Shared& s = *shared_;
  LoadStats out;
  out.sessions_started = s.sessions_started.load();
  out.sessions_completed = s.completed.load();
  out.refused = s.refused.load();
  out.connect_errors = s.connect_errors.load();
  out.resets = s.resets.load();
  out.early_eofs = s.early_eofs.load();
  out.corrupt_bytes = s.corrupt_bytes.load();
  out.stalls = s.stalls.load();
  out.bytes_verified = s.bytes_verified.load();
  out.requests = s.requests.load();
  return out;
}

std::vector<Failure> LoadEngine::Failures() const {
  std::lock_guard lock(shared_->mu);
  return shared_->failures;
}

LatencySummary LoadEngine::Latency() const {
  std::vector<uint32_t> v;
  {
    std::lock_guard lock(shared_->mu);
    v = shared_->latencies_us;
  }
  LatencySummary out;
  out.count = v.size();
  if (v.empty()) return out;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))] / 1000.0; };
  out.p50_ms = at(0.50);
  out.p99_ms = at(0.99);
  out.max_ms = v.back() / 1000.0;
  return out;
}

std::vector<uint16_t> LoadEngine::ServedPorts() const {
  std::vector<uint16_t> out;
  for (int i = 0; i < options_.connections; ++i) {
    const auto& view = shared_->views[static_cast<size_t>(i)];
    uint16_t port = view.port.load();
    if (port != 0 && view.served.load()) out.push_back(port);
  }
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
    int ms = 0, pid = 0, consumed = 0;
    char level[16] = {};
    if (std::sscanf(line.c_str(), "%d-%d-%d %d:%d:%d.%d rot13d[%d] %15[a-z]: %n", &t.tm_year, &t.tm_mon,
                    &t.tm_mday, &t.tm_hour, &t.tm_min, &t.tm_sec, &ms, &pid, level, &consumed) < 9 ||
        consumed == 0) {
      continue;
    }
    t.tm_year -= 1900;
    t.tm_mon -= 1;
    t.tm_isdst = -1;
    LogLine l;
    l.wall_seconds = static_cast<double>(mktime(&t)) + ms / 1000.0;
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
  Add(prefix + "refused", s.refused);
  Add(prefix + "reset", s.resets);
  Add(prefix + "early_eof", s.early_eofs);
  Add(prefix + "corrupt_bytes", s.corrupt_bytes);
  Add(prefix + "stalls", s.stalls);
  Add(prefix + "connect_errors", s.connect_errors);
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
