#include "client/load_worker.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client/args.h"

namespace rot13d::client {
namespace {

using std::chrono::milliseconds;

constexpr size_t kScratchSize = 256 * 1024;
constexpr uint64_t kStopTag = UINT64_MAX;
constexpr auto kScanInterval = milliseconds(100);
// After a failure, so that a dead server is not hammered.
constexpr auto kRetryPause = milliseconds(10);
// Connections begun at a time at the start: a reader waits for no more under the lock.
constexpr size_t kStartBatch = 1024;

int MillisUntil(LoadClock::time_point when, LoadClock::time_point now) {
  auto ms = std::chrono::ceil<milliseconds>(when - now).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

std::string Errno(const char* what, int err) { return std::string(what) + ": " + std::strerror(err); }

}  // namespace

struct LoadWorker::Conn {
  enum class State { kWaiting, kConnecting, kActive, kThinking, kFinished };

  UniqueFd fd;
  uint32_t id = 0;
  State state = State::kWaiting;
  LoadClock::time_point due{};  // kWaiting, kThinking: when to go on
  uint16_t port = 0;            // the client's TCP port while connected
  uint64_t sessions = 0;        // begun on this connection
  uint64_t messages = 0;        // begun on this connection
  // The session.
  uint64_t total = 0;  // its bytes
  uint64_t done = 0;   // bytes of its messages before the current one, all answered
  bool half_closed = false;
  // The current message (kThinking: the one answered last).
  uint64_t size = 0;
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t offset = 0;       // pattern offset of its first byte
  uint64_t next_offset = 0;  // where the next message starts in the pattern
  bool answered = false;     // all of its answer is in
  LoadClock::time_point unit_start{};
  LoadClock::time_point last_progress{};

  uint64_t verified() const { return done + received; }
  bool last_message() const { return done + size >= total; }
};

LoadWorker::LoadWorker(LoadShared& shared, std::vector<uint32_t> connection_ids, uint64_t seed)
    : shared_(shared),
      options_(*shared.options),
      pattern_(*shared.pattern),
      rng_(seed),
      conns_(connection_ids.size()),
      active_(connection_ids.size()),
      scratch_(kScratchSize) {
  for (size_t i = 0; i < conns_.size(); ++i) {
    conns_[i].id = connection_ids[i];
    // Connections start at different places in the pattern, so a server that
    // mixes up connections returns wrong bytes.
    conns_[i].next_offset = uint64_t{connection_ids[i]} * 7919 % Pattern::kPeriod;
  }
  // Threads begin their turns at different sources.
  if (!options_.sources.empty() && !connection_ids.empty()) next_source_ = connection_ids[0] % options_.sources.size();
}

LoadWorker::~LoadWorker() = default;

void LoadWorker::AddServedPorts(std::vector<uint16_t>& out) const {
  std::lock_guard lock(mu_);
  for (const Conn& c : conns_) {
    if (c.port != 0 && c.verified() > 0) out.push_back(c.port);
  }
}

// ---------------------------------------------------------------- the loop

void LoadWorker::Run() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  epoll_event stop{};
  stop.events = EPOLLIN;
  stop.data.u64 = kStopTag;
  if (!epoll_ || epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, shared_.stop_event.get(), &stop) != 0) {
    int err = errno;
    std::lock_guard lock(mu_);
    ++tally_.stats.failures[static_cast<size_t>(FailureKind::kOther)];
    Record({FailureKind::kOther, LoadClock::now(), 0, 0, 0, Errno("epoll", err), {}});
    tally_.end = LoadClock::now();
    return;
  }
  for (size_t i = 0; i < conns_.size() && !shared_.stop.load(std::memory_order_relaxed);) {
    std::lock_guard lock(mu_);
    for (size_t end = std::min(conns_.size(), i + kStartBatch); i < end; ++i) BeginSession(conns_[i]);
  }
  Loop();
  std::lock_guard lock(mu_);
  tally_.end = std::min(LoadClock::now(), shared_.end);
  for (Conn& c : conns_) {
    c.fd.reset();
    c.port = 0;
  }
}

void LoadWorker::Loop() {
  epoll_event events[512];
  next_scan_ = LoadClock::now() + kScanInterval;
  while (active_ > 0 && !shared_.stop.load(std::memory_order_relaxed)) {
    auto now = LoadClock::now();
    if (now >= shared_.end) break;
    int n = epoll_wait(epoll_.get(), events, static_cast<int>(std::size(events)), MillisUntil(NextWake(now), now));
    int err = errno;
    std::lock_guard lock(mu_);
    if (n < 0 && err != EINTR) {
      ++tally_.stats.failures[static_cast<size_t>(FailureKind::kOther)];
      Record({FailureKind::kOther, LoadClock::now(), 0, 0, 0, Errno("epoll_wait", err), {}});
      return;
    }
    for (int i = 0; i < n; ++i) {
      // The stop event needs nothing: the loop condition sees the flag.
      if (events[i].data.u64 != kStopTag) Dispatch(conns_[events[i].data.u64]);
    }
    now = LoadClock::now();
    RunDue(now);
    if (now >= next_scan_) {
      ScanTimeouts(now);
      next_scan_ = now + kScanInterval;
    }
  }
}

LoadClock::time_point LoadWorker::NextWake(LoadClock::time_point now) const {
  LoadClock::time_point wake = std::min({shared_.end, next_scan_, now + milliseconds(60'000)});
  if (!wakeups_.empty()) wake = std::min(wake, wakeups_.top().when);
  return wake;
}

void LoadWorker::Dispatch(Conn& c) {
  switch (c.state) {
    case Conn::State::kConnecting:
      if (int err = ConnectError(c.fd.borrow()); err != 0) {
        Fail(c, ClassifyErrno(err), Errno("connect", err));
      } else {
        OnConnected(c);
      }
      break;
    case Conn::State::kActive: Pump(c); break;
    case Conn::State::kThinking: Receive(c); break;  // only an EOF, an error or unasked bytes can come
    case Conn::State::kWaiting:
    case Conn::State::kFinished: break;  // a stale event of a socket closed in this turn
  }
}

// Sessions and messages go on here, outside the event handlers, so that a stale
// event of a closed socket finds its connection waiting.
void LoadWorker::RunDue(LoadClock::time_point now) {
  while (!wakeups_.empty() && wakeups_.top().when <= now) {
    Wakeup w = wakeups_.top();
    wakeups_.pop();
    Conn& c = conns_[w.index];
    if (c.due != w.when) continue;  // rescheduled since
    if (c.state == Conn::State::kWaiting) {
      BeginSession(c);
    } else if (c.state == Conn::State::kThinking && BeginMessage(c)) {
      Pump(c);
    }
  }
}

void LoadWorker::Schedule(Conn& c, LoadClock::time_point when) {
  c.due = when;
  wakeups_.push({when, static_cast<uint32_t>(&c - conns_.data())});
}

void LoadWorker::ScanTimeouts(LoadClock::time_point now) {
  for (Conn& c : conns_) {
    if (c.state != Conn::State::kConnecting && c.state != Conn::State::kActive) continue;
    if (now - c.last_progress < options_.timeout) continue;
    std::string what = c.state == Conn::State::kConnecting ? "connect: no answer within " : "no progress for ";
    Fail(c, FailureKind::kTimeout, what + FormatDuration(options_.timeout));
  }
}

// ---------------------------------------------------------------- a session

void LoadWorker::BeginSession(Conn& c) {
  auto now = LoadClock::now();
  if (options_.sessions_per_connection > 0 && c.sessions >= options_.sessions_per_connection) return Finish(c);
  if (options_.unit == Unit::kSession && (now >= shared_.end || !TakeBudget())) return Finish(c);
  ++c.sessions;
  ++tally_.stats.sessions_started;
  c.total = Random(options_.min_bytes, options_.max_bytes);
  c.done = c.size = c.sent = c.received = 0;
  c.answered = c.half_closed = false;
  c.unit_start = c.last_progress = now;
  c.state = Conn::State::kConnecting;
  auto pending = StartConnect(options_.address, options_.buffers, NextSource());
  if (!pending) return Fail(c, ClassifyErrno(pending.error().errno_value()), pending.error().ToString());
  c.fd = std::move(pending->fd);  // with TCP_NODELAY, as every connection of the tools
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) != 0) return Fail(c, FailureKind::kOther, Errno("epoll_ctl", errno));
  if (pending->connected) OnConnected(c);
}

void LoadWorker::OnConnected(Conn& c) {
  c.state = Conn::State::kActive;
  c.last_progress = LoadClock::now();
  if (options_.address.family() == AF_INET || options_.address.family() == AF_INET6) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (getsockname(c.fd.get(), reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      // sin_port and sin6_port are at the same place.
      c.port = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
    }
  }
  if (BeginMessage(c)) Pump(c);
}

bool LoadWorker::BeginMessage(Conn& c) {
  auto now = LoadClock::now();
  if (options_.unit == Unit::kMessage && (now >= shared_.end || !TakeBudget())) {
    Finish(c);
    return false;
  }
  c.state = Conn::State::kActive;
  c.done += c.size;  // the previous message, answered
  c.size = std::min(options_.message, c.total - c.done);
  c.offset = c.next_offset;
  c.next_offset += c.size;
  c.sent = c.received = 0;
  c.answered = false;
  if (options_.unit == Unit::kMessage) c.unit_start = now;
  c.last_progress = now;
  ++c.messages;
  return true;
}

void LoadWorker::Pump(Conn& c) {
  while (c.state == Conn::State::kActive && Send(c) && Receive(c)) {
  }
}

// False when the session failed.
bool LoadWorker::Send(Conn& c) {
  while (c.sent < c.size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(c.size - c.sent, Pattern::kPeriod));
    ssize_t n = send(c.fd.get(), pattern_.SendAt(c.offset + c.sent), want, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<uint64_t>(n);
      tally_.stats.bytes_sent += static_cast<uint64_t>(n);
      c.last_progress = LoadClock::now();
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      int err = errno;
      Fail(c, ClassifyErrno(err), Errno("send", err));
      return false;
    }
  }
  if (c.sent == c.size && c.last_message() && !c.half_closed) {
    // The protocol's end of input: the server answers the rest and closes.
    shutdown(c.fd.get(), SHUT_WR);
    c.half_closed = true;
  }
  return true;
}

// Reads until the socket is drained; true when the answer is in and the next
// message began, with bytes to send.
bool LoadWorker::Receive(Conn& c) {
  while (true) {
    ssize_t n = recv(c.fd.get(), scratch_.data(), scratch_.size(), 0);
    if (n > 0) {
      if (!Check(c, static_cast<size_t>(n))) return false;
      if (c.received == c.size && !c.answered && OnAnswered(c)) return true;
      if (c.state != Conn::State::kActive && c.state != Conn::State::kThinking) return false;
    } else if (n == 0) {
      OnEof(c);
      return false;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return false;
    } else if (errno != EINTR) {
      int err = errno;
      Fail(c, ClassifyErrno(err), Errno("receive", err));
      return false;
    }
  }
}

// Verifies `got` bytes in scratch_ against the rest of the current answer;
// false when they are wrong (the session failed).
bool LoadWorker::Check(Conn& c, size_t got) {
  size_t room = static_cast<size_t>(std::min<uint64_t>(c.size - c.received, got));
  size_t good = pattern_.Verify(c.offset + c.received, scratch_.data(), room);
  if (good < room) {
    Mismatch(c, c.received + good, pattern_.ExpectedAt(c.offset + c.received + good)[0], scratch_[good]);
    return false;
  }
  if (got > room) {  // more than was asked for
    Mismatch(c, c.size, -1, scratch_[room]);
    return false;
  }
  c.received += got;
  tally_.stats.bytes_verified += got;
  c.last_progress = LoadClock::now();
  return true;
}

// The whole answer to the current message is in; true when the next message began.
bool LoadWorker::OnAnswered(Conn& c) {
  c.answered = true;
  if (options_.unit == Unit::kMessage) CompleteUnit(c, c.size);
  if (!c.last_message()) {
    if (options_.think.count() == 0) return BeginMessage(c);
    c.state = Conn::State::kThinking;
    auto think_us = static_cast<uint64_t>(std::chrono::ceil<std::chrono::microseconds>(options_.think).count());
    Schedule(c, LoadClock::now() + std::chrono::microseconds(Random(0, think_us)));
    return false;
  }
  if (!options_.await_eof) CompleteSession(c);
  return false;
}

void LoadWorker::OnEof(Conn& c) {
  if (c.answered && c.last_message()) return CompleteSession(c);
  // Before the whole answer: the bytes it still owed are missing.
  Mismatch(c, c.received, pattern_.ExpectedAt(c.offset + c.received)[0], -1);
}

void LoadWorker::CompleteUnit(Conn& c, uint64_t bytes) {
  if (options_.timed) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(LoadClock::now() - c.unit_start).count();
    tally_.latency.Record(static_cast<uint64_t>(ns));
  }
  ++tally_.stats.requests;
  tally_.stats.request_bytes += bytes;
}

void LoadWorker::CompleteSession(Conn& c) {
  ++tally_.stats.sessions_completed;
  if (options_.unit == Unit::kSession) CompleteUnit(c, c.total);
  EndSession(c, false);
}

void LoadWorker::EndSession(Conn& c, bool failed) {
  c.fd.reset();  // closing also removes it from epoll
  c.port = 0;
  if (options_.sessions_per_connection > 0 && c.sessions >= options_.sessions_per_connection) return Finish(c);
  c.state = Conn::State::kWaiting;
  auto pause = options_.pause;
  if (failed) pause = std::max<std::chrono::nanoseconds>(pause, kRetryPause);
  Schedule(c, LoadClock::now() + pause);
}

void LoadWorker::Finish(Conn& c) {
  c.fd.reset();
  c.port = 0;
  if (c.state == Conn::State::kFinished) return;
  c.state = Conn::State::kFinished;
  --active_;
}

// ---------------------------------------------------------------- failures

void LoadWorker::Fail(Conn& c, FailureKind kind, const std::string& what, std::optional<MismatchReport> mismatch) {
  ++tally_.stats.failures[static_cast<size_t>(kind)];
  // Stamped when seen, not with the loop turn's time: a fault injected in
  // between would otherwise look later than the failure it caused.
  // A mismatch's own text begins with its connection ("connection 3, byte 40: ...").
  std::string message = mismatch ? what : "connection " + std::to_string(c.id) + ": " + what;
  Record({kind, LoadClock::now(), c.id, c.port, c.verified(), std::move(message), std::move(mismatch)});
  if (c.fd) {
    // Reset rather than linger: a failed session leaves nothing behind.
    linger reset{1, 0};
    setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }
  EndSession(c, true);
}

void LoadWorker::Mismatch(Conn& c, uint64_t offset_in_message, int expected, int got) {
  MismatchReport m;
  m.connection = c.id;
  bool per_message = options_.unit == Unit::kMessage;
  m.request = (per_message ? c.messages : c.sessions) - 1;
  m.offset = (per_message ? 0 : c.done) + offset_in_message;
  m.expected = expected;
  m.got = got;
  if (m.closed_early()) ++tally_.stats.closed_early;
  Fail(c, FailureKind::kMismatch, m.ToString(), m);
}

void LoadWorker::Record(Failure f) {
  if (!tally_.first) tally_.first = f;
  if (f.kind == FailureKind::kMismatch && !tally_.first_mismatch) tally_.first_mismatch = f;
  if (tally_.failures.size() < options_.failure_log) tally_.failures.push_back(std::move(f));
}

bool LoadWorker::TakeBudget() {
  if (options_.budget == 0) return true;
  return shared_.budget.fetch_sub(1, std::memory_order_relaxed) > 0;
}

const SocketAddress* LoadWorker::NextSource() {
  if (options_.sources.empty()) return nullptr;
  const SocketAddress* source = &options_.sources[next_source_];
  next_source_ = (next_source_ + 1) % options_.sources.size();
  return source;
}

uint64_t LoadWorker::Random(uint64_t lo, uint64_t hi) {
  return lo >= hi ? lo : std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
}

}  // namespace rot13d::client
