#include "client/bench_worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client/args.h"

namespace rot13d::client {
namespace {

constexpr size_t kScratchSize = 256 * 1024;
constexpr uint64_t kStopTag = UINT64_MAX;
constexpr int64_t kScanIntervalNs = 100'000'000;
constexpr int64_t kRetryPauseNs = 10'000'000;

// The single writer of a LiveCounters field adds without a locked instruction.
void Add(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::string Describe(uint32_t id, const std::string& what) {
  return "connection " + std::to_string(id) + ": " + what;
}

}  // namespace

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Worker::Conn {
  enum class State { kWaiting, kConnecting, kActive, kFinished };

  UniqueFd fd;
  uint32_t id = 0;
  State state = State::kWaiting;
  uint64_t unit_bytes = 0;   // bytes of the current message (stream: the whole stream)
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t offset = 0;       // pattern offset of the current message's first byte
  uint64_t next_offset = 0;  // where the next message starts in the pattern
  uint64_t messages = 0;     // messages (rr) or cycles (connect) begun
  int64_t unit_start_ns = 0;
  int64_t last_progress_ns = 0;
  bool half_closed = false;
};

Worker::Worker(RunShared& shared, LiveCounters& live, std::vector<uint32_t> connection_ids)
    : shared_(shared),
      config_(*shared.config),
      pattern_(*shared.pattern),
      live_(live),
      conns_(connection_ids.size()),
      scratch_(new uint8_t[kScratchSize]) {
  for (size_t i = 0; i < conns_.size(); ++i) {
    conns_[i].id = connection_ids[i];
    // Connections start at different places in the pattern, so a server that
    // mixes up connections returns wrong bytes.
    conns_[i].next_offset = uint64_t{connection_ids[i]} * 7919 % Pattern::kPeriod;
  }
  active_ = conns_.size();
}

Worker::~Worker() = default;

uint32_t Worker::IndexOf(const Conn& c) const { return static_cast<uint32_t>(&c - conns_.data()); }

bool Worker::TakeBudget() {
  if (config_.requests == 0) return true;
  return shared_.budget.fetch_sub(1, std::memory_order_relaxed) > 0;
}

void Worker::Run() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) {
    result_.first_error = std::string("epoll_create1: ") + std::strerror(errno);
    ++result_.failures[static_cast<size_t>(FailureKind::kOther)];
    result_.end_ns = NowNs();
    return;
  }
  epoll_event stop{};
  stop.events = EPOLLIN;
  stop.data.u64 = kStopTag;
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, shared_.stop_event.get(), &stop);

  for (Conn& c : conns_) {
    if (shared_.stop.load(std::memory_order_relaxed)) break;
    if (config_.mode == Mode::kConnect) {
      BeginCycle(c);
    } else {
      Open(c);
    }
  }

  epoll_event events[512];
  int64_t next_scan = NowNs() + kScanIntervalNs;
  while (active_ > 0 && !shared_.stop.load(std::memory_order_relaxed)) {
    int64_t now = NowNs();
    if (now >= shared_.end_ns) break;
    if (!restart_.empty()) {
      std::vector<Restart> due;
      std::erase_if(restart_, [&](const Restart& r) {
        if (r.when_ns > now) return false;
        due.push_back(r);
        return true;
      });
      for (const Restart& r : due) {
        Conn& c = conns_[r.index];
        if (config_.mode == Mode::kConnect) {
          BeginCycle(c);
        } else {
          Open(c);
        }
      }
    }
    int64_t wake = std::min(shared_.end_ns, now + kScanIntervalNs);
    for (const Restart& r : restart_) wake = std::min(wake, r.when_ns);
    int timeout_ms = static_cast<int>(std::max<int64_t>(0, (wake - now + 999'999) / 1'000'000));
    int n = epoll_wait(epoll_.get(), events, static_cast<int>(std::size(events)), timeout_ms);
    if (n < 0 && errno != EINTR) {
      result_.first_error = std::string("epoll_wait: ") + std::strerror(errno);
      ++result_.failures[static_cast<size_t>(FailureKind::kOther)];
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kStopTag) continue;  // the loop condition sees the flag
      Conn& c = conns_[events[i].data.u64];
      if (c.state == Conn::State::kConnecting) {
        int err = ConnectError(c.fd.borrow());
        if (err != 0) {
          Fail(c, ClassifyErrno(err), std::string("connect: ") + std::strerror(err));
        } else {
          OnConnected(c);
        }
      } else if (c.state == Conn::State::kActive) {
        Pump(c);
      }
    }
    now = NowNs();
    if (now >= next_scan) {
      ScanTimeouts(now);
      next_scan = now + kScanIntervalNs;
    }
  }
  result_.end_ns = std::min(NowNs(), shared_.end_ns);
  for (Conn& c : conns_) c.fd.reset();
}

void Worker::BeginCycle(Conn& c) {
  if (NowNs() >= shared_.end_ns || !TakeBudget()) {
    Finish(c);
    return;
  }
  c.unit_start_ns = NowNs();
  Open(c);
}

void Worker::Open(Conn& c) {
  c.state = Conn::State::kConnecting;
  c.last_progress_ns = NowNs();
  c.sent = c.received = 0;
  c.half_closed = false;
  auto pending = StartConnect(config_.address);
  if (!pending) {
    Fail(c, ClassifyErrno(pending.error().errno_value()), pending.error().ToString());
    return;
  }
  c.fd = std::move(pending->fd);
  if (config_.address.family() != AF_UNIX) {
    // Messages go out whole at once; Nagle would hold back the tail of one
    // larger than a segment until the previous segment is acknowledged.
    int one = 1;
    setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = IndexOf(c);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) != 0) {
    Fail(c, FailureKind::kOther, std::string("epoll_ctl: ") + std::strerror(errno));
    return;
  }
  if (pending->connected) OnConnected(c);
}

void Worker::OnConnected(Conn& c) {
  c.state = Conn::State::kActive;
  c.last_progress_ns = NowNs();
  if (config_.mode == Mode::kConnect) {
    // The cycle was counted against the budget when it began.
    c.unit_bytes = config_.size;
    c.offset = c.next_offset;
    c.next_offset += config_.size;
    ++c.messages;
  } else if (!BeginMessage(c)) {
    return;
  }
  Pump(c);
}

bool Worker::BeginMessage(Conn& c) {
  if (config_.mode == Mode::kRequestResponse && (NowNs() >= shared_.end_ns || !TakeBudget())) {
    Finish(c);
    return false;
  }
  c.unit_bytes = config_.mode == Mode::kStream ? config_.bytes : config_.size;
  c.offset = c.next_offset;
  c.next_offset += c.unit_bytes;
  c.sent = c.received = 0;
  c.unit_start_ns = c.last_progress_ns = NowNs();
  ++c.messages;
  return true;
}

void Worker::Pump(Conn& c) {
  while (c.state == Conn::State::kActive) {
    while (c.sent < c.unit_bytes) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(c.unit_bytes - c.sent, Pattern::kPeriod));
      ssize_t n = send(c.fd.get(), pattern_.SendAt(c.offset + c.sent), want, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<uint64_t>(n);
        Add(live_.bytes_sent, static_cast<uint64_t>(n));
        c.last_progress_ns = NowNs();
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        int err = errno;
        Fail(c, ClassifyErrno(err), std::string("send: ") + std::strerror(err));
        return;
      }
    }
    if (c.sent == c.unit_bytes && !c.half_closed && config_.mode != Mode::kRequestResponse) {
      // The protocol's end of input: the server answers the rest and closes.
      shutdown(c.fd.get(), SHUT_WR);
      c.half_closed = true;
    }

    bool complete = false;
    while (!complete) {
      ssize_t n = recv(c.fd.get(), scratch_.get(), kScratchSize, 0);
      if (n > 0) {
        size_t got = static_cast<size_t>(n);
        size_t room = static_cast<size_t>(std::min<uint64_t>(c.unit_bytes - c.received, got));
        size_t good = pattern_.Verify(c.offset + c.received, scratch_.get(), room);
        if (good < room) {
          Mismatch(c, c.received + good, pattern_.ExpectedAt(c.offset + c.received + good)[0], scratch_[good]);
          return;
        }
        if (got > room) {  // more than was asked for
          Mismatch(c, c.unit_bytes, -1, scratch_[room]);
          return;
        }
        c.received += got;
        // rr and connect count a message's or cycle's bytes with it, in Complete, so
        // a run that ends between its last byte and its end reports neither.
        if (config_.mode == Mode::kStream) Add(live_.bytes_received, got);
        c.last_progress_ns = NowNs();
        // A connect cycle ends at the server's EOF; the other modes once all is back.
        if (c.received == c.unit_bytes && config_.mode != Mode::kConnect) complete = true;
      } else if (n == 0) {
        if (c.received < c.unit_bytes) {
          Mismatch(c, c.received, pattern_.ExpectedAt(c.offset + c.received)[0], -1);
          return;
        }
        complete = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      } else {
        int err = errno;
        Fail(c, ClassifyErrno(err), std::string("receive: ") + std::strerror(err));
        return;
      }
    }
    Complete(c);  // rr begins the next message and loops; the other modes leave kActive
  }
}

void Worker::Complete(Conn& c) {
  int64_t now = NowNs();
  if (config_.mode != Mode::kStream) {
    result_.latency.Record(static_cast<uint64_t>(now - c.unit_start_ns));
    Add(live_.bytes_received, c.received);
  }
  Add(live_.requests, 1);
  switch (config_.mode) {
    case Mode::kStream:
      Finish(c);
      break;
    case Mode::kRequestResponse:
      BeginMessage(c);
      break;
    case Mode::kConnect:
      c.fd.reset();
      c.state = Conn::State::kWaiting;
      restart_.push_back({0, IndexOf(c)});
      break;
  }
}

void Worker::Fail(Conn& c, FailureKind kind, std::string message) {
  ++result_.failures[static_cast<size_t>(kind)];
  Add(live_.errors, 1);
  if (result_.first_error.empty()) result_.first_error = Describe(c.id, message);
  c.fd.reset();
  if (config_.mode == Mode::kStream) {
    Finish(c);
    return;
  }
  c.state = Conn::State::kWaiting;
  restart_.push_back({NowNs() + kRetryPauseNs, IndexOf(c)});
}

void Worker::Mismatch(Conn& c, uint64_t offset, int expected, int got) {
  MismatchReport m;
  m.connection = c.id;
  m.request = config_.mode == Mode::kStream ? 0 : c.messages - 1;
  m.offset = offset;
  m.expected = expected;
  m.got = got;
  if (!result_.mismatch) result_.mismatch = m;
  Fail(c, FailureKind::kMismatch, m.ToString());
}

void Worker::Finish(Conn& c) {
  c.fd.reset();
  if (c.state == Conn::State::kFinished) return;
  c.state = Conn::State::kFinished;
  --active_;
}

void Worker::ScanTimeouts(int64_t now) {
  for (Conn& c : conns_) {
    if (c.state != Conn::State::kConnecting && c.state != Conn::State::kActive) continue;
    if (now - c.last_progress_ns < config_.timeout.count()) continue;
    std::string what = c.state == Conn::State::kConnecting ? "connect: no answer within " : "no progress for ";
    Fail(c, FailureKind::kTimeout, what + FormatSeconds(config_.timeout));
  }
}

}  // namespace rot13d::client
