#include "client/bench.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "client/bench_worker.h"
#include "client/exit_codes.h"
#include "common/rot13.h"

namespace rot13d::client {
namespace {

int PollMs(int64_t deadline_ns) {
  int64_t left = (deadline_ns - NowNs() + 999'999) / 1'000'000;
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
}

std::string Hex(int byte) {
  if (byte < 0) return "none";
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", byte & 0xff);
  return buf;
}

// Why an answer differs from the expected one, in the user's terms.
std::string DescribeWrongAnswer(const std::string& sent, const std::string& got, Expect expect) {
  std::string rot13 = sent;
  Rot13InPlace(reinterpret_cast<uint8_t*>(rot13.data()), rot13.size());
  if (expect == Expect::kRot13 && got == sent) {
    return "the server echoes bytes unchanged instead of applying rot13 (for an echo server, use --expect echo)";
  }
  if (expect == Expect::kEcho && got == rot13) {
    return "the server applies rot13 where an echo was expected (drop --expect echo)";
  }
  const std::string& want = expect == Expect::kRot13 ? rot13 : sent;
  size_t i = 0;
  while (i < got.size() && got[i] == want[i]) ++i;
  return "wrong answer at byte " + std::to_string(i) + ": expected " + Hex(static_cast<uint8_t>(want[i])) +
         ", got " + Hex(static_cast<uint8_t>(got[i]));
}

void RecordFailure(BenchResult& result, FailureKind kind, const std::string& message) {
  ++result.failures[static_cast<size_t>(kind)];
  if (result.first_error.empty()) result.first_error = message;
}

// --idle: opens up to `count` connections, each proved live by a one-byte
// round trip (so the server has accepted it and holds it), 256 at a time.
std::vector<UniqueFd> OpenIdle(const BenchConfig& config, int64_t deadline_ns, BenchResult& result) {
  constexpr size_t kBatch = 256;
  const uint8_t ping = 'i';
  const uint8_t pong = config.expect == Expect::kRot13 ? Rot13Byte(ping) : ping;
  std::vector<UniqueFd> open;
  struct Pending {
    UniqueFd fd;
    bool connected = false;
  };
  for (uint32_t begun = 0; begun < config.idle && !result.out_of_time;) {
    std::vector<Pending> batch;
    for (; begun < config.idle && batch.size() < kBatch; ++begun) {
      auto p = StartConnect(config.address);
      if (!p) {
        RecordFailure(result, ClassifyErrno(p.error().errno_value()), "idle connection: " + p.error().ToString());
        continue;
      }
      batch.push_back({std::move(p->fd), p->connected});
      if (batch.back().connected) send(batch.back().fd.get(), &ping, 1, MSG_NOSIGNAL);
    }
    int64_t batch_deadline = std::min(deadline_ns, NowNs() + config.timeout.count());
    auto fail = [&](Pending& p, FailureKind kind, const std::string& why) {
      RecordFailure(result, kind, "idle connection: " + why);
      p.fd.reset();
    };
    while (true) {
      std::vector<pollfd> fds;
      std::vector<Pending*> owners;
      for (Pending& p : batch) {
        if (!p.fd) continue;
        fds.push_back({p.fd.get(), static_cast<short>(p.connected ? POLLIN : POLLOUT), 0});
        owners.push_back(&p);
      }
      if (fds.empty()) break;
      int n = poll(fds.data(), fds.size(), PollMs(batch_deadline));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        for (Pending* p : owners) fail(*p, FailureKind::kTimeout, "no answer within the --timeout");
        if (NowNs() >= deadline_ns) result.out_of_time = true;
        break;
      }
      for (size_t i = 0; i < fds.size(); ++i) {
        Pending& p = *owners[i];
        if (fds[i].revents == 0) continue;
        if (!p.connected) {
          if (int err = ConnectError(p.fd.borrow()); err != 0) {
            fail(p, ClassifyErrno(err), std::string("connect: ") + std::strerror(err));
          } else if (send(p.fd.get(), &ping, 1, MSG_NOSIGNAL) != 1) {
            fail(p, ClassifyErrno(errno), std::string("send: ") + std::strerror(errno));
          } else {
            p.connected = true;
          }
          continue;
        }
        uint8_t answer = 0;
        ssize_t got = recv(p.fd.get(), &answer, 1, 0);
        if (got == 1 && answer == pong) {
          open.push_back(std::move(p.fd));
        } else if (got == 1) {
          fail(p, FailureKind::kMismatch, "answered " + Hex(answer) + " to " + Hex(ping));
        } else if (got == 0) {
          fail(p, FailureKind::kMismatch, "closed by the server before answering");
        } else if (errno != EAGAIN && errno != EINTR) {
          fail(p, ClassifyErrno(errno), std::string("receive: ") + std::strerror(errno));
        }
      }
    }
  }
  return open;
}

// At the end: which idle connections the server kept. A Unix or TCP socket the
// server closed reads EOF; one it reset reads an error; one it keeps, EAGAIN.
void CheckIdle(const std::vector<UniqueFd>& idle, BenchResult& result) {
  for (const UniqueFd& fd : idle) {
    uint8_t byte = 0;
    ssize_t n = recv(fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ++result.idle_open;
    } else {
      ++result.idle_dropped;
      if (result.first_error.empty()) {
        result.first_error = n == 0  ? "an idle connection was closed by the server"
                             : n > 0 ? "an idle connection received bytes it never asked for"
                                     : std::string("an idle connection failed: ") + std::strerror(errno);
      }
    }
  }
}

std::string FormatMiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

void PrintProgress(const BenchConfig& config, double elapsed, const std::vector<std::unique_ptr<LiveCounters>>& live,
                   uint64_t& last_requests, uint64_t& last_received) {
  uint64_t sent = 0, received = 0, requests = 0, errors = 0;
  for (const auto& l : live) {
    sent += l->bytes_sent.load(std::memory_order_relaxed);
    received += l->bytes_received.load(std::memory_order_relaxed);
    requests += l->requests.load(std::memory_order_relaxed);
    errors += l->errors.load(std::memory_order_relaxed);
  }
  char line[256];
  if (config.mode == Mode::kStream) {
    std::snprintf(line, sizeof line, "stream %5.0f s: sent %s, received %s (%.1f MiB/s), %llu/%u done, %llu errors",
                  elapsed, FormatMiB(sent).c_str(), FormatMiB(received).c_str(),
                  static_cast<double>(received - last_received) / (1 << 20),
                  static_cast<unsigned long long>(requests), config.connections,
                  static_cast<unsigned long long>(errors));
  } else {
    std::snprintf(line, sizeof line, "%s %5.0f s: %llu %s (%llu/s), %llu errors", ModeName(config.mode), elapsed,
                  static_cast<unsigned long long>(requests),
                  config.mode == Mode::kConnect ? "cycles" : "requests",
                  static_cast<unsigned long long>(requests - last_requests),
                  static_cast<unsigned long long>(errors));
  }
  last_requests = requests;
  last_received = received;
  std::fprintf(stderr, "\r%s\033[K", line);
  std::fflush(stderr);
}

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kStream: return "stream";
    case Mode::kRequestResponse: return "rr";
    case Mode::kConnect: return "connect";
  }
  return "?";
}

std::string MismatchReport::ToString() const {
  std::string where = "connection " + std::to_string(connection);
  if (request > 0) where += ", message " + std::to_string(request);
  where += ", byte " + std::to_string(offset);
  if (got < 0) return where + ": the server closed the connection; expected " + Hex(expected);
  if (expected < 0) return where + ": got " + Hex(got) + " beyond the end of the answer";
  return where + ": expected " + Hex(expected) + ", got " + Hex(got);
}

uint64_t BenchResult::errors() const {
  uint64_t n = idle_dropped;
  for (uint64_t f : failures) n += f;
  return n;
}

int BenchResult::ExitStatus() const {
  if (Failures(FailureKind::kMismatch) > 0) return kExitMismatch;
  if (interrupted) return kExitInterrupted;
  if (out_of_time) return kExitTimeout;
  if (errors() > 0) return kExitIoError;
  return kExitOk;
}

ProbeResult Probe(BorrowedFd fd, const SocketAddress& address, std::chrono::nanoseconds timeout, Expect expect) {
  ProbeResult r;
  // Letters of both cases and every byte value, so any wrong transform shows.
  std::string message = "Hello, rot13-bench! ";
  for (int i = 0; i < 256; ++i) message.push_back(static_cast<char>(i));
  std::string want = message;
  if (expect == Expect::kRot13) Rot13InPlace(reinterpret_cast<uint8_t*>(want.data()), want.size());

  int64_t deadline = NowNs() + timeout.count();
  size_t sent = 0;
  std::string got;
  auto fail = [&](FailureKind kind, std::string why) {
    r.failure = kind;
    r.message = "probe of " + address.ToString() + ": " + std::move(why);
    return r;
  };
  while (got.size() < want.size()) {
    pollfd p{fd.get(), static_cast<short>(POLLIN | (sent < message.size() ? POLLOUT : 0)), 0};
    int n = poll(&p, 1, PollMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(FailureKind::kOther, std::string("poll: ") + std::strerror(errno));
    if (n == 0) {
      return fail(FailureKind::kTimeout, "no complete answer within " + std::to_string(timeout.count() / 1'000'000) +
                                             " ms (" + std::to_string(got.size()) + " of " +
                                             std::to_string(want.size()) + " bytes)");
    }
    if (sent < message.size() && (p.revents & POLLOUT)) {
      ssize_t k = send(fd.get(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
      if (k > 0) sent += static_cast<size_t>(k);
      else if (errno != EAGAIN && errno != EINTR) {
        return fail(ClassifyErrno(errno), std::string("send: ") + std::strerror(errno));
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[1024];
      ssize_t k = recv(fd.get(), buf, sizeof buf, 0);
      if (k > 0) {
        got.append(buf, static_cast<size_t>(k));
      } else if (k == 0) {
        r.mismatch = MismatchReport{0, 0, got.size(), static_cast<uint8_t>(want[got.size()]), -1};
        return fail(FailureKind::kMismatch, "the server closed the connection after " + std::to_string(got.size()) +
                                                " of " + std::to_string(want.size()) + " bytes");
      } else if (errno != EAGAIN && errno != EINTR) {
        return fail(ClassifyErrno(errno), std::string("receive: ") + std::strerror(errno));
      }
    }
  }
  if (got.size() > want.size()) {
    r.mismatch = MismatchReport{0, 0, want.size(), -1, static_cast<uint8_t>(got[want.size()])};
    return fail(FailureKind::kMismatch, "the server sent " + std::to_string(got.size()) + " bytes for " +
                                            std::to_string(want.size()));
  }
  if (got != want) {
    size_t i = 0;
    while (got[i] == want[i]) ++i;
    r.mismatch = MismatchReport{0, 0, i, static_cast<uint8_t>(want[i]), static_cast<uint8_t>(got[i])};
    return fail(FailureKind::kMismatch, DescribeWrongAnswer(message, got, expect));
  }
  return r;
}

BenchResult RunBench(const BenchConfig& config) {
  BenchResult result;
  const int64_t begin_ns = NowNs();
  const int64_t deadline_ns = begin_ns + config.max_time.count();

  // SIGINT and SIGTERM become a request to stop and report, read from a
  // signalfd; the worker threads inherit the mask and never see them.
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
  UniqueFd signals(signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
  UniqueFd stop_event(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd done_event(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!signals || !stop_event || !done_event) {
    RecordFailure(result, FailureKind::kOther, std::string("signalfd/eventfd: ") + std::strerror(errno));
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return result;
  }

  std::vector<UniqueFd> idle = OpenIdle(config, deadline_ns, result);

  Pattern pattern(config.expect);
  RunShared shared;
  shared.config = &config;
  shared.pattern = &pattern;
  shared.stop_event = stop_event.borrow();
  shared.done_event = done_event.borrow();
  shared.budget = static_cast<int64_t>(std::min<uint64_t>(config.requests, INT64_MAX));
  uint32_t thread_count = std::max(1u, std::min(config.threads, config.connections));
  std::vector<std::unique_ptr<LiveCounters>> live;
  std::vector<std::unique_ptr<Worker>> workers;
  for (uint32_t t = 0; t < thread_count; ++t) {
    std::vector<uint32_t> ids;
    for (uint32_t id = t; id < config.connections; id += thread_count) ids.push_back(id);
    live.push_back(std::make_unique<LiveCounters>());
    workers.push_back(std::make_unique<Worker>(shared, *live.back(), std::move(ids)));
  }

  auto stop = [&] {
    shared.stop.store(true);
    uint64_t one = 1;
    (void)!write(stop_event.get(), &one, sizeof one);
  };
  shared.start_ns = NowNs();
  if (config.mode != Mode::kStream) shared.end_ns = shared.start_ns + config.duration.count();
  if (result.out_of_time) shared.stop.store(true);  // the idle setup used up --max-time
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&shared, worker = w.get()] {
      worker->Run();
      uint64_t one = 1;
      (void)!write(shared.done_event.get(), &one, sizeof one);
    });
  }

  uint64_t finished = 0;
  int64_t next_progress = shared.start_ns + 1'000'000'000;
  uint64_t last_requests = 0, last_received = 0;
  while (finished < thread_count) {
    int64_t wake = deadline_ns;
    if (config.progress) wake = std::min(wake, next_progress);
    pollfd fds[2] = {{signals.get(), POLLIN, 0}, {done_event.get(), POLLIN, 0}};
    int n = poll(fds, 2, PollMs(wake));
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      uint64_t count = 0;
      if (read(done_event.get(), &count, sizeof count) == sizeof count) finished += count;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (read(signals.get(), &info, sizeof info) == sizeof info && !shared.stop.load()) {
        result.interrupted = true;
        stop();
      }
    }
    int64_t now = NowNs();
    if (now >= deadline_ns && !shared.stop.load()) {
      result.out_of_time = true;
      stop();
    }
    if (config.progress && now >= next_progress && finished < thread_count) {
      PrintProgress(config, static_cast<double>(now - shared.start_ns) / 1e9, live, last_requests, last_received);
      next_progress += 1'000'000'000;
    }
  }
  for (std::thread& t : threads) t.join();
  if (config.progress) std::fputs("\r\033[K", stderr);

  int64_t end_ns = shared.start_ns;
  for (size_t t = 0; t < workers.size(); ++t) {
    WorkerResult& w = workers[t]->result();
    result.latency.Merge(w.latency);
    for (size_t k = 0; k < kFailureKinds; ++k) result.failures[k] += w.failures[k];
    if (result.first_error.empty()) result.first_error = w.first_error;
    if (!result.mismatch) result.mismatch = w.mismatch;
    end_ns = std::max(end_ns, w.end_ns);
    result.bytes_sent += live[t]->bytes_sent.load();
    result.bytes_received += live[t]->bytes_received.load();
    result.requests += live[t]->requests.load();
  }
  result.seconds = static_cast<double>(end_ns - shared.start_ns) / 1e9;
  CheckIdle(idle, result);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return result;
}

}  // namespace rot13d::client
