#include "client/bench.h"

#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "client/bench_idle.h"
#include "client/exit_codes.h"

namespace rot13d::client {
namespace {

using std::chrono::seconds;

// SIGINT and SIGTERM, blocked while this lives and read from a signalfd: a
// request to stop and report. Threads started meanwhile inherit the mask and
// never see them.
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_mask_);
    fd_.reset(signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
  }
  ~StopSignals() { pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr); }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  bool ok() const { return fd_.valid(); }
  BorrowedFd fd() const { return fd_.borrow(); }
  // True when a signal was pending.
  bool Take() {
    signalfd_siginfo info{};
    return read(fd_.get(), &info, sizeof info) == sizeof info;
  }

 private:
  sigset_t set_{};
  sigset_t old_mask_{};
  UniqueFd fd_;
};

std::string FormatMiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// The progress line, rewritten in place; `last` is the previous second's stats.
void PrintProgress(const BenchConfig& config, double elapsed, const LoadStats& now, LoadStats& last) {
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  char line[256];
  if (config.mode == Mode::kStream) {
    std::string done = config.bytes == 0 ? "" : ", " + std::to_string(now.requests) + "/" +
                                                     std::to_string(config.connections) + " done";
    std::snprintf(line, sizeof line, "stream %5.0f s: sent %s, received %s (%.1f MiB/s)%s, %llu errors", elapsed,
                  FormatMiB(now.bytes_sent).c_str(), FormatMiB(now.bytes_verified).c_str(),
                  static_cast<double>(now.bytes_verified - last.bytes_verified) / (1 << 20), done.c_str(),
                  u(now.total_failures()));
  } else {
    std::snprintf(line, sizeof line, "%s %5.0f s: %llu %s (%llu/s), %llu errors", ModeName(config.mode), elapsed,
                  u(now.requests), config.mode == Mode::kConnect ? "cycles" : "requests",
                  u(now.requests - last.requests), u(now.total_failures()));
  }
  last = now;
  std::fprintf(stderr, "\r%s\033[K", line);
  std::fflush(stderr);
}

// Waits until the load ends by itself, a stop signal comes or --max-time
// passes, printing the progress line meanwhile.
void Supervise(const BenchConfig& config, const LoadEngine& load, StopSignals& signals,
               LoadClock::time_point deadline, BenchResult& result) {
  const auto start = LoadClock::now();
  auto next_progress = start + seconds(1);
  LoadStats last;
  while (true) {
    auto wake = config.progress ? std::min(deadline, next_progress) : deadline;
    pollfd fds[2] = {{signals.fd().get(), POLLIN, 0}, {load.done_event().get(), POLLIN, 0}};
    int n = poll(fds, 2, PollMs(wake));
    if (n < 0 && errno != EINTR) return;
    if (n > 0 && (fds[1].revents & POLLIN)) return;
    if (n > 0 && (fds[0].revents & POLLIN) && signals.Take()) {
      result.interrupted = true;
      return;
    }
    auto now = LoadClock::now();
    if (now >= deadline) {
      result.out_of_time = true;
      return;
    }
    if (config.progress && now >= next_progress) {
      PrintProgress(config, std::chrono::duration<double>(now - start).count(), load.Stats(), last);
      next_progress += seconds(1);
    }
  }
}

// The engine's figures in the report's terms.
void Collect(const BenchConfig& config, const LoadEngine& load, BenchResult& result) {
  LoadStats s = load.Stats();
  result.seconds = std::chrono::duration<double>(load.Elapsed()).count();
  result.bytes_sent = s.bytes_sent;
  // Stream counts every right byte; rr and connect those of the requests or
  // cycles counted, so that a run that ends between a message's last byte
  // and its end reports neither.
  result.bytes_received = config.mode == Mode::kStream ? s.bytes_verified : s.request_bytes;
  result.requests = s.requests;
  result.latency = load.Latency();
  for (size_t k = 0; k < kFailureKinds; ++k) result.failures[k] += s.failures[k];
  if (auto first = load.FirstFailure(); first && result.first_error.empty()) result.first_error = first->message;
  if (auto first = load.FirstMismatch(); first && !result.mismatch) result.mismatch = first->mismatch;
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

void BenchResult::Record(FailureKind kind, const std::string& message) {
  ++failures[static_cast<size_t>(kind)];
  if (first_error.empty()) first_error = message;
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

LoadOptions LoadOptionsFor(const BenchConfig& config) {
  LoadOptions o;
  o.address = config.address;
  o.sources = config.sources;
  o.expect = config.expect;
  o.connections = config.connections;
  o.threads = config.threads;
  o.timeout = config.timeout;
  switch (config.mode) {
    case Mode::kStream:  // one session per connection, one message, done at its last byte; untimed
      o.min_bytes = o.max_bytes = config.bytes == 0 ? LoadOptions::kEndless : config.bytes;
      o.await_eof = false;
      o.sessions_per_connection = 1;
      o.unit = Unit::kSession;
      o.timed = false;
      if (config.duration.count() > 0) o.duration = config.duration;
      break;
    case Mode::kRequestResponse:  // a session that never ends, of timed messages
      o.min_bytes = o.max_bytes = LoadOptions::kEndless;
      o.message = config.size;
      o.unit = Unit::kMessage;
      o.duration = config.duration;
      o.budget = config.requests;
      break;
    case Mode::kConnect:  // timed sessions of one message, each to the server's EOF
      o.min_bytes = o.max_bytes = config.size;
      o.unit = Unit::kSession;
      o.duration = config.duration;
      o.budget = config.requests;
      break;
  }
  return o;
}

BenchResult RunBench(const BenchConfig& config) {
  BenchResult result;
  const auto deadline = LoadClock::now() + config.max_time;
  StopSignals signals;
  if (!signals.ok()) {
    result.Record(FailureKind::kOther, std::string("signalfd: ") + std::strerror(errno));
    return result;
  }
  std::vector<UniqueFd> idle = OpenIdle(config, deadline, result);
  LoadEngine load(LoadOptionsFor(config));
  if (!result.out_of_time) {  // else the idle setup used up --max-time
    if (Status started = load.Start(); !started) {
      result.Record(FailureKind::kOther, started.error().ToString());
    } else {
      Supervise(config, load, signals, deadline, result);
    }
  }
  load.Stop();
  if (config.progress) std::fputs("\r\033[K", stderr);
  Collect(config, load, result);
  CheckIdle(idle, result);
  return result;
}

}  // namespace rot13d::client
