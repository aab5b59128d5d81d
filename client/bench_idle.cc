#include "client/bench_idle.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/rot13.h"

namespace rot13d::client {
namespace {

constexpr size_t kBatch = 256;
constexpr uint8_t kPing = 'i';

// A connection being opened: connecting, or connected with its ping sent.
struct Pending {
  UniqueFd fd;
  bool connected = false;
};

std::string Errno(const char* what, int err) { return std::string(what) + ": " + std::strerror(err); }

void Drop(Pending& p, FailureKind kind, const std::string& why, BenchResult& result) {
  result.Record(kind, "idle connection: " + why);
  p.fd.reset();
}

// Starts up to kBatch more connections; those that fail at once are counted.
std::vector<Pending> StartBatch(const BenchConfig& config, uint32_t& begun, BenchResult& result) {
  std::vector<Pending> batch;
  for (; begun < config.idle && batch.size() < kBatch; ++begun) {
    // With --source, the idle connections take the sources in turn too.
    const SocketAddress* source = config.sources.empty() ? nullptr : &config.sources[begun % config.sources.size()];
    auto p = StartConnect(config.address, {}, source);
    if (!p) {
      result.Record(ClassifyErrno(p.error().errno_value()), "idle connection: " + p.error().ToString());
      continue;
    }
    batch.push_back({std::move(p->fd), p->connected});
    if (batch.back().connected) send(batch.back().fd.get(), &kPing, 1, MSG_NOSIGNAL);
  }
  return batch;
}

// p is ready: its connect completed (the ping goes), or its answer came.
void Advance(Pending& p, uint8_t pong, std::vector<UniqueFd>& open, BenchResult& result) {
  if (!p.connected) {
    if (int err = ConnectError(p.fd.borrow()); err != 0) {
      Drop(p, ClassifyErrno(err), Errno("connect", err), result);
    } else if (send(p.fd.get(), &kPing, 1, MSG_NOSIGNAL) != 1) {
      err = errno;
      Drop(p, ClassifyErrno(err), Errno("send", err), result);
    } else {
      p.connected = true;
    }
    return;
  }
  uint8_t answer = 0;
  ssize_t got = recv(p.fd.get(), &answer, 1, 0);
  if (got == 1 && answer == pong) {
    open.push_back(std::move(p.fd));
  } else if (got == 1) {
    Drop(p, FailureKind::kMismatch, "answered " + FormatByte(answer) + " to " + FormatByte(kPing), result);
  } else if (got == 0) {
    Drop(p, FailureKind::kMismatch, "closed by the server before answering", result);
  } else if (int err = errno; err != EAGAIN && err != EINTR) {
    Drop(p, ClassifyErrno(err), Errno("receive", err), result);
  }
}

// Polls the batch until each of its connections is open or dropped, or the
// batch's deadline passes.
void SettleBatch(std::vector<Pending>& batch, uint8_t pong, LoadClock::time_point batch_deadline,
                 LoadClock::time_point deadline, std::vector<UniqueFd>& open, BenchResult& result) {
  while (true) {
    std::vector<pollfd> fds;
    std::vector<Pending*> owners;
    for (Pending& p : batch) {
      if (!p.fd) continue;
      fds.push_back({p.fd.get(), static_cast<short>(p.connected ? POLLIN : POLLOUT), 0});
      owners.push_back(&p);
    }
    if (fds.empty()) return;
    int n = poll(fds.data(), fds.size(), PollMs(batch_deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      for (Pending* p : owners) Drop(*p, FailureKind::kTimeout, "no answer within the --timeout", result);
      if (LoadClock::now() >= deadline) result.out_of_time = true;
      return;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) Advance(*owners[i], pong, open, result);
    }
  }
}

}  // namespace

std::vector<UniqueFd> OpenIdle(const BenchConfig& config, LoadClock::time_point deadline, BenchResult& result) {
  const uint8_t pong = config.expect == Expect::kRot13 ? Rot13Byte(kPing) : kPing;
  std::vector<UniqueFd> open;
  for (uint32_t begun = 0; begun < config.idle && !result.out_of_time;) {
    std::vector<Pending> batch = StartBatch(config, begun, result);
    auto batch_deadline = std::min(deadline, LoadClock::now() + config.timeout);
    SettleBatch(batch, pong, batch_deadline, deadline, open, result);
  }
  return open;
}

// A Unix or TCP socket the server closed reads EOF; one it reset reads an
// error; one it keeps, EAGAIN.
void CheckIdle(const std::vector<UniqueFd>& idle, BenchResult& result) {
  for (const UniqueFd& fd : idle) {
    uint8_t byte = 0;
    ssize_t n = recv(fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++result.idle_open;
      continue;
    }
    ++result.idle_dropped;
    if (result.first_error.empty()) {
      result.first_error = n == 0  ? "an idle connection was closed by the server"
                           : n > 0 ? "an idle connection received bytes it never asked for"
                                   : std::string("an idle connection failed: ") + std::strerror(errno);
    }
  }
}

}  // namespace rot13d::client
